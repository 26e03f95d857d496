"""A definition embedded in the dispatch: the call carries the agent or squad it runs.

The control plane stores each account's definitions (agents, squads, phone numbers, knowledge
bases) as versioned documents. At create time it puts the ones a call needs into the CallSpec's
``definition`` object, with their versions, so the worker needs no definitions of its own and a
change made through the API takes effect on the next call, with no restart::

    "definition": {
      "versions": {"agt_support01": 3, "phn_demo0001": 1},
      "agents": [{...an Agent...}],
      "squad": null | {...a Squad...},
      "phone_number": null | {...a PhoneNumber...},
      "knowledge_bases": [{...}]
    }

The documents are the definitions as stored (not merged): the call's ``agent_overrides`` and a
squad's member overrides are applied by :func:`convoi.callspec.resolve_call`, the one merge both
the control plane (validating the create request) and the worker (running the call) use. The
embedded objects are held to the same cross-reference rules as ``check-config``
(:func:`convoi.definitions.loader.check_references`); a problem names the field under
``definition.`` and the worker ends the call ``failed`` / ``invalid_request``.

Bound: the whole CallSpec is refused above ``MAX_RAW_METADATA_BYTES`` (256 KiB,
:mod:`convoi.callspec.resolve`) on both sides, half of livekit-server's default
``limit.max_metadata_size`` (512 KiB, which CreateAgentDispatch checks).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from convoi.definitions.loader import check_references
from convoi.definitions.models import Agent, Definitions, KnowledgeBase, PhoneNumber, Squad
from convoi.definitions.prices import PriceList
from convoi.validation import Issue

__all__ = ["DEFINITION_FIELD", "EmbeddedDefinition"]

DEFINITION_FIELD = "definition"
MAX_EMBEDDED_AGENTS = 50


class EmbeddedDefinition(BaseModel):
    """The definitions one call runs with, as the control plane resolved them at create time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    versions: dict[str, int] = Field(default_factory=dict, max_length=200)
    """Object id → the version of its definition the call runs with (for the record)."""
    agents: tuple[Agent, ...] = Field((), max_length=MAX_EMBEDDED_AGENTS)
    """The agent (single-agent calls) or every squad member's agent."""
    squad: Squad | None = None
    phone_number: PhoneNumber | None = None
    knowledge_bases: tuple[KnowledgeBase, ...] = Field((), max_length=200)
    """Every knowledge base the agents (or the call's overrides) refer to."""

    def problems(self, prices: PriceList) -> list[Issue]:
        """What is wrong with these definitions taken together (duplicates, dangling
        references, unpriced models), each named under ``definition.``."""
        issues: list[Issue] = []
        agents: dict[str, tuple[Agent, str]] = {}
        for i, agent in enumerate(self.agents):
            where = f"{DEFINITION_FIELD}.agents[{i}]"
            if agent.id in agents:
                issues.append(Issue(f"{where}.id", f"duplicate agent {agent.id}"))
            agents[agent.id] = (agent, where)
        kbs = {
            kb.id: (kb, f"{DEFINITION_FIELD}.knowledge_bases[{i}]")
            for i, kb in enumerate(self.knowledge_bases)
        }
        squads = {self.squad.id: (self.squad, f"{DEFINITION_FIELD}.squad")} if self.squad else {}
        errors, _warnings = check_references(agents, squads, kbs, prices)
        issues.extend(
            Issue(f"{e.file}.{e.field}" if e.field else e.file, e.problem) for e in errors
        )
        return issues

    def definitions(self, prices: PriceList) -> Definitions:
        """These objects as :class:`Definitions` (call :meth:`problems` first)."""
        phones = {self.phone_number.id: self.phone_number} if self.phone_number else {}
        return Definitions(
            agents={a.id: a for a in self.agents},
            squads={self.squad.id: self.squad} if self.squad else {},
            phone_numbers=phones,
            knowledge_bases={kb.id: kb for kb in self.knowledge_bases},
            prices=prices,
        )
