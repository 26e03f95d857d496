"""Loading ``agents_config/`` from YAML, with ``file: field: problem`` errors.

Layout (one home per kind)::

    agents_config/
      agents/*.yaml           one agent per file
      squads/*.yaml           one squad (workforce) per file
      phone_numbers.yaml      {phone_numbers: [...]}
      knowledge_bases.yaml    {knowledge_bases: [...]}
      prices.yaml             the price list

Everything is validated, ids must be unique, every reference (knowledge bases, squad members,
member overrides) must resolve, and every agent's models (squad members' after their overrides)
must be in the price list (:mod:`convoi.definitions.pricing`). :func:`load_definitions` raises :class:`ConfigError` listing every
problem found, not just the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from convoi.definitions.models import (
    Agent,
    Definitions,
    KnowledgeBase,
    PhoneNumber,
    Squad,
)
from convoi.definitions.overrides import OverrideError, merge
from convoi.definitions.prices import PriceList
from convoi.definitions.pricing import unpriced_models
from convoi.greeting import unknown_placeholders
from convoi.validation import issues_from

__all__ = ["ConfigError", "ConfigIssue", "LoadResult", "check_references", "load_definitions"]

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class ConfigIssue:
    """A problem in one file: ``file: field: problem``."""

    file: str
    field: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.problem}"


class ConfigError(Exception):
    """The definitions are invalid; ``issues`` lists every problem found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


@dataclass
class LoadResult:
    """Valid definitions plus warnings that do not stop a call (e.g. an unknown placeholder)."""

    definitions: Definitions
    warnings: list[ConfigIssue] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    """Object id → the file it came from (relative to the config dir)."""


class _Collector:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.errors: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []
        self.invalid_ids: set[str] = set()
        """Ids of objects whose own definition failed (so references to them are not 'unknown')."""

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root.parent))
        except ValueError:
            return str(path)

    def read(self, path: Path) -> Any:
        try:
            return yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.errors.append(ConfigIssue(self.rel(path), "", "file is missing"))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark else ""
            self.errors.append(ConfigIssue(self.rel(path), where, f"not valid YAML: {exc}"))
        return None

    def model(self, cls: type[M], data: Any, path: Path, prefix: str = "") -> M | None:
        if not isinstance(data, dict):
            self.errors.append(ConfigIssue(self.rel(path), prefix, "must be a mapping of keys"))
            return None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            if isinstance(data.get("id"), str):
                self.invalid_ids.add(data["id"])
            for issue in issues_from(exc, cls, prefix):
                self.errors.append(ConfigIssue(self.rel(path), issue.field, issue.problem))
            return None


def _load_dir(col: _Collector, folder: Path, cls: type[M]) -> dict[str, tuple[M, str]]:
    out: dict[str, tuple[M, str]] = {}
    if not folder.is_dir():
        col.errors.append(ConfigIssue(col.rel(folder), "", "folder is missing"))
        return out
    for path in sorted(folder.glob("*.y*ml")):
        obj = col.model(cls, col.read(path), path)
        if obj is None:
            continue
        obj_id = obj.id  # type: ignore[attr-defined]  # M: Agent, Squad, PhoneNumber or KnowledgeBase
        if obj_id in out:
            col.errors.append(
                ConfigIssue(
                    col.rel(path), "id", f"duplicate id {obj_id} (also in {out[obj_id][1]})"
                )
            )
            continue
        out[obj_id] = (obj, col.rel(path))
    return out


def _load_list(col: _Collector, path: Path, key: str, cls: type[M]) -> dict[str, tuple[M, str]]:
    out: dict[str, tuple[M, str]] = {}
    data = col.read(path)
    if data is None:
        return out
    if not isinstance(data, dict) or set(data) != {key} or not isinstance(data[key], list):
        col.errors.append(
            ConfigIssue(
                col.rel(path), key, f"must be a mapping with one key {key!r} holding a list"
            )
        )
        return out
    for i, item in enumerate(data[key]):
        obj = col.model(cls, item, path, f"{key}[{i}]")
        if obj is None:
            continue
        obj_id = obj.id  # type: ignore[attr-defined]  # M: Agent, Squad, PhoneNumber or KnowledgeBase
        if obj_id in out:
            col.errors.append(
                ConfigIssue(col.rel(path), f"{key}[{i}].id", f"duplicate id {obj_id}")
            )
            continue
        out[obj_id] = (obj, col.rel(path))
    return out


