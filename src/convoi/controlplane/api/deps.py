"""FastAPI dependencies, as ``Annotated`` aliases routes declare by type.

``SettingsDep``, ``DatabaseDep``, ``SessionDep`` (a SQLAlchemy session for the request; routes
that call LiveKit open short sessions per step instead), ``GatewayDep``, ``DefinitionsDep``,
``PrincipalDep`` (the API key's account, authenticated by :mod:`~convoi.controlplane.api.guard`
before the body was read),
``CallBodyDep`` (the create-call body as strict JSON, after the key's permission check: 403 comes
before validation, so a publishable key learns nothing about phone numbers), ``CallServiceDep``,
``RawBodyDep``. The cheap ones are ``async`` (no thread hop per dependency).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from sqlalchemy.orm import Session

from convoi.controlplane.api.guard import (
    MAX_CALL_BODY_BYTES,
    MAX_EVENT_BODY_BYTES,
    PRINCIPAL_STATE_KEY,
)
from convoi.controlplane.api.state import ControlPlaneState
from convoi.controlplane.calls import CallService
from convoi.controlplane.db.engine import Database
from convoi.controlplane.errors import AuthenticationFailed, InvalidRequest, PayloadTooLarge
from convoi.controlplane.keys import Principal, ensure_may_create_call
from convoi.controlplane.livekit import LiveKitGateway
from convoi.controlplane.schemas import CallCreate
from convoi.controlplane.settings import ControlPlaneSettings
from convoi.definitions.models import Definitions
from convoi.validation import issues_from

__all__ = [
    "CallBodyDep",
    "CallServiceDep",
    "DatabaseDep",
    "DefinitionsDep",
    "GatewayDep",
    "PrincipalDep",
    "RawBodyDep",
    "SessionDep",
    "SettingsDep",
]


bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="Authorization: Bearer sk_live_… (secret key) or pk_live_… (publishable key: "
    "web calls only).",
)


async def get_state(request: Request) -> ControlPlaneState:
    """The app's shared state."""
    state: ControlPlaneState = request.app.state.convoi
    return state


StateDep = Annotated[ControlPlaneState, Depends(get_state)]


async def get_settings(state: StateDep) -> ControlPlaneSettings:
    """The settings the app was built with."""
    return state.settings


async def get_database(state: StateDep) -> Database:
    """The database."""
    return state.database


async def get_gateway(state: StateDep) -> LiveKitGateway:
    """The LiveKit gateway."""
    return state.gateway


async def get_definitions(state: StateDep) -> Definitions:
    """Agents, squads and phone numbers."""
    return state.definitions


SettingsDep = Annotated[ControlPlaneSettings, Depends(get_settings)]
DatabaseDep = Annotated[Database, Depends(get_database)]
GatewayDep = Annotated[LiveKitGateway, Depends(get_gateway)]
DefinitionsDep = Annotated[Definitions, Depends(get_definitions)]


def get_session(database: DatabaseDep) -> Iterator[Session]:
    """One session per request."""
    with database.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


async def get_principal(
    request: Request,
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The account behind the Bearer key, as the guard authenticated it (401 if it did not)."""
    principal = request.scope.get("state", {}).get(PRINCIPAL_STATE_KEY)
    if not isinstance(principal, Principal):
        raise AuthenticationFailed("missing API key", field="Authorization", code="missing_api_key")
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


_EXPECTED = "send a JSON object with 'Content-Type: application/json'"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidRequest(f"key {key!r} appears more than once", code="invalid_json")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise InvalidRequest(f"{name} is not a JSON number", code="invalid_json")


async def get_call_body(request: Request, principal: PrincipalDep) -> dict[str, Any]:
    """The body as strict JSON (no duplicate keys, no NaN), allowed for this key, well-typed."""
    body = await request.body()
    if len(body) > MAX_CALL_BODY_BYTES:
        raise PayloadTooLarge(f"request body over {MAX_CALL_BODY_BYTES} bytes")
    try:
        data = json.loads(body, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(
            f"the body is not valid JSON ({exc}); {_EXPECTED}", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"the body must be a JSON object; {_EXPECTED}", code="invalid_json")
    ensure_may_create_call(principal, data)
    try:
        CallCreate.model_validate(data)
    except ValidationError as exc:
        issues = issues_from(exc, CallCreate)
        raise InvalidRequest("; ".join(map(str, issues[:5])), field=issues[0].field) from None
    return data


CallBodyDep = Annotated[dict[str, Any], Depends(get_call_body)]


async def get_raw_body(request: Request) -> bytes:
    """The request body, exactly as received (signatures are over these bytes)."""
    body = await request.body()
    if len(body) > MAX_EVENT_BODY_BYTES:
        raise PayloadTooLarge(f"request body over {MAX_EVENT_BODY_BYTES} bytes")
    return body


RawBodyDep = Annotated[bytes, Depends(get_raw_body)]


async def get_call_service(state: StateDep) -> CallService:
    """The call service for this request."""
    return CallService(
        state.database,
        state.settings,
        state.gateway,
        state.definitions,
        state.admission,
        state.seeded_accounts,
    )


CallServiceDep = Annotated[CallService, Depends(get_call_service)]
