"""Creating and reading calls: the Calls API's domain logic, independent of FastAPI.

``CallService.create``: (the caller's permission was checked on the raw body already) one
transaction: the Idempotency-Key claim or its replay → the CallSpec the worker will receive
(request body + ``call_id`` + the account's definitions embedded, validated by the CallSpec rules
and :func:`~convoi.callspec.resolve_call`) → the concurrency check → the call row
(``initiated``); then, with no database connection held, LiveKit: room (named after the call id)
→ participant token (web) → CreateAgentDispatch(agent_name, room, metadata = CallSpec JSON);
then a second transaction: the dispatch id and the 201 body, stored for replays. A LiveKit
failure stores the call as ``failed`` (``ended_reason`` ``provider_error``), releases the
Idempotency-Key in that same transaction, deletes the room if it was created and raises
(502/503); a refusal before LiveKit (422, 429) rolls the first transaction back, claim included.

An account with ``max_concurrent_calls`` calls not yet ended (initiated, ringing, active) gets
429 ``concurrency_limit``; counting and inserting happen under the account's lock (in the
process, and in the database: :func:`~convoi.controlplane.db.locks.lock_account`), so concurrent
creates cannot overshoot, however many API processes serve them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from convoi.callspec import CallSpec
from convoi.controlplane import idempotency, webhooks_outbox
from convoi.controlplane.call_report import call_report
from convoi.controlplane.db.engine import Database
from convoi.controlplane.db.locks import lock_account
from convoi.controlplane.db.models import Call, utcnow
from convoi.controlplane.definitions_dispatch import resolve_for_account, seed_if_new
from convoi.controlplane.errors import LiveKitFailure, NotFound, TooManyRequests
from convoi.controlplane.ids import new_call_id, new_participant_identity
from convoi.controlplane.keys import Principal
from convoi.controlplane.limits import AccountLocks
from convoi.controlplane.livekit import LiveKitGateway
from convoi.controlplane.log import logger
from convoi.controlplane.presenters import created_body, read_model
from convoi.controlplane.schemas import CallCreate, PhoneCall, WebCall
from convoi.controlplane.settings import ControlPlaneSettings
from convoi.definitions.models import Definitions
from convoi.lifecycle import ALL_STATUSES, TERMINAL_STATUSES

__all__ = [
    "IN_PROGRESS_STATUSES",
    "CallService",
    "CreateResult",
    "in_progress_count",
]

CREATED = 201
CONCURRENCY_RETRY_AFTER_SECONDS = 10
IN_PROGRESS_STATUSES = tuple(s for s in ALL_STATUSES if s not in TERMINAL_STATUSES)
"""What the concurrency limit counts (initiated, ringing, active; ``ix_calls_account_id_status``)."""


def in_progress_count(account_id: str) -> Select[int]:
    """How many of the account's calls are in progress (read by ``ix_calls_account_id_status``:
    the calls in progress only, however long the account's history)."""
    return (
        select(func.count())
        .select_from(Call)
        .where(Call.account_id == account_id, Call.status.in_(IN_PROGRESS_STATUSES))
    )


@dataclass(frozen=True, slots=True)
class CreateResult:
    """The answer to a create request: status, exact JSON body, and whether it is a replay."""

    status_code: int
    body: str
    replayed: bool = False