def _check_references(
    col: _Collector,
    agents: dict[str, tuple[Agent, str]],
    squads: dict[str, tuple[Squad, str]],
    kbs: dict[str, tuple[KnowledgeBase, str]],
    prices: PriceList | None,
) -> None:
    for agent, src in agents.values():
        for i, kb in enumerate(agent.knowledge_base_ids):
            if kb not in kbs:
                col.errors.append(
                    ConfigIssue(src, f"knowledge_base_ids[{i}]", f"unknown knowledge base {kb}")
                )
        for token in unknown_placeholders(agent.system_prompt):
            col.warnings.append(
                ConfigIssue(
                    src, "system_prompt", f"{token} is not a placeholder and is kept as written"
                )
            )
        if prices is not None:
            for issue in unpriced_models(agent, prices):
                col.errors.append(ConfigIssue(src, issue.field, issue.problem))
    for squad, src in squads.values():
        for where, problem in squad.problems():
            col.errors.append(ConfigIssue(src, where, problem))
        for key, member in squad.members.items():
            found = agents.get(member.agent_id)
            if found is None:
                if member.agent_id not in col.invalid_ids:  # an invalid agent is reported once
                    col.errors.append(
                        ConfigIssue(
                            src, f"members.{key}.agent_id", f"unknown agent {member.agent_id}"
                        )
                    )
                continue
            prefix = f"members.{key}.overrides"
            try:
                merged = merge(found[0], member.overrides, field_prefix=prefix).agent
            except OverrideError as exc:
                for issue in exc.issues:
                    col.errors.append(ConfigIssue(src, issue.field, issue.problem))
                continue
            if prices is not None and any(k in member.overrides for k in ("llm", "stt", "tts")):
                for issue in unpriced_models(merged, prices):
                    col.errors.append(ConfigIssue(src, f"{prefix}.{issue.field}", issue.problem))
            if "knowledge_base_ids" in member.overrides:
                for i, kb in enumerate(merged.knowledge_base_ids):
                    if kb not in kbs:
                        col.errors.append(
                            ConfigIssue(
                                src,
                                f"{prefix}.knowledge_base_ids[{i}]",
                                f"unknown knowledge base {kb}",
                            )
                        )


def check_references(
    agents: dict[str, tuple[Agent, str]],
    squads: dict[str, tuple[Squad, str]],
    knowledge_bases: dict[str, tuple[KnowledgeBase, str]],
    prices: PriceList | None,
) -> tuple[list[ConfigIssue], list[ConfigIssue]]:
    """The cross-reference checks of :func:`load_definitions` on already validated objects, each
    given with the name of its source (a file, or wherever it came from): ``(errors, warnings)``.

    The control plane's definitions API and an embedded dispatch definition use it, so every
    source of definitions is held to the rules ``check-config`` applies to files."""
    col = _Collector(Path.cwd())
    _check_references(col, agents, squads, knowledge_bases, prices)
    return col.errors, col.warnings


def load_definitions(config_dir: str | Path) -> LoadResult:
    """Load and validate every definition under ``config_dir``; raise :class:`ConfigError` on any problem."""
    root = Path(config_dir).resolve()
    col = _Collector(root)
    if not root.is_dir():
        raise ConfigError([ConfigIssue(str(config_dir), "", "config folder does not exist")])

    agents = _load_dir(col, root / "agents", Agent)
    squads = _load_dir(col, root / "squads", Squad)
    phones = _load_list(col, root / "phone_numbers.yaml", "phone_numbers", PhoneNumber)
    kbs = _load_list(col, root / "knowledge_bases.yaml", "knowledge_bases", KnowledgeBase)
    prices_path = root / "prices.yaml"
    prices_data = col.read(prices_path)
    prices = col.model(PriceList, prices_data, prices_path) if prices_data is not None else None

    _check_references(col, agents, squads, kbs, prices)
    if col.errors or prices is None:
        raise ConfigError(
            col.errors or [ConfigIssue(col.rel(prices_path), "", "price list is empty")]
        )

    defs = Definitions(
        agents={k: v[0] for k, v in agents.items()},
        squads={k: v[0] for k, v in squads.items()},
        phone_numbers={k: v[0] for k, v in phones.items()},
        knowledge_bases={k: v[0] for k, v in kbs.items()},
        prices=prices,
    )
    sources = {k: v[1] for group in (agents, squads, phones, kbs) for k, v in group.items()}
    sources["prices"] = col.rel(prices_path)
    return LoadResult(defs, col.warnings, sources)
