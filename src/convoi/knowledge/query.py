"""Turning what a caller said into a full-text query (pure)."""

from __future__ import annotations

import re

__all__ = ["STOPWORDS", "fts_query", "terms"]

_STOPWORDS = """a about an and any are as at be been but by can could did do does doing for from had has
    have how i if in into is it its just me my of on or our please so than that the their them
    then there these they this to up us was we were what when where which who why will with
    would you your yes no hi hello hey okay ok um uh well thanks thank i'm it's i've i'd don't
    want need know tell like get got also there's"""
STOPWORDS = frozenset(_STOPWORDS.split())
"""Words too common in speech to say anything about what the caller asks."""

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def terms(text: str, max_terms: int = 32) -> list[str]:
    """The distinct content words of ``text``, lowercased, in order (at most ``max_terms``)."""
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        word = word.split("'")[0] if word not in STOPWORDS else word
        if word in STOPWORDS or len(word) < 2 or word in out:
            continue
        out.append(word)
        if len(out) == max_terms:
            break
    return out


def fts_query(text: str) -> str | None:
    """An SQLite FTS5 / BM25 query matching any content word of ``text`` (None: nothing to ask).

    Each word is quoted, so nothing the caller says is read as FTS5 syntax."""
    words = terms(text)
    return " OR ".join(f'"{w}"' for w in words) if words else None
