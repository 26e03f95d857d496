"""Parse dispatch metadata into a CallSpec and resolve it against the definitions.

``resolve_call(metadata, definitions)`` is everything the worker (and ``check-call``) does before
touching a room: JSON → :class:`CallSpec` → agent or squad lookup → override merge → price check
(every model must be priced: :mod:`convoi.definitions.pricing`) → greeting and prompt rendering. Any problem raises :class:`CallSpecError` naming the offending field; the worker
turns it into a ``failed`` / ``invalid_request`` end of call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from convoi.callspec.model import CallSpec, _FieldError
from convoi.definitions.models import Agent, Definitions, PhoneNumber, Squad
from convoi.definitions.overrides import AgentOverrides, OverrideError, merge
from convoi.definitions.prices import PriceList
from convoi.definitions.pricing import unpriced_models
from convoi.greeting import render
from convoi.validation import Issue, issues_from

__all__ = ["CallSpecError", "EffectiveAgent", "ResolvedCall", "parse_callspec", "resolve_call"]

MAX_RAW_METADATA_BYTES = 256 * 1024
"""Dispatch metadata larger than this is refused before parsing."""

METADATA_FIELD = "job.metadata"
"""Field name used when the dispatch metadata as a whole is unusable (not JSON, not an object)."""


class CallSpecError(ValueError):
    """A CallSpec that cannot run. ``field`` is the dotted path at fault, ``problem`` says why."""

    reason = "invalid_request"

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(i) for i in issues))

    @property
    def field(self) -> str:
        """The first offending field (dotted path)."""
        return self.issues[0].field

    @property
    def problem(self) -> str:
        """What is wrong with :attr:`field`."""
        return self.issues[0].problem


@dataclass(frozen=True)
class EffectiveAgent:
    """An agent after overrides, with its greeting and instructions rendered for this call."""

    key: str
    """``"agent"`` for single-agent calls, the member key in a squad."""
    agent: Agent
    greeting: str | None
    """The rendered first_message, or None when the LLM should open the call."""
    instructions: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResolvedCall:
    """A validated call: the spec, who runs it and from which number."""

    spec: CallSpec
    members: dict[str, EffectiveAgent]
    start: str
    squad: Squad | None = None
    phone_number: PhoneNumber | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def start_agent(self) -> EffectiveAgent:
        """The agent that answers first."""
        return self.members[self.start]


def _error(field_name: str, problem: str) -> CallSpecError:
    return CallSpecError([Issue(field_name, problem)])


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def parse_callspec(metadata: str | bytes | Mapping[str, Any]) -> CallSpec:
    """Validate dispatch metadata (a JSON string or an already decoded mapping)."""
    if isinstance(metadata, str | bytes):
        if not metadata.strip():
            raise _error(METADATA_FIELD, "empty: the dispatch carried no CallSpec")
        if len(metadata) > MAX_RAW_METADATA_BYTES:
            raise _error(METADATA_FIELD, f"too large (at most {MAX_RAW_METADATA_BYTES} bytes)")
        try:
            data = json.loads(
                metadata, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates
            )
        except _DuplicateKey as exc:
            raise _error(METADATA_FIELD, f"key {exc.key!r} appears more than once") from None
        except RecursionError:
            raise _error(METADATA_FIELD, "not valid JSON (nested too deeply)") from None
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            raise _error(METADATA_FIELD, f"not valid JSON ({exc})") from None
    else:
        data = metadata
    if not isinstance(data, Mapping):
        raise _error(METADATA_FIELD, f"must be a JSON object, got {type(data).__name__}")
    try:
        return CallSpec.model_validate(dict(data))
    except ValidationError as exc:
        issues: list[Issue] = []
        for err in exc.errors(include_url=False):
            cause = err.get("ctx", {}).get("error")
            if isinstance(cause, _FieldError):
                issues.append(Issue(cause.field, cause.problem))
        raise CallSpecError(issues or issues_from(exc, CallSpec)) from None


def _sets_block(layer: AgentOverrides | Mapping[str, Any] | None, kind: str) -> bool:
    """Whether an override layer names the provider or model of block ``kind``."""
    if layer is None:
        return False
    block = getattr(layer, kind) if isinstance(layer, AgentOverrides) else layer.get(kind)
    return isinstance(block, Mapping) and any(block.get(k) for k in ("provider", "model"))


def _check_priced(agent: Agent, layers: list[tuple[str, Any]], prices: PriceList) -> None:
    """Refuse an effective agent with an unpriced model, naming the override that chose it."""
    issues = []
    for issue in unpriced_models(agent, prices):
        kind = issue.field.split(".", 1)[0]
        prefix = next((p for p, layer in reversed(layers) if _sets_block(layer, kind)), None)
        where = prefix or f"agents.{agent.id}"
        issues.append(Issue(f"{where}.{issue.field}", issue.problem))
    if issues:
        raise CallSpecError(issues)


def _effective(
    key: str,
    agent: Agent,
    overrides: list[tuple[str, Any]],
    contact_name: str | None,
    prices: PriceList,
) -> EffectiveAgent:
    notes: list[str] = []
    for prefix, layer in overrides:
        try:
            result = merge(agent, layer, field_prefix=prefix)
        except OverrideError as exc:
            raise CallSpecError(exc.issues) from None
        agent = result.agent
        notes.extend(result.notes)
    _check_priced(agent, overrides, prices)
    greeting = render(agent.first_message, contact_name) if agent.first_message else None
    return EffectiveAgent(
        key=key,
        agent=agent,
        greeting=greeting,
        instructions=render(agent.system_prompt, contact_name),
        notes=tuple(notes),
    )


def resolve_call(
    metadata: str | bytes | Mapping[str, Any] | CallSpec, defs: Definitions
) -> ResolvedCall:
    """Parse (unless given a CallSpec) and resolve a call against ``defs``, or against the
    definition embedded in it (``definition``: then only ``defs.prices`` is used)."""
    spec = metadata if isinstance(metadata, CallSpec) else parse_callspec(metadata)
    if spec.definition is not None:  # the definition travels with the call: it wins
        if issues := spec.definition.problems(defs.prices):
            raise CallSpecError(issues)
        defs = spec.definition.definitions(defs.prices)
    overrides = spec.agent_overrides
    if overrides and overrides.knowledge_base_ids:
        for i, kb in enumerate(overrides.knowledge_base_ids):
            if kb not in defs.knowledge_bases:
                raise _error(
                    f"agent_overrides.knowledge_base_ids[{i}]", f"unknown knowledge base {kb}"
                )

    phone = None
    if spec.phone_number_id is not None:
        phone = defs.phone_numbers.get(spec.phone_number_id)
        if phone is None:
            raise _error("phone_number_id", f"unknown phone number {spec.phone_number_id}")

    call_layer = [("agent_overrides", overrides)] if overrides else []
    name = spec.contact_name
    if spec.squad_id is not None:
        squad = defs.squads.get(spec.squad_id)
        if squad is None:
            raise _error("squad_id", f"unknown workforce {spec.squad_id}")
        members = {
            key: _effective(
                key,
                defs.agents[m.agent_id],
                [(f"squads.{squad.id}.members.{key}.overrides", m.overrides), *call_layer],
                name,
                defs.prices,
            )
            for key, m in squad.members.items()
        }
        return ResolvedCall(spec, members, squad.start_member, squad=squad, phone_number=phone)

    assert spec.agent_id is not None
    agent = defs.agents.get(spec.agent_id)
    if agent is None:
        raise _error("agent_id", f"unknown agent {spec.agent_id}")
    if spec.type != "outbound_phone" and agent.transfers:
        agent = agent.model_copy(update={"transfers": ()})  # only a phone call can be transferred
    member = _effective("agent", agent, call_layer, name, defs.prices)
    return ResolvedCall(spec, {"agent": member}, "agent", phone_number=phone)
