"""Reading a knowledge base's documents from its folder.

A knowledge base's ``documents`` names a folder (relative to ``agents_config/``) of Markdown
(``.md``, ``.markdown``) and text (``.txt``) files, read recursively in name order; hidden files
are skipped. Anything that would leave the agent without its documents is a problem: a missing
or empty folder, an unreadable, non-UTF-8 or empty file, a file of another type (PDF included:
convert it to Markdown or text first).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from convoi.knowledge.models import Document

__all__ = ["SUFFIXES", "SourceProblem", "Sources", "read_documents"]

SUFFIXES = (".md", ".markdown", ".txt")
"""File types a knowledge base's folder may hold."""


@dataclass(frozen=True)
class SourceProblem:
    """Why a knowledge base's documents cannot be used as they are."""

    path: str
    """The folder or file concerned (as given / relative to the folder)."""
    problem: str


@dataclass(frozen=True)
class Sources:
    """The documents read for one knowledge base, and the problems found."""

    documents: tuple[Document, ...]
    problems: tuple[SourceProblem, ...] = field(default_factory=tuple)


def _files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_documents(kb_id: str, folder: Path, shown: str | None = None) -> Sources:
    """Read every document of knowledge base ``kb_id`` under ``folder`` (``shown`` names the folder
    in problems; default: the path as given)."""
    name = shown or str(folder)
    if not folder.exists():
        return Sources((), (SourceProblem(name, "folder does not exist"),))
    if not folder.is_dir():
        return Sources((), (SourceProblem(name, "is not a folder"),))
    docs: list[Document] = []
    problems: list[SourceProblem] = []
    for path in _files(folder):
        rel = path.relative_to(folder).as_posix()
        where = f"{name}/{rel}"
        if path.suffix.lower() not in SUFFIXES:
            problems.append(
                SourceProblem(
                    where, f"unsupported file type {path.suffix or '(none)'}: use Markdown or text"
                )
            )
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            problems.append(SourceProblem(where, "is not UTF-8 text"))
            continue
        except OSError as exc:
            problems.append(SourceProblem(where, f"cannot be read: {exc.strerror or exc}"))
            continue
        if not text.strip():
            problems.append(SourceProblem(where, "is empty"))
            continue
        docs.append(Document(kb_id=kb_id, source=rel, text=text))
    if not docs and not problems:
        problems.append(SourceProblem(name, f"holds no documents ({', '.join(SUFFIXES)})"))
    return Sources(tuple(docs), tuple(problems))
