"""Cutting documents into chunks (pure: no I/O).

A Markdown document is cut at its headings into sections; a section longer than ``max_chars`` is
cut again at paragraph breaks, then at whitespace, and only as a last resort inside a word. The
spans cover the document exactly, in order, each at most ``max_chars`` long (no text is lost and
none repeated); spans holding only whitespace are dropped from the chunks.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from convoi.knowledge.models import Chunk, Document

__all__ = ["CHUNKER_VERSION", "DEFAULT_MAX_CHARS", "chunk_document", "split_spans"]

DEFAULT_MAX_CHARS = 1_200
"""Upper bound on one chunk's length: about 250 words, a few of which fit any prompt."""
CHUNKER_VERSION = "1"
"""Part of the index's content hash: bump it when chunking changes."""

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_SLUG = re.compile(r"[^a-z0-9]+")


def _sections(text: str) -> list[tuple[int, int, str | None]]:
    """``(start, end, heading)`` of each section; the part before the first heading has None."""
    starts: list[tuple[int, str | None]] = [
        (m.start(), m.group(2).strip()) for m in _HEADING.finditer(text)
    ]
    if not starts or starts[0][0] > 0:
        starts.insert(0, (0, None))  # the preamble has no heading
    bounds = [s for s, _ in starts] + [len(text)]
    sections = [(bounds[i], bounds[i + 1], h) for i, (_, h) in enumerate(starts)]
    merged: list[tuple[int, int, str | None]] = []
    carry: int | None = None  # start of heading-only sections folded into the next one
    for i, (start, end, heading) in enumerate(sections):
        body = text[start:end].split("\n", 1)[1] if heading and "\n" in text[start:end] else ""
        if heading and not body.strip() and i + 1 < len(sections):
            carry = start if carry is None else carry
            continue
        merged.append((start if carry is None else carry, end, heading))
        carry = None
    return merged


def _cut(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut ``text[start:end]`` into spans of at most ``max_chars``, preferring paragraph breaks,
    then line breaks, then spaces."""
    spans: list[tuple[int, int]] = []
    while end - start > max_chars:
        limit = start + max_chars
        cut = -1
        for sep in ("\n\n", "\n", " "):
            at = text.rfind(sep, start + 1, limit)
            if at > start:
                cut = at + len(sep)
                break
        if cut <= start or cut > limit:
            cut = limit
        spans.append((start, cut))
        start = cut
    spans.append((start, end))
    return spans


def split_spans(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[tuple[int, int, str | None]]:
    """``(start, end, heading)`` spans covering ``text`` exactly, each at most ``max_chars``."""
    if max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    out: list[tuple[int, int, str | None]] = []
    for start, end, heading in _sections(text):
        out += [(s, e, heading) for s, e in _cut(text, start, end, max_chars) if e > s]
    return out


def _slug(text: str) -> str:
    return _SLUG.sub("-", text.lower()).strip("-")[:60] or "section"


def chunk_document(doc: Document, max_chars: int = DEFAULT_MAX_CHARS) -> list[Chunk]:
    """The chunks of ``doc``: one per section, more for a section longer than ``max_chars``."""
    stem = PurePosixPath(doc.source).with_suffix("").as_posix()
    seen: dict[str, int] = {}
    chunks: list[Chunk] = []
    for start, end, heading in split_spans(doc.text, max_chars):
        piece = doc.text[start:end]
        if not piece.strip():
            continue
        slug = _slug(heading) if heading else "intro"
        seen[slug] = seen.get(slug, 0) + 1
        suffix = f"-{seen[slug]}" if seen[slug] > 1 else ""
        chunks.append(
            Chunk(
                id=f"{stem}#{slug}{suffix}",
                kb_id=doc.kb_id,
                source=doc.source,
                title=heading or stem,
                text=piece,
                start=start,
                end=end,
            )
        )
    return chunks
