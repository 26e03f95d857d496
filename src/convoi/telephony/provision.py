"""Idempotent provisioning of one LiveKit outbound SIP trunk per phone number (real deployments).

Each :class:`~convoi.definitions.models.PhoneNumber` without a ``sip.trunk_id`` gets a trunk
named ``convoi-<phone_number_id>`` with its address, transport, ``numbers=[phone.number]`` and
auth. :func:`provision_trunks` lists the outbound trunks, then

- **create** the missing ones (``CreateSIPOutboundTrunk``),
- **update** changed ones in place with ``update_outbound_trunk_fields`` (the trunk keeps its
  ``ST_…`` id; every managed field is sent, so an update is idempotent),
- **delete_duplicate**: extra trunks with the same name (the oldest one is kept),
- leaves **unchanged** ones alone, reports **orphan** ``convoi-*`` trunks whose number is no longer
  defined (never deletes them), and passes **external** numbers (``sip.trunk_id`` set) through,

and returns ``{phone_number_id: trunk_id}``. ``dry_run=True`` only prints the plan.

Passwords: read from the variable named by ``auth_password_env`` (all missing variables are
reported at once, before any change). They are never printed; plans only say
``auth_password`` changed. Whether it changed is decided from the password the server lists
when it lists one, else from a salted PBKDF2 fingerprint this module keeps in the trunk's
``metadata`` (``{"managed_by": "convoi", "phone_number_id": …, "auth_fingerprint": …}``), so
a server that redacts passwords does not cause an update on every run.

Facts (livekit-server v1.13.5, checked): without Redis every SIP call answers twirp
``internal`` "sip not connected (redis required)" (HTTP 500); with Redis, trunk CRUD works
without any livekit-sip, listings include ``auth_password``, deleting an unknown trunk id
succeeds, and ``update_outbound_trunk_fields(auth_username="", auth_password="")`` clears auth.

CLI: ``python -m convoi.telephony.provision [--config DIR] [--dry-run]`` (LiveKit from
``LIVEKIT_URL`` / ``LIVEKIT_API_KEY`` / ``LIVEKIT_API_SECRET``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import secrets
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from livekit import api
from livekit.protocol.models import Pagination
from livekit.protocol.sip import (
    CreateSIPOutboundTrunkRequest,
    DeleteSIPTrunkRequest,
    ListSIPOutboundTrunkRequest,
    SIPOutboundTrunkInfo,
    SIPTransport,
)

from convoi.definitions.models import PhoneNumber
from convoi.telephony.trunk import (
    TRUNK_NAME_PREFIX,
    TrunkConfigError,
    sip_transport,
    trunk_name,
    trunk_password,
)

__all__ = [
    "LIST_PAGE_SIZE",
    "MANAGED_BY",
    "ActionKind",
    "DesiredTrunk",
    "ProvisionError",
    "TrunkAction",
    "list_outbound_trunks",
    "main",
    "plan_trunks",
    "provision_trunks",
]

MANAGED_BY: Final[str] = "convoi"
LIST_PAGE_SIZE: Final[int] = 100
_PBKDF2_ITERATIONS: Final[int] = 120_000

ActionKind = Literal["create", "update", "unchanged", "delete_duplicate", "orphan", "external"]


class ProvisionError(RuntimeError):
    """A LiveKit SIP API call failed while provisioning; the message carries the server's answer."""


@dataclass(frozen=True, slots=True)
class DesiredTrunk:
    """The outbound trunk a phone number should have."""

    phone_number_id: str
    name: str
    address: str
    transport: SIPTransport
    numbers: tuple[str, ...]
    auth_username: str
    auth_password: str = field(repr=False)

    @classmethod
    def from_phone(cls, phone: PhoneNumber, env: Mapping[str, str] | None = None) -> DesiredTrunk:
        """Build from the definitions; raises :class:`TrunkConfigError` for an unset password."""
        auth = trunk_password(phone, env)
        return cls(
            phone_number_id=phone.id,
            name=trunk_name(phone.id),
            address=phone.sip.address,
            transport=sip_transport(phone.sip.transport),
            numbers=(phone.number,),
            auth_username=auth[0] if auth else "",
            auth_password=auth[1] if auth else "",
        )

    def metadata(self) -> str:
        """The trunk metadata: ownership plus the password fingerprint (never the password)."""
        data: dict[str, str] = {"managed_by": MANAGED_BY, "phone_number_id": self.phone_number_id}
        if self.auth_password:
            data["auth_fingerprint"] = _fingerprint(self.auth_password)
        return json.dumps(data, sort_keys=True)

    def info(self) -> SIPOutboundTrunkInfo:
        """The ``SIPOutboundTrunkInfo`` to create."""
        return SIPOutboundTrunkInfo(
            name=self.name,
            metadata=self.metadata(),
            address=self.address,
            transport=self.transport,
            numbers=list(self.numbers),
            auth_username=self.auth_username,
            auth_password=self.auth_password,
        )


