"""Fuzzing the CallSpec path: parse → merge → render, with hypothesis.

Whatever a dispatch carries, resolving it either gives a runnable call (every placeholder of the
greeting rendered, the effective agent valid) or raises :class:`CallSpecError` naming a field and
a problem — never any other exception. Over a thousand generated CallSpecs (mostly near-valid, so
that merging and rendering really run) plus arbitrary JSON and raw text.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from convoi.callspec import CallSpecError, ResolvedCall, resolve_call
from convoi.definitions.models import Definitions
from tests.helpers import BILLING_KB, HELP_KB, SALES, SQUAD, SUPPORT, UAE_LINE, US_LINE

AGENTS = [SUPPORT, SALES, SQUAD, "agt_00000000000000000000000000000000", "agt_x", "", "kb_1"]
NUMBERS = ["+15550000007", "+971500000001", "15550000007", "+0123", "+1555000000712345", ""]
PHONES = [US_LINE, UAE_LINE, "phn_00000000000000000000000000000000", "phn_bad"]
PLACEHOLDERS = ["{name}", "{contact_name}", "<name>", "<contact_name>", "{nom}", "{", "}", "<>"]

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
names = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.text(min_size=250, max_size=300),
    st.sampled_from(["Ahmed", "Zoë", "李"]),
)
messages = st.lists(st.one_of(st.text(max_size=30), st.sampled_from(PLACEHOLDERS)), max_size=6).map(
    "".join
)


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, junk)


overrides = st.fixed_dictionaries(
    {},
    optional={
        "first_message": _maybe(messages),
        "system_prompt": _maybe(messages),
        "llm": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "provider": st.sampled_from(["openai", "anthropic", 3]),
                    "model": st.sampled_from(["gpt-4o-mini", "gpt-4o", "gpt-9-ultra", ""]),
                    "temperature": st.one_of(st.floats(-1, 3), st.text(max_size=3)),
                },
            )
        ),
        "tts": _maybe(
            st.fixed_dictionaries(
                {}, optional={"voice": st.sampled_from(["rachel", "josh", "nobody", "", 5])}
            )
        ),
        "stt": _maybe(
            st.fixed_dictionaries({}, optional={"language": st.sampled_from(["en", "xx", ""])})
        ),
        "knowledge_base_ids": _maybe(
            st.lists(st.sampled_from([HELP_KB, BILLING_KB, "kb_nope", "x"]), max_size=3)
        ),
        "limits": _maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "max_duration_seconds": st.integers(-5, 20_000),
                    "silence_timeout_seconds": st.integers(-5, 700),
                    "wrap_up_seconds": st.integers(0, 700),
                    "silence_prompt": messages,
                },
            )
        ),
        "unknown": junk,
    },
)

wild_specs = st.fixed_dictionaries(
    {
        "call_id": st.one_of(st.just("call_0123456789abcdef"), st.text(max_size=12), st.integers()),
        "type": st.sampled_from(["web", "outbound_phone", "phone", None]),
    },
    optional={
        "agent_id": st.one_of(st.sampled_from(AGENTS), junk),
        "squad_id": st.one_of(st.sampled_from([SQUAD, "sqd_nope"]), junk),
        "participant_name": names,
        "customer": _maybe(
            st.fixed_dictionaries(
                {"number": st.sampled_from(NUMBERS)},
                optional={
                    "name": names,
                    "metadata": _maybe(st.dictionaries(st.text(max_size=5), junk)),
                },
            )
        ),
        "phone_number_id": st.one_of(st.sampled_from(PHONES), junk),
        "agent_overrides": _maybe(overrides),
        "metadata": _maybe(st.dictionaries(st.text(max_size=8), junk, max_size=4)),
        "extra_field": junk,
    },
)
"""Anything near the CallSpec's shape: mostly rejected, each rejection must name its field."""

plausible_overrides = st.fixed_dictionaries(
    {},
    optional={
        "first_message": messages.filter(bool),
        "system_prompt": messages.filter(str.strip),
        "llm": st.fixed_dictionaries(
            {}, optional={"temperature": st.floats(0, 2), "model": st.just("gpt-4o-mini")}
        ),
        "tts": st.fixed_dictionaries({}, optional={"voice": st.sampled_from(["rachel", "josh"])}),
        "knowledge_base_ids": st.lists(st.sampled_from([HELP_KB, BILLING_KB]), max_size=2),
        "limits": st.fixed_dictionaries(
            {},
            optional={
                "max_duration_seconds": st.integers(60, 7200),
                "silence_timeout_seconds": st.integers(5, 600),
                "silence_prompt": messages.filter(str.strip),
            },
        ),
    },
)
web_specs = st.fixed_dictionaries(
    {
        "call_id": st.just("call_0123456789abcdef"),
        "type": st.just("web"),
        "agent_id": st.just(SUPPORT),
    },
    optional={
        "participant_name": st.text(max_size=60),
        "agent_overrides": plausible_overrides,
        "metadata": st.dictionaries(st.text(max_size=8), junk, max_size=4),
    },
)
phone_specs = st.fixed_dictionaries(
    {
        "call_id": st.just("call_0123456789abcdef"),
        "type": st.just("outbound_phone"),
        "agent_id": st.sampled_from([SALES, SQUAD]),
        "customer": st.fixed_dictionaries(
            {"number": st.sampled_from(NUMBERS[:2])}, optional={"name": st.text(max_size=60)}
        ),
        "phone_number_id": st.sampled_from([US_LINE, UAE_LINE]),
    },
    optional={
        "agent_overrides": plausible_overrides,
        "metadata": st.dictionaries(st.text(max_size=8), junk),
    },
)
callspecs = st.one_of(web_specs, phone_specs, wild_specs)
"""Plausible web and phone calls (merge and rendering really run) and wild ones."""


def _check(metadata: Any, defs: Definitions) -> ResolvedCall | None:
    try:
        call = resolve_call(metadata, defs)
    except CallSpecError as exc:
        assert exc.field and exc.problem, exc  # a field and a problem a human can act on
        return None
    names = f"{call.spec.participant_name}{call.spec.customer.name if call.spec.customer else ''}"
    for member in call.members.values():
        greeting = member.greeting or ""
        for placeholder in ("{name}", "{contact_name}", "<name>", "<contact_name>"):
            if placeholder not in names:  # (a name is inserted as it was given)
                assert placeholder not in greeting, greeting  # rendered, never spoken as written
        assert member.instructions
    return call


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=callspecs)
def test_any_callspec_resolves_or_names_the_field_at_fault(
    spec: dict[str, Any], defs: Definitions
) -> None:
    _check(spec, defs)
    _check(json.dumps(spec), defs)  # the same as dispatch metadata text


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.text(max_size=200), junk.map(lambda v: json.dumps(v))))
def test_any_metadata_text_resolves_or_names_the_field_at_fault(
    raw: str, defs: Definitions
) -> None:
    _check(raw, defs)


def test_the_generator_reaches_runnable_calls(defs: Definitions) -> None:
    """The fuzzing above is worth something only if it also produces calls that run, overrides
    merged and greetings rendered (``find`` raises when no generated CallSpec resolves)."""

    def runs_with_overrides(spec: dict[str, Any]) -> bool:
        call = _check(spec, defs)
        return call is not None and bool(spec.get("agent_overrides"))

    example = find(
        callspecs, runs_with_overrides, settings=settings(max_examples=5000, database=None)
    )
    assert example["agent_overrides"]
