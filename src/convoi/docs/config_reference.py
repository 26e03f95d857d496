"""The configuration reference (``docs/configuration.md``), generated from the pydantic models.

    python -m convoi.docs.config_reference > docs/configuration.md

Environment variables come from the settings classes in :data:`SETTINGS`; the ``agents_config/``
formats from the definition models in :data:`DEFINITIONS` and the provider blocks registered in
:mod:`convoi.definitions.providers`, with every nested model they use. Each field shows its name,
type, default, constraints (from ``Field(...)``/``Annotated`` metadata) and description (the
``Field(description=...)`` or the docstring written under the field). ``tests/test_config_reference.py``
fails when the committed file differs from what this prints.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from convoi.controlplane.settings import ControlPlaneSettings
from convoi.definitions import ids
from convoi.definitions.models import Agent, KnowledgeBase, PhoneNumber, Squad
from convoi.definitions.prices import PriceList
from convoi.definitions.providers import LLM_PROVIDERS, STT_PROVIDERS, TTS_PROVIDERS
from convoi.reporting.delivery import DeliverySettings
from convoi.settings import WorkerSettings
from convoi.worker.metrics import MetricsSettings

__all__ = ["COMMAND", "DEFINITIONS", "SETTINGS", "main", "render"]

COMMAND = "python -m convoi.docs.config_reference > docs/configuration.md"
"""The command that regenerates the committed reference."""

SETTINGS: tuple[tuple[str, type[BaseSettings]], ...] = (
    ("Worker", WorkerSettings),
    ("Call events (delivery to the control plane)", DeliverySettings),
    ("Metrics", MetricsSettings),
    ("Control plane (convoi-api)", ControlPlaneSettings),
)
"""Settings classes whose environment variables are documented, with a section title each."""

DEFINITIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("`agents_config/agents/*.yaml`, one agent per file", Agent),
    ("`agents_config/squads/*.yaml`, one squad (workforce) per file", Squad),
    ("`agents_config/phone_numbers.yaml`, a list under `phone_numbers:`", PhoneNumber),
    ("`agents_config/knowledge_bases.yaml`, a list under `knowledge_bases:`", KnowledgeBase),
    ("`agents_config/prices.yaml`", PriceList),
)
"""Top-level definition models: where they live, model (nested models follow each one)."""

_ID_FORMATS: tuple[tuple[str, str], ...] = (
    ("AgentId", ids.AGENT_PREFIX),
    ("SquadId", ids.SQUAD_PREFIX),
    ("PhoneNumberId", ids.PHONE_PREFIX),
    ("KnowledgeBaseId", ids.KB_PREFIX),
    ("CallId", ids.CALL_PREFIX),
)
_ALIASES: dict[int, str] = {
    id(get_args(getattr(ids, name))[1]): name for name, _ in _ID_FORMATS if name != "CallId"
} | {id(get_args(ids.CallId)[1]): "CallId", id(get_args(ids.E164)[1]): "E164"}


# -- text helpers -----------------------------------------------------------------------------


def _markdown(text: str) -> str:
    """reST-ish docstring text as one Markdown line."""
    text = re.sub(r":[a-z]+:`~?(?:[\w.]+\.)?([\w]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    return " ".join(text.split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else "—"


def _code(value: object) -> str:
    return f"`{value}`"


def _anchor(cls: type) -> str:
    return cls.__name__.lower()


# -- docstrings under fields ------------------------------------------------------------------


def _attribute_docstrings(cls: type) -> dict[str, str]:
    """``{field: docstring}`` for string literals written right under a field, through the MRO."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass in (object, BaseModel, BaseSettings) or not issubclass(klass, BaseModel):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        node = ast.parse(source).body[0]
        if not isinstance(node, ast.ClassDef):
            continue
        for first, second in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(first, ast.AnnAssign)
                and isinstance(first.target, ast.Name)
                and isinstance(second, ast.Expr)
                and isinstance(second.value, ast.Constant)
                and isinstance(second.value.value, str)
            ):
                docs[first.target.id] = inspect.cleandoc(second.value.value)
    return docs


def _description(cls: type[BaseModel], name: str, info: FieldInfo) -> str:
    return _markdown(info.description or _attribute_docstrings(cls).get(name, ""))


# -- types, constraints, defaults -------------------------------------------------------------

_SCALARS: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    Decimal: "decimal",
    Path: "path",
    SecretStr: "secret string",
    object: "any",
    type(None): "null",
}


def _alias(metadata: list[Any] | tuple[Any, ...]) -> str | None:
    return next((_ALIASES[id(m)] for m in metadata if id(m) in _ALIASES), None)