@dataclass(frozen=True, slots=True)
class TrunkAction:
    """One step of a provisioning plan."""

    kind: ActionKind
    phone_number_id: str
    name: str
    trunk_id: str | None
    """The existing trunk (``None`` for ``create``)."""
    changes: tuple[str, ...] = ()
    """For ``update``: field names that differ (``address``, ``auth_password``, …)."""
    desired: DesiredTrunk | None = field(default=None, repr=False, compare=False)

    def describe(self, *, dry_run: bool) -> str:
        """One human line, e.g. ``would update convoi-phn_x (ST_ab): address, transport``."""
        verbs = {
            "create": ("would create", "created"),
            "update": ("would update", "updated"),
            "delete_duplicate": ("would delete duplicate", "deleted duplicate"),
            "unchanged": ("unchanged", "unchanged"),
            "orphan": ("orphan (left alone)", "orphan (left alone)"),
            "external": ("external trunk", "external trunk"),
        }
        verb = verbs[self.kind][0 if dry_run else 1]
        where = f" ({self.trunk_id})" if self.trunk_id else ""
        line = f"{verb} {self.name}{where}"
        if self.kind == "create" and self.desired is not None:
            d = self.desired
            transport = SIPTransport.Name(d.transport).removeprefix("SIP_TRANSPORT_").lower()
            auth = " with auth" if d.auth_username or d.auth_password else ""
            line += f": {d.address}/{transport} numbers={','.join(d.numbers)}{auth}"
        elif self.changes:
            line += ": " + ", ".join(self.changes)
        return line


def plan_trunks(
    phones: Iterable[PhoneNumber],
    existing: Iterable[SIPOutboundTrunkInfo],
    *,
    env: Mapping[str, str] | None = None,
) -> list[TrunkAction]:
    """What to do so every phone number has exactly one up-to-date ``convoi-<id>`` trunk.

    Pure (no I/O). Raises one :class:`TrunkConfigError` naming every unset password variable.
    """
    by_name: dict[str, list[SIPOutboundTrunkInfo]] = {}
    for trunk in existing:
        by_name.setdefault(trunk.name, []).append(trunk)
    for trunks in by_name.values():
        trunks.sort(key=lambda t: (t.created_at.seconds, t.created_at.nanos, t.sip_trunk_id))

    actions: list[TrunkAction] = []
    problems: list[str] = []
    wanted: set[str] = set()
    for phone in phones:
        name = trunk_name(phone.id)
        wanted.add(name)
        if phone.sip.trunk_id:
            actions.append(TrunkAction("external", phone.id, name, phone.sip.trunk_id))
            continue
        try:
            desired = DesiredTrunk.from_phone(phone, env)
        except TrunkConfigError as e:
            problems.append(str(e))
            continue
        found = by_name.get(name, [])
        if not found:
            actions.append(TrunkAction("create", phone.id, name, None, desired=desired))
            continue
        keep, *extra = found
        changes = _changes(keep, desired)
        kind: ActionKind = "update" if changes else "unchanged"
        actions.append(TrunkAction(kind, phone.id, name, keep.sip_trunk_id, changes, desired))
        actions.extend(
            TrunkAction("delete_duplicate", phone.id, name, t.sip_trunk_id) for t in extra
        )
    if problems:
        raise TrunkConfigError("; ".join(problems))
    for name, trunks in sorted(by_name.items()):
        if name.startswith(TRUNK_NAME_PREFIX) and name not in wanted:
            pid = name.removeprefix(TRUNK_NAME_PREFIX)
            actions.extend(TrunkAction("orphan", pid, name, t.sip_trunk_id) for t in trunks)
    return actions


async def list_outbound_trunks(lk: api.LiveKitAPI) -> list[SIPOutboundTrunkInfo]:
    """Every outbound trunk, following pagination (servers that ignore paging return all)."""
    seen: dict[str, SIPOutboundTrunkInfo] = {}
    after = ""
    while True:
        request = ListSIPOutboundTrunkRequest(page=Pagination(after_id=after, limit=LIST_PAGE_SIZE))
        try:
            resp = await lk.sip.list_outbound_trunk(request)
        except api.TwirpError as e:
            raise ProvisionError(f"listing outbound SIP trunks failed: {e}") from e
        fresh = [t for t in resp.items if t.sip_trunk_id not in seen]
        seen.update((t.sip_trunk_id, t) for t in fresh)
        if len(resp.items) < LIST_PAGE_SIZE or not fresh:
            return list(seen.values())
        after = resp.items[-1].sip_trunk_id


