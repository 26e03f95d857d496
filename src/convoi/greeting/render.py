"""Greeting placeholders: ``{name}``, ``{contact_name}``, ``<name>``, ``<contact_name>``.

Rules (docs/architecture.md §5):

- The four recognised placeholders become the contact's name: the customer's name on phone calls,
  ``participant_name`` on web calls. With no usable name they become ``there``
  ("Hi {name}!" → "Hi there!").
- One pass: a name that itself contains ``{name}`` or ``<b>`` is inserted literally, never expanded.
- Names are cleaned before insertion: control and bidi-override characters removed, whitespace runs
  collapsed, trimmed, and cut to :data:`MAX_NAME_CHARS` characters (at a word boundary when there
  is one). A name that is empty after cleaning falls back to ``there``.
- Unknown placeholders such as ``{foo}`` or ``<foo>``: in a **first_message** they are an error
  (``check-config`` fails, and a call whose override has one is refused with ``invalid_request``),
  because the text is spoken verbatim and the caller would hear "foo". In a **system_prompt** they
  are left as written (prompts legitimately contain braces, JSON and XML-like tags) and
  ``check-config`` prints a warning.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "FALLBACK_NAME",
    "MAX_NAME_CHARS",
    "PLACEHOLDERS",
    "clean_name",
    "render",
    "unknown_placeholders",
]

FALLBACK_NAME = "there"
MAX_NAME_CHARS = 64
PLACEHOLDERS = ("{name}", "{contact_name}", "<name>", "<contact_name>")

_RECOGNISED = re.compile(r"\{(?:contact_)?name\}|<(?:contact_)?name>")
_ANY_PLACEHOLDER = re.compile(r"\{\s*[A-Za-z_][A-Za-z0-9_]*\s*\}|<\s*[A-Za-z_][A-Za-z0-9_]*\s*>")


def _keep(ch: str) -> bool:
    """Drop control characters and invisible format characters (bidi marks, zero-width spaces,
    BOM), but keep the zero-width joiner and tag characters that emoji sequences are made of."""
    if ch.isspace():
        return True
    category = unicodedata.category(ch)
    if category == "Cc":
        return False
    if category == "Cf":
        return ch == "\u200d" or "\U000e0020" <= ch <= "\U000e007f"
    return True


def clean_name(name: str | None) -> str:
    """The name as it will be spoken, or :data:`FALLBACK_NAME` when nothing usable is left."""
    if not name:
        return FALLBACK_NAME
    kept = "".join(" " if ch.isspace() else ch for ch in name if _keep(ch))
    kept = " ".join(kept.split())
    if len(kept) > MAX_NAME_CHARS:
        cut = kept[:MAX_NAME_CHARS]
        space = cut.rfind(" ")
        kept = cut[:space] if space >= MAX_NAME_CHARS // 2 else cut
    return kept or FALLBACK_NAME


def render(template: str, name: str | None) -> str:
    """Replace every recognised placeholder in ``template`` with the cleaned ``name``, in one pass."""
    spoken = clean_name(name)
    return _RECOGNISED.sub(lambda _: spoken, template)


def unknown_placeholders(template: str) -> list[str]:
    """Placeholder-looking tokens in ``template`` that are not recognised (e.g. ``{foo}``)."""
    return [
        m.group(0)
        for m in _ANY_PLACEHOLDER.finditer(template)
        if not _RECOGNISED.fullmatch(m.group(0))
    ]
