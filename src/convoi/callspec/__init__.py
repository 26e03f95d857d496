"""The CallSpec (dispatch metadata) and its resolution against the definitions."""

from convoi.callspec.model import CallSpec, Customer
from convoi.callspec.resolve import (
    CallSpecError,
    EffectiveAgent,
    ResolvedCall,
    parse_callspec,
    resolve_call,
)

__all__ = [
    "CallSpec",
    "CallSpecError",
    "Customer",
    "EffectiveAgent",
    "ResolvedCall",
    "parse_callspec",
    "resolve_call",
]
