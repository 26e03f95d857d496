"""The rules a stored definition is held to: the same as ``check-config`` holds files to.

A document is validated by its model (:mod:`convoi.definitions.models`: field by field, the field
named in the error), then together with the rest of the account's definitions by
:func:`convoi.definitions.loader.check_references` (knowledge bases, squad members and their
overrides, priced models). A change that would break another object (a squad whose member
overrides no longer merge with the updated agent) is refused as well. Deleting an object another
one uses (an agent in a squad, a knowledge base an agent draws on) is a 409.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from convoi.controlplane import definitions as store
from convoi.controlplane.errors import Conflict, InvalidRequest
from convoi.definitions.loader import ConfigIssue, check_references
from convoi.definitions.models import Agent, KnowledgeBase, Squad
from convoi.definitions.prices import PriceList
from convoi.validation import issues_from

__all__ = ["KIND_NAMES", "check_change", "ensure_unused", "validate_document"]

KIND_NAMES: dict[store.Kind, str] = {
    "agent": "agent",
    "squad": "workforce",
    "phone_number": "phone number",
    "knowledge_base": "knowledge base",
}
_SELF = "<self>"


def validate_document(kind: store.Kind, data: dict[str, Any]) -> BaseModel:
    """The document as its model; :class:`InvalidRequest` names the first field at fault."""
    model = store.MODELS[kind]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        issues = issues_from(exc, model)
        message = "; ".join(str(i) for i in issues[:5])
        raise InvalidRequest(message, field=issues[0].field or None) from None


def _views(
    session: Session, account_id: str, replace: BaseModel | None
) -> tuple[
    dict[str, tuple[Agent, str]],
    dict[str, tuple[Squad, str]],
    dict[str, tuple[KnowledgeBase, str]],
]:
    agents: dict[str, tuple[Agent, str]] = {}
    squads: dict[str, tuple[Squad, str]] = {}
    kbs: dict[str, tuple[KnowledgeBase, str]] = {}
    for stored in store.list_current(session, account_id):
        if stored.kind == "agent":
            agents[stored.object_id] = (Agent.model_validate(stored.document), stored.object_id)
        elif stored.kind == "squad":
            squads[stored.object_id] = (Squad.model_validate(stored.document), stored.object_id)
        elif stored.kind == "knowledge_base":
            kb = KnowledgeBase.model_validate(stored.document)
            kbs[stored.object_id] = (kb, stored.object_id)
    if isinstance(replace, Agent):
        agents[replace.id] = (replace, _SELF)
    elif isinstance(replace, Squad):
        squads[replace.id] = (replace, _SELF)
    elif isinstance(replace, KnowledgeBase):
        kbs[replace.id] = (replace, _SELF)
    return agents, squads, kbs


def _problems(
    session: Session, account_id: str, replace: BaseModel | None, prices: PriceList
) -> list[ConfigIssue]:
    return check_references(*_views(session, account_id, replace), prices)[0]


def check_change(session: Session, account_id: str, model: BaseModel, prices: PriceList) -> None:
    """Refuse (422) a new or changed object whose references do not resolve on the account, or
    that would break another of the account's objects."""
    before = {(i.file, i.field, i.problem) for i in _problems(session, account_id, None, prices)}
    for issue in _problems(session, account_id, model, prices):
        if issue.file == _SELF:
            raise InvalidRequest(f"{issue.field}: {issue.problem}", field=issue.field or None)
        if (issue.file, issue.field, issue.problem) not in before:
            raise InvalidRequest(
                f"this change would break {issue.file}: {issue.field}: {issue.problem}"
            )


def ensure_unused(session: Session, account_id: str, kind: store.Kind, object_id: str) -> None:
    """Refuse (409) deleting an agent a squad uses or a knowledge base an agent uses."""
    users: list[str] = []
    for stored in store.list_current(session, account_id):
        doc = stored.document
        if kind == "agent" and stored.kind == "squad":
            members = doc.get("members", {})
            if any(m.get("agent_id") == object_id for m in members.values()):
                users.append(stored.object_id)
        elif (
            kind == "knowledge_base"
            and stored.kind == "agent"
            and object_id in doc.get("knowledge_base_ids", ())
        ):
            users.append(stored.object_id)
    if users:
        what = KIND_NAMES[kind]
        user_kind = "workforce" if kind == "agent" else "agent"
        raise Conflict(
            f"{what} {object_id} is used by {user_kind} {', '.join(users)}; "
            f"remove it from there first",
            field="id",
            code=f"{kind}_in_use",
        )