@dataclass
class CallService:
    """Calls: the database (a session per step), LiveKit, the definitions and the settings."""

    database: Database
    settings: ControlPlaneSettings
    gateway: LiveKitGateway
    definitions: Definitions
    admission: AccountLocks = field(default_factory=AccountLocks)
    seeded: set[str] = field(default_factory=set)
    """Accounts known to hold definitions (shared by the requests of a process)."""

    # ------------------------------------------------------------------ create

    def create(
        self,
        principal: Principal,
        request: CallCreate,
        raw_body: Mapping[str, Any],
        idempotency_key: str | None = None,
    ) -> CreateResult:
        """Create a call (or replay the response stored under ``idempotency_key``).

        Two transactions, none held across LiveKit: (1) the Idempotency-Key claim, the account's
        definitions read into the CallSpec, the concurrency check and the call row; (2) after
        LiveKit, the dispatch id and the stored replay (or, when LiveKit failed, the call marked
        failed and the key released)."""
        key = None if idempotency_key is None else idempotency.check_key(idempotency_key)
        self._seed(principal.account_id)
        admitted = self._admit(principal, request, key, raw_body)
        if isinstance(admitted, CreateResult):
            return admitted  # a replay
        call, claimed = admitted
        body = self._dispatch(call, claimed)
        with self.database.session() as session:  # one transaction: dispatch id + replay
            session.execute(
                update(Call).where(Call.id == call.id).values(dispatch_id=call.dispatch_id),
                execution_options={"synchronize_session": False},
            )
            if claimed is not None:
                idempotency.complete(session, claimed, CREATED, body, call.id)  # commits
            else:
                session.commit()
        return CreateResult(CREATED, body)

    def _seed(self, account_id: str) -> None:
        """Local use: import the shipped definitions into a new account (checked once per
        account and process: an account that has stored a definition always will have)."""
        if self.settings.seed_definitions and account_id not in self.seeded:
            seed_if_new(self.database, account_id, self.definitions)
            self.seeded.add(account_id)

    def _admit(
        self,
        principal: Principal,
        request: CallCreate,
        key: str | None,
        raw_body: Mapping[str, Any],
    ) -> CreateResult | tuple[Call, idempotency.Claim | None]:
        """Transaction (1): the replay, or the stored call (``initiated``) and its key's claim."""
        account_id = principal.account_id
        limit = self.settings.max_concurrent_calls
        lock = self.admission.lock(account_id) if limit else contextlib.nullcontext()
        with lock, self.database.session() as session:
            claimed = None
            if key is not None:  # the transaction's first write (see idempotency.claim)
                digest = idempotency.canonical_hash(raw_body)
                outcome = idempotency.claim(session, account_id, key, digest, commit=False)
                if isinstance(outcome, idempotency.Replay):
                    return CreateResult(outcome.status_code, outcome.body, replayed=True)
                claimed = outcome
            data = {"call_id": new_call_id(), **request.model_dump(exclude_unset=True)}
            spec = resolve_for_account(session, account_id, data, self.definitions).spec
            call = self._new_call(account_id, spec, spec.model_dump_json())
            if limit:
                self._check_limit(session, account_id, limit)
            session.add(call)  # before dispatch: the worker's first event may come at once
            session.commit()
        return call, claimed

    def _dispatch(self, call: Call, claimed: idempotency.Claim | None) -> str:
        """LiveKit: the room, the participant token (web) and the dispatch; the 201 body.
        A failure stores the call as failed, releases the key and raises (502/503)."""
        token = None
        room_created = False
        try:
            self.gateway.create_room(
                call.id, empty_timeout=self.settings.room_empty_timeout_seconds
            )
            room_created = True
            if call.type == "web":
                token = self.gateway.participant_token(
                    call.id,
                    call.participant_identity or "",
                    call.participant_name,
                    self.settings.token_ttl_seconds,
                )
            call.dispatch_id = self.gateway.dispatch(
                call.id, self.settings.agent_name, call.callspec
            )
        except LiveKitFailure as exc:
            self._fail(call, exc, claimed, delete_room=room_created)
            message = f"{exc.message} (call {call.id} stored as failed)"
            raise type(exc)(message, field=exc.field, code=exc.code) from exc
        logger.info(
            "call created",
            extra={"call_id": call.id, "account_id": call.account_id, "type": call.type},
        )
        return created_body(call, self.settings, token)

    @staticmethod
    def _new_call(account_id: str, spec: CallSpec, callspec_json: str) -> Call:
        now = utcnow()
        return Call(
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

    @staticmethod
    def _check_limit(session: Session, account_id: str, limit: int) -> None:
        """429 if the account has ``limit`` calls not yet ended (under its lock: in this
        process, and in the database across API processes)."""
        lock_account(session, account_id)
        live = session.scalar(in_progress_count(account_id))
        if (live or 0) >= limit:
            raise TooManyRequests(
                f"this account has {live} calls in progress, its limit is {limit}; "
                "retry when one has ended",
                code="concurrency_limit",
                retry_after=CONCURRENCY_RETRY_AFTER_SECONDS,
            )

    def _fail(
        self,
        call: Call,
        exc: LiveKitFailure,
        claimed: idempotency.Claim | None,
        *,
        delete_room: bool,
    ) -> None:
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
            if claimed is not None:
                idempotency.release(session, claimed)  # commits all of it
            else:
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
