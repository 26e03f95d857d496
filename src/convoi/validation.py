"""Turning pydantic validation errors into ``field: problem`` lines a human can act on.

Shared by the definitions loader (``file: field: problem``) and CallSpec validation (the exact field
named in a ``failed`` / ``invalid_request`` report).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

__all__ = ["Issue", "field_path", "issues_from"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem: where (a dotted field path, e.g. ``customer.number``) and what."""

    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}" if self.field else self.problem


def field_path(loc: tuple[int | str, ...], prefix: str = "") -> str:
    """``("agent_overrides", "knowledge_base_ids", 0)`` → ``agent_overrides.knowledge_base_ids[0]``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _model_at(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The model class reached by following ``loc`` from ``model`` (None when it is not a model)."""
    current: object = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = _unwrap(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: object) -> object:
    """Strip Optional/list/tuple/dict wrappers down to a model class where there is one."""
    for _ in range(4):
        args = [a for a in typing.get_args(annotation) if a is not type(None) and a is not Ellipsis]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        if not args:
            return annotation
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        annotation = models[0] if models else args[-1]
    return annotation


def _problem(error: ErrorDetails, model: type[BaseModel] | None) -> str:
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        if parent is not None:
            allowed = ", ".join(k for k in parent.model_fields if k != "provider")
            return f"unknown key; allowed here: {allowed}"
        return "unknown key"
    if kind == "missing":
        return "required"
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if kind.startswith("string_too_long"):
        limit = error.get("ctx", {}).get("max_length")
        return f"too long (at most {limit} characters)"
    return message


def issues_from(
    exc: ValidationError, model: type[BaseModel] | None = None, prefix: str = ""
) -> list[Issue]:
    """One :class:`Issue` per pydantic error, with dotted field paths under ``prefix``."""
    issues: list[Issue] = []
    for error in exc.errors(include_url=False):
        loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
        issues.append(Issue(field_path(loc, prefix), _problem(error, model)))
    return issues
