"""Greeting rendering: placeholders filled with the contact's name."""

from convoi.greeting.render import (
    FALLBACK_NAME,
    MAX_NAME_CHARS,
    PLACEHOLDERS,
    clean_name,
    render,
    unknown_placeholders,
)

__all__ = [
    "FALLBACK_NAME",
    "MAX_NAME_CHARS",
    "PLACEHOLDERS",
    "clean_name",
    "render",
    "unknown_placeholders",
]
