"""Creating and reading calls: the Calls API's domain logic, independent of FastAPI.

``create_call``: (the caller's permission was checked on the raw body already) Idempotency-Key
claim or replay → the CallSpec the worker will receive (request body + ``call_id``, validated by
the CallSpec rules and :func:`~convoi.callspec.resolve_call` against the definitions) → the call
row (``initiated``) → LiveKit room (named after the call id) → participant token (web) →
CreateAgentDispatch(agent_name, room, metadata = CallSpec JSON) → 201 body, stored for replays.
A LiveKit failure stores the call as ``failed`` (``ended_reason`` ``provider_error``), deletes the
room if it was created, releases the Idempotency-Key and raises (502/503).

No database connection is held across LiveKit calls: every database step opens a short session
of its own and closes it. An account with ``max_concurrent_calls`` calls not yet ended (initiated,
ringing, active) gets 429 ``concurrency_limit``; counting and inserting happen under the
account's lock (in the process, and in the database:
:func:`~convoi.controlplane.db.locks.lock_account`), so concurrent creates cannot overshoot,
however many API processes serve them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update

from convoi.callspec import CallSpec, CallSpecError, ResolvedCall, parse_callspec, resolve_call
from convoi.controlplane import idempotency, webhooks_outbox
from convoi.controlplane.call_report import call_report
from convoi.controlplane.db.engine import Database
from convoi.controlplane.db.locks import lock_account
from convoi.controlplane.db.models import Call, utcnow
from convoi.controlplane.definitions_dispatch import resolve_for_account
from convoi.controlplane.errors import InvalidRequest, LiveKitFailure, NotFound, TooManyRequests
from convoi.controlplane.ids import new_call_id, new_participant_identity
from convoi.controlplane.keys import Principal
from convoi.controlplane.limits import AccountLocks
from convoi.controlplane.livekit import LiveKitGateway
from convoi.controlplane.log import logger
from convoi.controlplane.presenters import created_body, read_model
from convoi.controlplane.schemas import CallCreate, PhoneCall, WebCall
from convoi.controlplane.settings import ControlPlaneSettings
from convoi.definitions.models import Definitions
from convoi.lifecycle import TERMINAL_STATUSES

__all__ = ["CallService", "CreateResult", "build_callspec"]

CREATED = 201
CONCURRENCY_RETRY_AFTER_SECONDS = 10


@dataclass(frozen=True, slots=True)
class CreateResult:
    """The answer to a create request: status, exact JSON body, and whether it is a replay."""

    status_code: int
    body: str
    replayed: bool = False


def build_callspec(call_id: str, request: CallCreate, definitions: Definitions) -> ResolvedCall:
    """The CallSpec the worker will receive, resolved; :class:`InvalidRequest` names the field."""
    data = {"call_id": call_id, **request.model_dump(exclude_unset=True)}
    try:
        spec = parse_callspec(data)
        return resolve_call(spec, definitions)
    except CallSpecError as exc:
        raise InvalidRequest(f"{exc.field}: {exc.problem}", field=exc.field) from None


@dataclass
class CallService:
    """Calls: the database (a session per step), LiveKit, the definitions and the settings."""

    database: Database
    settings: ControlPlaneSettings
    gateway: LiveKitGateway
    definitions: Definitions
    admission: AccountLocks = field(default_factory=AccountLocks)

    # ------------------------------------------------------------------ create

    def create(
        self,
        principal: Principal,
        request: CallCreate,
        raw_body: Mapping[str, Any],
        idempotency_key: str | None = None,
    ) -> CreateResult:
        """Create a call (or replay the response stored under ``idempotency_key``)."""
        claimed = None
        if idempotency_key is not None:
            with self.database.session() as session:
                outcome = idempotency.claim(
                    session,
                    principal.account_id,
                    idempotency.check_key(idempotency_key),
                    idempotency.canonical_hash(raw_body),
                )
            if isinstance(outcome, idempotency.Replay):
                return CreateResult(outcome.status_code, outcome.body, replayed=True)
            claimed = outcome
        try:
            body, call = self._create(principal, request)
        except BaseException:
            if claimed is not None:
                with self.database.session() as session:
                    idempotency.release(session, claimed)
            raise
        with self.database.session() as session:  # one transaction: dispatch id + replay
            session.execute(
                update(Call).where(Call.id == call.id).values(dispatch_id=call.dispatch_id)
            )
            if claimed is not None:
                idempotency.complete(session, claimed, CREATED, body, call.id)  # commits
            else:
                session.commit()
        return CreateResult(CREATED, body)

    def _create(self, principal: Principal, request: CallCreate) -> tuple[str, Call]:
        call_id = new_call_id()
        resolved = resolve_for_account(
            self.database,
            principal.account_id,
            {"call_id": call_id, **request.model_dump(exclude_unset=True)},
            self.definitions,
            seed=self.settings.seed_definitions,
        )  # the account's definitions, embedded in the CallSpec (definitions_dispatch)
        spec = resolved.spec
        callspec_json = spec.model_dump_json()
        call = self._insert(principal.account_id, spec, callspec_json)
        token = None
        room_created = False
        try:
            self.gateway.create_room(
                call.id, empty_timeout=self.settings.room_empty_timeout_seconds
            )
            room_created = True
            if spec.type == "web":
                token = self.gateway.participant_token(
                    call.id,
                    call.participant_identity or "",
                    spec.participant_name,
                    self.settings.token_ttl_seconds,
                )
            call.dispatch_id = self.gateway.dispatch(
                call.id, self.settings.agent_name, callspec_json
            )
        except LiveKitFailure as exc:
            self._fail(call, exc, delete_room=room_created)
            message = f"{exc.message} (call {call.id} stored as failed)"
            raise type(exc)(message, field=exc.field, code=exc.code) from exc
        logger.info(
            "call created",
            extra={"call_id": call.id, "account_id": call.account_id, "type": call.type},
        )
        return created_body(call, self.settings, token), call

    def _insert(self, account_id: str, spec: CallSpec, callspec_json: str) -> Call:
        now = utcnow()
        call = Call(
            id=spec.call_id,
            account_id=account_id,
            type=spec.type,
            status="initiated",
            agent_id=spec.agent_id,
            squad_id=spec.squad_id,
            phone_number_id=spec.phone_number_id,
            customer_number=spec.customer.number if spec.customer else None,
            participant_name=spec.participant_name,
            participant_identity=new_participant_identity() if spec.type == "web" else None,
            room_id=spec.call_id,
            call_metadata=spec.metadata,
            callspec=callspec_json,
            definition_versions=dict(spec.definition.versions) if spec.definition else None,
            duration_seconds=0.0,
            cost_amount="0",
            cost_currency="USD",
            last_event_sequence=0,
            created_at=now,
            updated_at=now,
        )
        self._admit(call)  # before dispatch: the worker's first event may come at once
        return call

    def _admit(self, call: Call) -> None:
        """Insert the call unless its account is at its concurrency limit (429)."""
        limit = self.settings.max_concurrent_calls
        lock = self.admission.lock(call.account_id) if limit else contextlib.nullcontext()
        with lock, self.database.session() as session:
            if limit:
                lock_account(session, call.account_id)  # across API processes too
                live = session.scalar(
                    select(func.count())
                    .select_from(Call)
                    .where(
                        Call.account_id == call.account_id,
                        Call.status.not_in(TERMINAL_STATUSES),
                    )
                )
                if (live or 0) >= limit:
                    raise TooManyRequests(
                        f"this account has {live} calls in progress, its limit is {limit}; "
                        "retry when one has ended",
                        code="concurrency_limit",
                        retry_after=CONCURRENCY_RETRY_AFTER_SECONDS,
                    )
            session.add(call)
            session.commit()

    def _fail(self, call: Call, exc: LiveKitFailure, *, delete_room: bool) -> None:
        logger.warning(
            "LiveKit failed for call %s: %s", call.id, exc.message, extra={"call_id": call.id}
        )
        values = {
            "status": "failed",
            "ended_reason": "provider_error",
            "fault": "platform",
            "detail": exc.message,
            "updated_at": utcnow(),
        }
        with self.database.session() as session:
            session.execute(update(Call).where(Call.id == call.id).values(**values))
            if (row := session.get(Call, call.id)) is not None:  # the customer's webhooks
                webhooks_outbox.on_status_change(session, row, "initiated")
                webhooks_outbox.on_call_ended(session, row)
            session.commit()
        if delete_room:
            try:
                self.gateway.delete_room(call.id)
            except LiveKitFailure as cleanup:
                logger.warning("could not delete room %s: %s", call.id, cleanup.message)

    # ------------------------------------------------------------------ read

    def read(self, principal: Principal, call_id: str) -> WebCall | PhoneCall:
        """The call, if it belongs to the principal's account (and, for pk_live_, is a web call)."""
        with self.database.session() as session:
            call = session.get(Call, call_id)
            if (
                call is None
                or call.account_id != principal.account_id
                or (not principal.is_secret and call.type != "web")
            ):
                raise NotFound(
                    f"no call {call_id!r} on this account", field="id", code="call_not_found"
                )
            # transcript, latency, cost breakdown: customer data, never for publishable keys
            report = call_report(session, call) if principal.is_secret else None
            return read_model(call, self.settings, report)
