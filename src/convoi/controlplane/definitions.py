"""Each account's definitions, stored as versioned, validated JSON documents.

Agents, squads (workforces), phone numbers and knowledge bases belong to an account: every read is
filtered by the account, so another account's id is exactly as unknown as an id nobody has. Each
change adds a version (a row of ``definition_versions``); the newest version not deleted is the
current one; deleting marks every version deleted. A document that is unchanged (same canonical
JSON) adds no version, which makes :func:`import_definitions` idempotent.

Storage only: validating a document against the rules of ``check-config`` is
:mod:`convoi.controlplane.definitions_rules`; the HTTP routes are
:mod:`convoi.controlplane.api.routes.definitions`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from convoi.controlplane.db.models import DefinitionVersion, utcnow
from convoi.definitions.ids import AGENT_PREFIX, KB_PREFIX, PHONE_PREFIX, SQUAD_PREFIX
from convoi.definitions.models import Agent, Definitions, KnowledgeBase, PhoneNumber, Squad

__all__ = [
    "KINDS",
    "MODELS",
    "PREFIXES",
    "ImportReport",
    "Kind",
    "Stored",
    "content_hash",
    "current",
    "current_many",
    "has_definitions",
    "import_definitions",
    "list_current",
    "mark_deleted",
    "put",
]

Kind = Literal["agent", "squad", "phone_number", "knowledge_base"]
KINDS: tuple[Kind, ...] = ("knowledge_base", "phone_number", "agent", "squad")
"""In import order: what a kind refers to comes before it."""
MODELS: dict[Kind, type[BaseModel]] = {
    "agent": Agent,
    "squad": Squad,
    "phone_number": PhoneNumber,
    "knowledge_base": KnowledgeBase,
}
PREFIXES: dict[Kind, str] = {
    "agent": AGENT_PREFIX,
    "squad": SQUAD_PREFIX,
    "phone_number": PHONE_PREFIX,
    "knowledge_base": KB_PREFIX,
}


@dataclass(frozen=True, slots=True)
class Stored:
    """The current version of one object."""

    kind: Kind
    object_id: str
    version: int
    document: dict[str, Any]
    created_at: datetime
    """When its first version was stored."""
    updated_at: datetime
    """When this version was stored."""


def content_hash(document: dict[str, Any]) -> str:
    """SHA-256 of the document as canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _live(account_id: str) -> Any:
    return select(DefinitionVersion).where(
        DefinitionVersion.account_id == account_id, DefinitionVersion.deleted_at.is_(None)
    )


_VERSION_COLUMNS = (
    DefinitionVersion.object_id,
    DefinitionVersion.kind,
    DefinitionVersion.version,
    DefinitionVersion.document,
    DefinitionVersion.created_at,
)
"""What :class:`Stored` is made of: read as plain rows where no ORM object is needed."""


def _newest(rows: Iterable[Any]) -> list[Stored]:
    """The current version of each object among ``rows`` (any order), by object id; a row is a
    :class:`DefinitionVersion` or a row of :data:`_VERSION_COLUMNS`."""
    by_id: dict[str, list[Any]] = {}
    for row in rows:
        by_id.setdefault(row.object_id, []).append(row)
    out = []
    for object_id in sorted(by_id):
        versions = sorted(by_id[object_id], key=lambda r: r.version)
        first, last = versions[0], versions[-1]
        kind: Kind = last.kind  # only KINDS are ever stored
        out.append(
            Stored(kind, object_id, last.version, last.document, first.created_at, last.created_at)
        )
    return out


def current(session: Session, account_id: str, kind: Kind, object_id: str) -> Stored | None:
    """The object's current version on this account, or None (unknown, deleted, or another
    account's)."""
    rows = session.scalars(
        _live(account_id).where(
            DefinitionVersion.kind == kind, DefinitionVersion.object_id == object_id
        )
    )
    found = _newest(rows)
    return found[0] if found else None


def current_many(session: Session, account_id: str, object_ids: Iterable[str]) -> dict[str, Stored]:
    """The current versions of the given ids (any kind) found on this account."""
    ids = sorted(set(object_ids))
    if not ids:
        return {}
    query = select(*_VERSION_COLUMNS).where(
        DefinitionVersion.account_id == account_id,
        DefinitionVersion.deleted_at.is_(None),
        DefinitionVersion.object_id.in_(ids),
    )  # plain rows, not ORM objects: every create reads its definitions (a third of its CPU)
    return {s.object_id: s for s in _newest(session.connection().execute(query))}


def list_current(session: Session, account_id: str, kind: Kind | None = None) -> list[Stored]:
    """Every current object of the account (of ``kind``), by id."""
    query = _live(account_id)
    if kind is not None:
        query = query.where(DefinitionVersion.kind == kind)
    return _newest(session.scalars(query))


def has_definitions(session: Session, account_id: str) -> bool:
    """Whether the account ever stored a definition (deleted ones count)."""
    query = select(exists().where(DefinitionVersion.account_id == account_id))
    return bool(session.scalar(query))


def put(session: Session, account_id: str, kind: Kind, document: dict[str, Any]) -> Stored:
    """Store ``document`` (validated by the caller, ``id`` inside) as the object's next version,
    unless it equals the current one. Flushes; the caller commits."""
    object_id = str(document["id"])
    digest = content_hash(document)
    existing = session.scalars(
        select(DefinitionVersion).where(
            DefinitionVersion.account_id == account_id, DefinitionVersion.object_id == object_id
        )
    ).all()
    live = [r for r in existing if r.deleted_at is None]
    newest = max(live, key=lambda r: r.version) if live else None
    if newest is not None and newest.content_hash == digest and newest.kind == kind:
        return _newest(live)[0]
    row = DefinitionVersion(
        account_id=account_id,
        kind=kind,
        object_id=object_id,
        version=max((r.version for r in existing), default=0) + 1,
        document=document,
        content_hash=digest,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return _newest([*live, row])[0]


def mark_deleted(session: Session, account_id: str, object_id: str) -> None:
    """Mark every version of the object deleted (the caller checked it exists and is unused)."""
    session.execute(
        update(DefinitionVersion)
        .where(
            DefinitionVersion.account_id == account_id,
            DefinitionVersion.object_id == object_id,
            DefinitionVersion.deleted_at.is_(None),
        )
        .values(deleted_at=utcnow())
    )


@dataclass
class ImportReport:
    """What an import did: object id → version stored, split into new and unchanged."""

    stored: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)


def import_definitions(session: Session, account_id: str, defs: Definitions) -> ImportReport:
    """Store every object of ``defs`` (already validated by the loader) on the account; an
    unchanged object adds no version. Flushes; the caller commits."""
    report = ImportReport()
    groups: dict[Kind, dict[str, Any]] = {
        "knowledge_base": dict(defs.knowledge_bases),
        "phone_number": dict(defs.phone_numbers),
        "agent": dict(defs.agents),
        "squad": dict(defs.squads),
    }
    for kind in KINDS:
        for object_id, model in sorted(groups[kind].items()):
            before = current(session, account_id, kind, object_id)
            stored = put(session, account_id, kind, model.model_dump(mode="json"))
            if before is not None and before.version == stored.version:
                report.unchanged[object_id] = stored.version
            else:
                report.stored[object_id] = stored.version
    return report
