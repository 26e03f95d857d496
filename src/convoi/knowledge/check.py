"""``check-config`` for knowledge bases: their documents, as ``file: field: problem`` issues."""

from __future__ import annotations

from pathlib import Path

from convoi.definitions.loader import ConfigIssue, LoadResult
from convoi.knowledge.sources import read_documents

__all__ = ["document_issues"]


def document_issues(result: LoadResult, config_dir: Path) -> list[ConfigIssue]:
    """One issue per missing, empty or unreadable source of every knowledge base's documents.

    The field names the knowledge base's entry, e.g. ``knowledge_bases[1].documents``; the
    problem names the folder or file (relative to the config folder) and what is wrong with it."""
    issues: list[ConfigIssue] = []
    for i, kb in enumerate(result.definitions.knowledge_bases.values()):
        if kb.documents is None:
            continue
        found = read_documents(kb.id, Path(config_dir) / kb.documents, kb.documents)
        src = result.sources.get(kb.id, "knowledge_bases.yaml")
        for problem in found.problems:
            issues.append(
                ConfigIssue(
                    src, f"knowledge_bases[{i}].documents", f"{problem.path} {problem.problem}"
                )
            )
    return issues