def _type(tp: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> str:
    """A readable type: ``string``, ``list of AgentId``, ``openai``, ``[CallLimits](#calllimits)``."""
    if (name := _alias(metadata)) is not None:
        return f"[{name}](#value-formats)"
    origin = get_origin(tp)
    if origin is typing.Annotated:
        base, *meta = get_args(tp)
        return _type(base, meta)
    if origin is Literal:
        return " | ".join(_code(v) for v in get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type(arg) for arg in get_args(tp))
    if origin in (tuple, list, set, frozenset):
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return f"list of {_type(args[0])}" if args else "list"
    if origin is dict:
        key, value = get_args(tp)
        return f"map of {_type(key)} → {_type(value)}"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return f"[{tp.__name__}](#{_anchor(tp)})"
    return _SCALARS.get(tp, getattr(tp, "__name__", str(tp)))


def _nested_metadata(tp: Any) -> Iterator[Any]:
    """Metadata of ``Annotated`` types inside an optional/union annotation (e.g. ``Strict``)."""
    if get_origin(tp) is typing.Annotated:
        yield from get_args(tp)[1:]
    elif get_origin(tp) in (typing.Union, types.UnionType):
        for arg in get_args(tp):
            yield from _nested_metadata(arg)


def _constraints(info: FieldInfo) -> str:
    parts: list[str] = []
    for m in [*info.metadata, *_nested_metadata(info.annotation)]:
        if isinstance(m, annotated_types.Ge):
            parts.append(f"≥ {m.ge}")
        elif isinstance(m, annotated_types.Gt):
            parts.append(f"> {m.gt}")
        elif isinstance(m, annotated_types.Le):
            parts.append(f"≤ {m.le}")
        elif isinstance(m, annotated_types.Lt):
            parts.append(f"< {m.lt}")
        elif isinstance(m, annotated_types.MinLen):
            parts.append(f"length ≥ {m.min_length}")
        elif isinstance(m, annotated_types.MaxLen):
            parts.append(f"length ≤ {m.max_length}")
        elif type(m).__name__ == "Strict" and getattr(m, "strict", False):
            parts.append("strict (no conversion from strings)")
        else:
            for key, label in (
                ("pattern", "matches"),
                ("max_digits", "digits ≤"),
                ("decimal_places", "decimal places ≤"),
            ):
                if (value := getattr(m, key, None)) is not None:
                    parts.append(f"{label} {_code(value) if key == 'pattern' else value}")
    return ", ".join(dict.fromkeys(parts))


def _default(info: FieldInfo, *, env: bool) -> str:
    if info.default_factory is not None:
        value = info.get_default(call_default_factory=True, validated_data={})
    elif info.default is PydanticUndefined:
        return "**required**"
    else:
        value = info.default
    if value is None:
        return "unset" if env else "`null`"
    if isinstance(value, BaseModel):
        return "all defaults"
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return f"`{secret}` (development placeholder)" if secret else '`""`'
    if isinstance(value, bool):
        return _code(str(value).lower())
    if isinstance(value, tuple | list):
        return _code("[" + ", ".join(str(v) for v in value) + "]")
    if isinstance(value, dict):
        return _code("{}") if not value else _code(value)
    if value == "":
        return '`""`'
    return _code(value)


# -- models -----------------------------------------------------------------------------------


def _nested_models(tp: Any) -> Iterator[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        yield tp
        return
    for arg in get_args(tp):
        yield from _nested_models(arg)


def _walk(model: type[BaseModel], seen: set[type[BaseModel]]) -> list[type[BaseModel]]:
    """``model`` and the models its fields use (depth first), each once."""
    if model in seen:
        return []
    seen.add(model)
    out = [model]
    for info in model.model_fields.values():
        for nested in _nested_models(info.annotation):
            out += _walk(nested, seen)
    return out


@dataclass(frozen=True)
class _Row:
    name: str
    type: str
    default: str
    constraints: str
    description: str

    def markdown(self) -> str:
        cells = (self.name, self.type, self.default, self.constraints, self.description)
        return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _rows(model: type[BaseModel], *, env: bool) -> list[_Row]:
    rows = []
    for name, info in model.model_fields.items():
        rows.append(
            _Row(
                name=_code(info.alias if env and info.alias else name),
                type=_type(info.annotation, info.metadata),
                default=_default(info, env=env),
                constraints=_constraints(info),
                description=_description(model, name, info),
            )
        )
    return rows


def _table(model: type[BaseModel], *, env: bool) -> list[str]:
    first = "Variable" if env else "Field"
    return [
        f"| {first} | Type | Default | Constraints | Description |",
        "| --- | --- | --- | --- | --- |",
        *(row.markdown() for row in _rows(model, env=env)),
    ]


def _model_section(model: type[BaseModel], level: str, *intro: str) -> list[str]:
    doc = _markdown(inspect.cleandoc(model.__doc__ or ""))
    source = f"`{model.__module__}.{model.__qualname__}`"
    return [
        f"{level} {model.__name__}",
        "",
        *(line for text in intro for line in (text, "")),
        *([doc, ""] if doc else []),
        f"Model: {source}. Unknown keys are errors."
        if _forbids_extra(model)
        else f"Model: {source}.",
        "",
        *_table(model, env=False),
        "",
    ]


def _forbids_extra(model: type[BaseModel]) -> bool:
    return model.model_config.get("extra") == "forbid"


# -- the document -----------------------------------------------------------------------------


def render() -> str:
    """The whole reference, as Markdown."""
    out = [
        "# Configuration reference",
        "",
        f"<!-- Generated by `{COMMAND}`. Do not edit by hand. -->",
        "",
        "Generated from the pydantic models: every field's type, default, constraints and",
        "description come from the code. Operations (deploying, secrets, draining) are in",
        "[operations.md](operations.md).",
        "",
        "## Environment variables",
        "",
        "Read from the process environment, and from a `.env` file in the working directory",
        "(the environment wins). Values are validated when the process starts.",
        "",
    ]
    for title, settings in SETTINGS:
        out += [
            f"### {title}",
            "",
            f"`{settings.__module__}.{settings.__qualname__}`: "
            f"{_markdown(inspect.cleandoc(settings.__doc__ or ''))}",
            "",
            *_table(settings, env=True),
            "",
        ]

    out += [
        "## agents_config/",
        "",
        "YAML files loaded and validated at start-up and by `convoi-worker check-config`; any",
        "problem is reported as `file: field: problem` and the worker refuses to start.",
        "",
    ]
    seen: set[type[BaseModel]] = set()
    providers = [*LLM_PROVIDERS.values(), *STT_PROVIDERS.values(), *TTS_PROVIDERS.values()]
    seen.update(providers)  # documented together under "Provider blocks"
    for where, model in DEFINITIONS:
        top, *nested_models = _walk(model, seen)
        out += _model_section(top, "###", f"Where: {where}.")
        for nested in nested_models:
            out += _model_section(nested, "####")

    out += [
        "### Provider blocks",
        "",
        "An agent's `llm`, `stt` and `tts` blocks. `provider` selects the block; the other keys",
        "are that provider's options. A call's `agent_overrides` merge into a block key by key",
        "while the provider stays the same; a different `provider` replaces the whole block.",
        "",
    ]
    for kind, registry in (("llm", LLM_PROVIDERS), ("stt", STT_PROVIDERS), ("tts", TTS_PROVIDERS)):
        for name, block in registry.items():
            out += _model_section(block, "####", f"`{kind}: {{provider: {name}, …}}`")
            for nested in _walk(block, seen - {block})[1:]:
                out += _model_section(nested, "#####")

    out += ["## Value formats", ""]
    for name, prefix in _ID_FORMATS:
        rule = "letters or digits" if name == "CallId" else "lowercase letters or digits"
        out.append(
            f"- **{name}**: `{prefix}` followed by 4–64 {rule} (e.g. `{prefix}{'a1b2' * 3}`)."
        )
    out += [
        f"- **E164**: {_markdown(_attribute_docstrings_module(ids, 'E164_PATTERN'))} "
        f"Pattern `{ids.E164_PATTERN.pattern}`, e.g. `+15550100200`.",
        '- **decimal**: write money as a string (`"0.15"`) to keep it exact.',
        "",
    ]
    return "\n".join(out).rstrip() + "\n"


def _attribute_docstrings_module(module: types.ModuleType, name: str) -> str:
    """The docstring written under a module-level assignment."""
    tree = ast.parse(inspect.getsource(module))
    for first, second in zip(tree.body, tree.body[1:], strict=False):
        targets = (
            [first.target]
            if isinstance(first, ast.AnnAssign)
            else first.targets
            if isinstance(first, ast.Assign)
            else []
        )
        if (
            any(isinstance(t, ast.Name) and t.id == name for t in targets)
            and isinstance(second, ast.Expr)
            and isinstance(second.value, ast.Constant)
            and isinstance(second.value.value, str)
        ):
            return inspect.cleandoc(second.value.value)
    return ""


def main() -> int:
    """Print the reference to standard output."""
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
