"""``/api/v1/public/agents``, ``/squads``, ``/phone-numbers``, ``/knowledge-bases``.

Create (201, the id assigned with the kind's prefix), list, get, update (``PATCH``: the keys given
replace the current document's top-level keys; the result is validated whole and stored as a
new version) and delete (409 while another object uses it). Secret keys (``sk_live_``) only;
another account's id answers 404 exactly as an unknown id. Validation is the one ``check-config``
applies to files (:mod:`convoi.controlplane.definitions_rules`).
"""

# no ``from __future__ import annotations``: FastAPI reads the routes' (per-kind) body types

import uuid
from typing import Annotated, Any, cast

from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from convoi.controlplane import definitions as store
from convoi.controlplane.api.deps import PrincipalDep, StateDep
from convoi.controlplane.api.state import ControlPlaneState
from convoi.controlplane.definitions_dispatch import seed_if_new
from convoi.controlplane.definitions_rules import (
    KIND_NAMES,
    check_change,
    ensure_unused,
    validate_document,
)
from convoi.controlplane.definitions_schemas import (
    CREATE_MODELS,
    LIST_MODELS,
    OBJECT_MODELS,
    DeletedObject,
    object_body,
)
from convoi.controlplane.errors import InvalidRequest, NotFound, PermissionDenied
from convoi.controlplane.keys import Principal
from convoi.controlplane.schemas import ErrorResponse

__all__ = ["PATHS", "routers"]

PATHS: dict[store.Kind, str] = {
    "agent": "/agents",
    "squad": "/squads",
    "phone_number": "/phone-numbers",
    "knowledge_base": "/knowledge-bases",
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        401: "Missing, malformed or unknown API key.",
        403: "A publishable key (pk_live_): definitions need a secret key.",
        404: "No such object on this account.",
        409: "The object is used by another one (an agent in a workforce).",
        422: "Invalid body: the error names the field.",
        429: "The key's rate limit; retry after the Retry-After header's seconds.",
        503: "The API is saturated; retry shortly.",
    }.items()
}


def _account(state: ControlPlaneState, principal: Principal) -> str:
    if not principal.is_secret:
        raise PermissionDenied(
            "definitions require a secret key (sk_live_…)", field="Authorization"
        )
    if state.settings.seed_definitions:
        seed_if_new(state.database, principal.account_id, state.definitions)
    return principal.account_id


def _not_found(kind: store.Kind, object_id: str) -> NotFound:
    return NotFound(
        f"no {KIND_NAMES[kind]} {object_id!r} on this account",
        field="id",
        code=f"{kind}_not_found",
    )


def _save(state: ControlPlaneState, account: str, kind: store.Kind, data: dict[str, Any]) -> Any:
    model = validate_document(kind, data)
    with state.database.session() as session:
        check_change(session, account, model, state.definitions.prices)
        stored = store.put(session, account, kind, model.model_dump(mode="json"))
        session.commit()
    return object_body(stored)


def _router(kind: store.Kind) -> APIRouter:
    name = KIND_NAMES[kind]
    router = APIRouter(prefix=PATHS[kind], tags=["definitions"])
    create_model = CREATE_MODELS[kind]
    for register in (_create, _list, _read, _update, _delete):
        register(router, kind, name, create_model)
    return router


def _create(router: APIRouter, kind: store.Kind, name: str, model: type[BaseModel]) -> None:
    @router.post(
        "",
        status_code=201,
        response_model=OBJECT_MODELS[kind],
        responses=_ERRORS,
        summary=f"Create a {name}",
        operation_id=f"create_{kind}",
    )
    def create(body: Annotated[model, Body()], principal: PrincipalDep, state: StateDep) -> Any:  # type: ignore[valid-type]
        account = _account(state, principal)
        given = cast(BaseModel, body)
        data = given.model_dump(mode="json", exclude={"id"}, exclude_unset=True)
        data["id"] = f"{store.PREFIXES[kind]}{uuid.uuid4().hex}"
        return JSONResponse(_save(state, account, kind, data), status_code=201)


def _list(router: APIRouter, kind: store.Kind, name: str, _model: type[BaseModel]) -> None:
    @router.get(
        "",
        response_model=LIST_MODELS[kind],
        responses=_ERRORS,
        summary=f"List the {name}s",
        operation_id=f"list_{kind}s",
    )
    def list_all(principal: PrincipalDep, state: StateDep) -> Any:
        account = _account(state, principal)
        with state.database.session() as session:
            objects = store.list_current(session, account, kind)
        return JSONResponse({"object": "list", "data": [object_body(s) for s in objects]})


def _read(router: APIRouter, kind: store.Kind, name: str, _model: type[BaseModel]) -> None:
    @router.get(
        "/{id}",
        response_model=OBJECT_MODELS[kind],
        responses=_ERRORS,
        summary=f"Get a {name}",
        operation_id=f"get_{kind}",
    )
    def read(id: str, principal: PrincipalDep, state: StateDep) -> Any:
        account = _account(state, principal)
        with state.database.session() as session:
            stored = store.current(session, account, kind, id)
        if stored is None:
            raise _not_found(kind, id)
        return JSONResponse(object_body(stored))


def _update(router: APIRouter, kind: store.Kind, name: str, _model: type[BaseModel]) -> None:
    @router.patch(
        "/{id}",
        response_model=OBJECT_MODELS[kind],
        responses=_ERRORS,
        summary=f"Update a {name} (a new version)",
        operation_id=f"update_{kind}",
    )
    def update(
        id: str,
        body: Annotated[
            dict[str, Any],
            Body(description="Top-level keys to replace; the result is validated whole."),
        ],
        principal: PrincipalDep,
        state: StateDep,
    ) -> Any:
        account = _account(state, principal)
        with state.database.session() as session:
            stored = store.current(session, account, kind, id)
        if stored is None:
            raise _not_found(kind, id)
        if body.get("id", id) != id:
            raise InvalidRequest("an object's id cannot change", field="id")
        return JSONResponse(_save(state, account, kind, {**stored.document, **body, "id": id}))


def _delete(router: APIRouter, kind: store.Kind, name: str, _model: type[BaseModel]) -> None:
    @router.delete(
        "/{id}",
        response_model=DeletedObject,
        responses=_ERRORS,
        summary=f"Delete a {name}",
        operation_id=f"delete_{kind}",
    )
    def delete(id: str, principal: PrincipalDep, state: StateDep) -> Any:
        account = _account(state, principal)
        with state.database.session() as session:
            if store.current(session, account, kind, id) is None:
                raise _not_found(kind, id)
            ensure_unused(session, account, kind, id)
            store.mark_deleted(session, account, id)
            session.commit()
        return JSONResponse({"id": id, "object": kind, "deleted": True})


routers: list[APIRouter] = [_router(kind) for kind in PATHS]
"""One router per kind, mounted under the public prefix by :mod:`convoi.controlplane.api.main`."""