async def provision_trunks(
    lk: api.LiveKitAPI,
    phones: Iterable[PhoneNumber],
    *,
    dry_run: bool = False,
    env: Mapping[str, str] | None = None,
    echo: Callable[[str], None] | None = print,
) -> dict[str, str]:
    """Converge LiveKit's outbound trunks on ``phones``; return ``{phone_number_id: trunk_id}``.

    ``dry_run``: print the plan (via ``echo``) and change nothing; numbers that would be created
    are missing from the result. Raises :class:`TrunkConfigError` (before any change) or
    :class:`ProvisionError` (a LiveKit call failed; earlier steps stay applied, re-run to
    converge).
    """
    actions = plan_trunks(phones, await list_outbound_trunks(lk), env=env)
    result: dict[str, str] = {}
    for action in actions:
        trunk_id = action.trunk_id
        if not dry_run:
            trunk_id = await _apply(lk, action)
        if echo is not None:
            shown = action if action.trunk_id or dry_run else _with_id(action, trunk_id)
            echo(shown.describe(dry_run=dry_run))
        if action.kind in ("create", "update", "unchanged", "external") and trunk_id:
            result[action.phone_number_id] = trunk_id
    return result


async def _apply(lk: api.LiveKitAPI, action: TrunkAction) -> str | None:
    d = action.desired
    try:
        if action.kind == "create" and d is not None:
            created = await lk.sip.create_outbound_trunk(
                CreateSIPOutboundTrunkRequest(trunk=d.info())
            )
            return created.sip_trunk_id
        if action.kind == "update" and d is not None and action.trunk_id:
            await lk.sip.update_outbound_trunk_fields(
                action.trunk_id,
                address=d.address,
                transport=d.transport,
                numbers=list(d.numbers),
                auth_username=d.auth_username,
                auth_password=d.auth_password,
                metadata=d.metadata(),
            )
        elif action.kind == "delete_duplicate" and action.trunk_id:
            await lk.sip.delete_trunk(DeleteSIPTrunkRequest(sip_trunk_id=action.trunk_id))
    except api.TwirpError as e:
        raise ProvisionError(f"{action.kind} {action.name} failed: {e}") from e
    return action.trunk_id


def _with_id(action: TrunkAction, trunk_id: str | None) -> TrunkAction:
    return TrunkAction(
        action.kind, action.phone_number_id, action.name, trunk_id, action.changes, action.desired
    )


def _changes(existing: SIPOutboundTrunkInfo, desired: DesiredTrunk) -> tuple[str, ...]:
    changes: list[str] = []
    if existing.address != desired.address:
        changes.append("address")
    if existing.transport != desired.transport:
        changes.append("transport")
    if sorted(existing.numbers) != sorted(desired.numbers):
        changes.append("numbers")
    if existing.auth_username != desired.auth_username:
        changes.append("auth_username")
    meta = _metadata(existing.metadata)
    if not _password_matches(existing, meta, desired.auth_password):
        changes.append("auth_password")
    if (
        meta.get("managed_by") != MANAGED_BY
        or meta.get("phone_number_id") != desired.phone_number_id
    ):
        changes.append("metadata")
    return tuple(changes)


def _password_matches(existing: SIPOutboundTrunkInfo, meta: dict[str, Any], password: str) -> bool:
    if existing.auth_password:  # the server lists it: authoritative
        return hmac.compare_digest(existing.auth_password.encode(), password.encode())
    fingerprint = meta.get("auth_fingerprint")
    if isinstance(fingerprint, str) and fingerprint:
        return _verify(fingerprint, password)
    return not password


def _metadata(raw: str) -> dict[str, Any]:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _fingerprint(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _PBKDF2_ITERATIONS)
    return f"pbkdf2_sha256${_PBKDF2_ITERATIONS}${salt.hex()}${digest.hex()}"


def _verify(fingerprint: str, password: str) -> bool:
    try:
        scheme, iterations, salt_hex, digest_hex = fingerprint.split("$")
        if scheme != "pbkdf2_sha256":
            return False
        salt, expected = bytes.fromhex(salt_hex), bytes.fromhex(digest_hex)
        digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(digest, expected)


def main(argv: list[str] | None = None) -> int:
    """``python -m convoi.telephony.provision``: provision the trunks of ``--config``."""
    from convoi.definitions.loader import ConfigError, load_definitions

    parser = argparse.ArgumentParser(
        prog="python -m convoi.telephony.provision",
        description="Create/update one LiveKit outbound SIP trunk per phone number.",
    )
    parser.add_argument(
        "--config", default=os.environ.get("CONVOI_CONFIG_DIR", "agents_config"), help="definitions"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    args = parser.parse_args(argv)
    try:
        phones = list(load_definitions(args.config).definitions.phone_numbers.values())
    except ConfigError as e:
        print(f"invalid definitions:\n{e}", file=sys.stderr)
        return 2

    async def run() -> dict[str, str]:
        lk = api.LiveKitAPI()
        try:
            return await provision_trunks(lk, phones, dry_run=args.dry_run)
        finally:
            await lk.aclose()

    try:
        mapping = asyncio.run(run())
    except (TrunkConfigError, ProvisionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(mapping, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
