"""The CallSpec: the dispatch metadata the control plane hands the worker (docs/architecture.md §2).

It mirrors the seed's request body plus what only the platform knows (``call_id``). Validation is
strict: unknown keys are errors, ids carry their kind prefix, numbers are E.164, and the
``agent_id``/``squad_id`` rules of the seed hold:

- exactly one of ``agent_id`` / ``squad_id``; an ``sqd_`` value in ``agent_id`` means a squad and is
  moved to ``squad_id`` (the seed: "the API tells them apart by their prefix");
- squads only on ``outbound_phone`` calls;
- ``outbound_phone`` needs ``customer.number`` and ``phone_number_id``; a web call has neither.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from convoi.callspec.embedded import EmbeddedDefinition
from convoi.definitions.ids import (
    E164,
    SQUAD_PREFIX,
    AgentOrSquadId,
    CallId,
    PhoneNumberId,
    SquadId,
)
from convoi.definitions.overrides import AgentOverrides

__all__ = ["MAX_METADATA_BYTES", "CallSpec", "Customer"]

MAX_METADATA_BYTES = 16_384
MAX_NAME_LENGTH = 256


def _json_object_bounded(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if (
        value is not None
        and len(json.dumps(value, ensure_ascii=False).encode()) > MAX_METADATA_BYTES
    ):
        raise ValueError(f"too large (at most {MAX_METADATA_BYTES} bytes as JSON)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Customer(_Strict):
    """Who is called (phone calls)."""

    number: E164
    name: str | None = Field(None, max_length=MAX_NAME_LENGTH)
    metadata: dict[str, Any] | None = None

    _metadata_size = field_validator("metadata")(_json_object_bounded)


class CallSpec(_Strict):
    """One call, as dispatched to the worker in the job metadata."""

    call_id: CallId
    type: Literal["web", "outbound_phone"]
    agent_id: AgentOrSquadId | None = None
    squad_id: SquadId | None = None
    participant_name: str | None = Field(None, max_length=MAX_NAME_LENGTH)
    customer: Customer | None = None
    phone_number_id: PhoneNumberId | None = None
    agent_overrides: AgentOverrides | None = None
    metadata: dict[str, Any] | None = None
    definition: EmbeddedDefinition | None = None
    """The definitions the control plane resolved for this call (:mod:`convoi.callspec.embedded`);
    when present the worker runs the call with them instead of its own files."""

    _metadata_size = field_validator("metadata")(_json_object_bounded)

    @model_validator(mode="after")
    def _check_call_shape(self) -> CallSpec:
        if self.agent_id and self.agent_id.startswith(SQUAD_PREFIX):
            if self.squad_id and self.squad_id != self.agent_id:
                raise _field_error("squad_id", "differs from the workforce id given in agent_id")
            if self.type == "web":
                raise _field_error(
                    "agent_id",
                    "a workforce (sqd_) cannot run a web call; web calls are single-agent",
                )
            object.__setattr__(self, "squad_id", self.agent_id)
            object.__setattr__(self, "agent_id", None)
        if self.agent_id and self.squad_id:
            raise _field_error("squad_id", "give either agent_id or squad_id, not both")
        if not self.agent_id and not self.squad_id:
            raise _field_error(
                "agent_id", "required: an agent id (agt_…) or a workforce id (sqd_…)"
            )
        if self.type == "web":
            if self.squad_id:
                raise _field_error("squad_id", "workforce calls are outbound_phone only")
            if self.phone_number_id is not None:
                raise _field_error("phone_number_id", "only for outbound_phone calls")
            if self.customer is not None:
                raise _field_error(
                    "customer", "only for outbound_phone calls (use participant_name)"
                )
        else:
            if self.customer is None:
                raise _field_error("customer.number", "required for outbound_phone calls")
            if self.phone_number_id is None:
                raise _field_error("phone_number_id", "required for outbound_phone calls")
        return self

    @property
    def contact_name(self) -> str | None:
        """The name greetings use: the customer's (phone) or the participant's (web)."""
        if self.type == "outbound_phone":
            return self.customer.name if self.customer else None
        return self.participant_name


class _FieldError(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _field_error(field: str, problem: str) -> _FieldError:
    return _FieldError(field, problem)
