"""API keys: minting, hashed storage, authentication and what each kind may do.

A key is ``sk_live_`` (secret, server side: everything) or ``pk_live_`` (publishable, may sit in a
web page: web calls only) followed by 48 hex digits (192 random bits). Only its SHA-256 digest is
stored; with that much entropy a fast hash is safe (no dictionary to try). The key is shown once,
when minted (``convoi-api create-key``).

``pk_live_`` keys are refused (403) for workforce calls, as the seed says, and for every
``outbound_phone`` call (a key that ships to browsers must not be able to dial numbers: toll fraud).
Reading calls: a ``pk_live_`` key sees its account's web calls only; phone calls answer 404.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from convoi.controlplane.db.models import Account, ApiKey
from convoi.controlplane.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from convoi.controlplane.ids import ACCOUNT_ID_PATTERN, new_api_key_id
from convoi.definitions.ids import SQUAD_PREFIX

__all__ = [
    "KEY_KINDS",
    "KeyKind",
    "Principal",
    "authenticate",
    "create_key",
    "ensure_account",
    "ensure_may_create_call",
    "hash_key",
    "key_kind",
    "store_key",
]

KeyKind = Literal["sk_live", "pk_live"]
KEY_KINDS: tuple[KeyKind, ...] = ("sk_live", "pk_live")
_KEY_RANDOM_HEX = 48
_MAX_KEY_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the account and the kind of key used."""

    account_id: str
    key_id: str
    kind: KeyKind

    @property
    def is_secret(self) -> bool:
        """True for ``sk_live_`` keys."""
        return self.kind == "sk_live"


def hash_key(key: str) -> str:
    """Hex SHA-256 of the key (what the database stores)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_kind(key: str) -> KeyKind | None:
    """The kind a key's prefix announces, or None."""
    return next((kind for kind in KEY_KINDS if key.startswith(f"{kind}_")), None)


def ensure_account(session: Session, account_id: str, name: str | None = None) -> Account:
    """The account, created if missing (``account_id`` must look like ``acct_demo``)."""
    if not ACCOUNT_ID_PATTERN.fullmatch(account_id):
        raise InvalidRequest(
            "account id must be 'acct_' then 3-59 lowercase letters, digits, '_' or '-'",
            field="account_id",
        )
    account = session.get(Account, account_id)
    if account is None:
        account = Account(id=account_id, name=name)
        session.add(account)
        session.flush()
    return account


def store_key(session: Session, account_id: str, key: str) -> ApiKey:
    """Store an existing ``key`` (hashed) for the account; idempotent. Commits."""
    kind = key_kind(key)
    if kind is None or len(key) > _MAX_KEY_LENGTH or len(key) < len(kind) + 17:
        raise InvalidRequest("a key is sk_live_/pk_live_ followed by at least 16 characters")
    ensure_account(session, account_id)
    digest = hash_key(key)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is not None:
        if row.account_id != account_id:
            raise InvalidRequest("this key already belongs to another account")
        return row
    row = ApiKey(
        id=new_api_key_id(),
        account_id=account_id,
        kind=kind,
        key_hash=digest,
        display_prefix=key[: len(kind) + 5],
    )
    session.add(row)
    session.commit()
    return row


def create_key(session: Session, account_id: str, kind: KeyKind) -> str:
    """Mint a new key for the account (created if missing); returns the key, shown only now."""
    if kind not in KEY_KINDS:
        raise InvalidRequest(f"kind must be one of {', '.join(KEY_KINDS)}", field="kind")
    key = f"{kind}_{secrets.token_hex(_KEY_RANDOM_HEX // 2)}"
    store_key(session, account_id, key)
    return key


def authenticate(session: Session, scheme: str | None, credentials: str | None) -> Principal:
    """The principal behind ``Authorization: Bearer <key>``; :class:`AuthenticationFailed` if none."""
    if not credentials:
        raise AuthenticationFailed(
            "missing API key: send 'Authorization: Bearer sk_live_…' (or pk_live_…)",
            field="Authorization",
            code="missing_api_key",
        )
    if (scheme or "").lower() != "bearer" or len(credentials) > _MAX_KEY_LENGTH:
        raise AuthenticationFailed("malformed Authorization header", field="Authorization")
    digest = hash_key(credentials)
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
    if row is None or row.revoked_at is not None:
        raise AuthenticationFailed("unknown or revoked API key", field="Authorization")
    kind: KeyKind = "sk_live" if row.kind == "sk_live" else "pk_live"
    return Principal(account_id=row.account_id, key_id=row.id, kind=kind)


def ensure_may_create_call(principal: Principal, body: Mapping[str, Any]) -> None:
    """Refuse (403) what a publishable key may not start: workforce and phone calls."""
    if principal.is_secret:
        return
    agent_id, squad_id = body.get("agent_id"), body.get("squad_id")
    if squad_id is not None or (isinstance(agent_id, str) and agent_id.startswith(SQUAD_PREFIX)):
        raise PermissionDenied(
            "workforce calls require a secret key (sk_live_…); publishable keys (pk_live_…) "
            "are refused",
            field="squad_id" if squad_id is not None else "agent_id",
        )
    if body.get("type") == "outbound_phone":
        raise PermissionDenied(
            "phone calls require a secret key (sk_live_…); publishable keys (pk_live_…) can only "
            "start web calls",
            field="type",
        )
