"""The definition travels with the call: what the control plane embeds in a call's CallSpec.

At create time the call's agent (or squad and every member's agent), its phone number and the
knowledge bases they refer to are read from the account's current definitions and put in the
CallSpec's ``definition`` (:class:`convoi.callspec.embedded.EmbeddedDefinition`, with each
object's version). The request is then resolved with :func:`convoi.callspec.resolve_call`
against that embedded definition alone: the very path the worker takes, so the control plane and
the worker share one merge of overrides and one greeting rule, and an id of another account is
refused exactly as an unknown id (``agent_id: unknown agent …``).

Local use (``CONVOI_SEED_DEFINITIONS``, on by default when ``CONVOI_ENVIRONMENT=local``): an
account that never stored a definition gets the shipped ``agents_config/`` imported on its first
request, so the demo, the devstack and the tests keep calling the shipped agents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from convoi.callspec import CallSpecError, ResolvedCall, parse_callspec, resolve_call
from convoi.callspec.embedded import EmbeddedDefinition
from convoi.callspec.resolve import MAX_RAW_METADATA_BYTES
from convoi.controlplane import definitions as store
from convoi.controlplane.db.engine import Database
from convoi.controlplane.errors import InvalidRequest
from convoi.controlplane.keys import ensure_account
from convoi.controlplane.log import logger
from convoi.definitions.models import Definitions

__all__ = ["embedded_definition", "resolve_for_account", "seed_if_new"]


def seed_if_new(database: Database, account_id: str, shipped: Definitions) -> bool:
    """Import ``shipped`` into an account that never stored a definition; True if it did."""
    with database.session() as session:
        if store.has_definitions(session, account_id):
            return False
        try:
            ensure_account(session, account_id)
            report = store.import_definitions(session, account_id, shipped)
            session.commit()
        except IntegrityError:  # a concurrent request seeded it first
            session.rollback()
            return False
    if not report.stored:  # a concurrent request committed first: the import found it all there
        return False
    logger.info(
        "shipped definitions imported",
        extra={"account_id": account_id, "objects": len(report.stored)},
    )
    return True


def _kb_ids(data: Mapping[str, Any], agents: list[dict[str, Any]]) -> list[str]:
    ids = [kb for a in agents for kb in a.get("knowledge_base_ids", ())]
    overrides = data.get("agent_overrides")
    if isinstance(overrides, Mapping) and isinstance(overrides.get("knowledge_base_ids"), list):
        ids.extend(kb for kb in overrides["knowledge_base_ids"] if isinstance(kb, str))
    return ids


def embedded_definition(
    session: Session, account_id: str, data: Mapping[str, Any]
) -> EmbeddedDefinition:
    """The account's current definitions the call in ``data`` (a create request) needs (what is
    not on the account is left out: resolving then names it unknown)."""
    target = data.get("squad_id") or data.get("agent_id")
    phone_id = data.get("phone_number_id")
    found = store.current_many(
        session, account_id, [x for x in (target, phone_id) if isinstance(x, str)]
    )
    main = found.get(target) if isinstance(target, str) else None
    if main is not None and main.kind not in ("agent", "squad"):
        main = None  # an id of another kind: as unknown as any
    squad = main.document if main is not None and main.kind == "squad" else None
    agents = [main] if main is not None and squad is None else []
    if squad is not None:
        member_ids = [m["agent_id"] for m in squad["members"].values()]
        members = store.current_many(session, account_id, member_ids)
        agents = [members[i] for i in dict.fromkeys(member_ids) if i in members]
    documents = [a.document for a in agents]
    kbs = store.current_many(session, account_id, _kb_ids(data, documents))
    phone = found.get(phone_id) if isinstance(phone_id, str) else None
    if phone is not None and phone.kind != "phone_number":
        phone = None
    used = [*([main] if main else []), *agents, *kbs.values(), *([phone] if phone else [])]
    return EmbeddedDefinition.model_validate(
        {
            "versions": {s.object_id: s.version for s in used},
            "agents": documents,
            "squad": squad,
            "phone_number": phone.document if phone else None,
            "knowledge_bases": [s.document for s in kbs.values() if s.kind == "knowledge_base"],
        }
    )


def resolve_for_account(
    session: Session, account_id: str, data: Mapping[str, Any], shipped: Definitions
) -> ResolvedCall:
    """The create request ``data`` (``call_id`` included) as the CallSpec the worker receives,
    with the account's definition embedded (read in ``session``), resolved; :class:`InvalidRequest`
    names the field. (Seeding the shipped definitions, :func:`seed_if_new`, is the caller's.)"""
    embedded = embedded_definition(session, account_id, data)
    prices_only = Definitions(
        agents={}, squads={}, phone_numbers={}, knowledge_bases={}, prices=shipped.prices
    )
    full = {**data, "definition": embedded.model_dump(mode="json")}
    try:
        resolved = resolve_call(parse_callspec(full), prices_only)
    except CallSpecError as exc:
        raise InvalidRequest(f"{exc.field}: {exc.problem}", field=exc.field) from None
    size = len(resolved.spec.model_dump_json().encode())  # what CreateAgentDispatch carries
    if size > MAX_RAW_METADATA_BYTES:
        raise InvalidRequest(
            f"the call and its definition take {size} bytes as JSON, over the "
            f"{MAX_RAW_METADATA_BYTES} a dispatch may carry",
            field="squad_id" if resolved.squad is not None else "agent_id",
        )
    return resolved
