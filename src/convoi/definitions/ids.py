"""Identifier formats shared by definitions, CallSpecs and the control plane.

Every object id is a kind prefix followed by 4-64 lowercase letters or digits, e.g.
``agt_b88d642dd68747f28305c428b209xxxx`` or ``sqd_3fa85f6457174562b3fc2c963f66afa6``.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

__all__ = [
    "AGENT_PREFIX",
    "CALL_PREFIX",
    "E164",
    "E164_PATTERN",
    "KB_PREFIX",
    "PHONE_PREFIX",
    "SQUAD_PREFIX",
    "AgentId",
    "AgentOrSquadId",
    "CallId",
    "KnowledgeBaseId",
    "PhoneNumberId",
    "SquadId",
]

AGENT_PREFIX = "agt_"
SQUAD_PREFIX = "sqd_"
PHONE_PREFIX = "phn_"
KB_PREFIX = "kb_"
CALL_PREFIX = "call_"

_BODY = re.compile(r"[a-z0-9]{4,64}")


def _prefixed(prefixes: tuple[str, ...], what: str) -> object:
    def check(value: str) -> str:
        for prefix in prefixes:
            if value.startswith(prefix) and _BODY.fullmatch(value[len(prefix) :]):
                return value
        shown = " or ".join(f"'{p}'" for p in prefixes)
        raise ValueError(f"must be {what}: {shown} followed by 4-64 lowercase letters or digits")

    return AfterValidator(check)


def _e164(value: str) -> str:
    if not E164_PATTERN.fullmatch(value):
        raise ValueError(
            "must be an E.164 number: '+', a country code not starting with 0, "
            "7 to 15 digits in all, no spaces (e.g. +971501234567)"
        )
    return value


def _call_id(value: str) -> str:
    if not re.fullmatch(r"call_[A-Za-z0-9]{4,64}", value):
        raise ValueError("must be a call id: 'call_' followed by 4-64 letters or digits")
    return value


E164_PATTERN = re.compile(r"^\+[1-9][0-9]{6,14}$")
"""E.164: a plus, a country code that does not start with 0, 7 to 15 digits in all."""

AgentId = Annotated[str, _prefixed((AGENT_PREFIX,), "an agent id")]
SquadId = Annotated[str, _prefixed((SQUAD_PREFIX,), "a squad (workforce) id")]
PhoneNumberId = Annotated[str, _prefixed((PHONE_PREFIX,), "a phone number id")]
KnowledgeBaseId = Annotated[str, _prefixed((KB_PREFIX,), "a knowledge base id")]
AgentOrSquadId = Annotated[str, _prefixed((AGENT_PREFIX, SQUAD_PREFIX), "an agent or squad id")]
CallId = Annotated[str, AfterValidator(_call_id)]
E164 = Annotated[str, AfterValidator(_e164)]
