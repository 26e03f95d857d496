"""Call lifecycle state machine (docs/architecture.md §7).

The legal-transition tables and the ended_reason classification below are written out by hand,
not derived from the module, so a change in the code that is not also made here fails.
"""

from __future__ import annotations

from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convoi.lifecycle import (
    ALL_STATUSES,
    TERMINAL_STATUSES,
    CallLifecycle,
    CallStatus,
    EndedReason,
    Fault,
    IllegalTransition,
    Transition,
    classify,
    is_legal,
)

STATUSES: list[CallStatus] = [
    "initiated",
    "ringing",
    "active",
    "completed",
    "busy",
    "no_answer",
    "failed",
    "canceled",
]
TERMINAL: set[CallStatus] = {"completed", "busy", "no_answer", "failed", "canceled"}

PHONE_LEGAL: set[tuple[CallStatus, CallStatus]] = {
    ("initiated", "ringing"),
    ("initiated", "active"),
    ("initiated", "busy"),
    ("initiated", "no_answer"),
    ("initiated", "failed"),
    ("initiated", "canceled"),
    ("ringing", "active"),
    ("ringing", "busy"),
    ("ringing", "no_answer"),
    ("ringing", "failed"),
    ("ringing", "canceled"),
    ("active", "completed"),
    ("active", "failed"),
}
WEB_LEGAL: set[tuple[CallStatus, CallStatus]] = {
    ("initiated", "active"),
    ("initiated", "failed"),
    ("initiated", "canceled"),
    ("active", "completed"),
    ("active", "failed"),
}

CLASSIFICATION: dict[str, tuple[CallStatus, Fault | None]] = {
    "customer_hangup": ("completed", None),
    "agent_hangup": ("completed", None),
    "transferred": ("completed", None),
    "silence_timeout": ("completed", None),
    "max_duration": ("completed", None),
    "voicemail": ("completed", None),
    "dial_busy": ("busy", "customer"),
    "dial_no_answer": ("no_answer", "customer"),
    "dial_failed": ("failed", "provider"),
    "participant_never_joined": ("failed", "customer"),
    "invalid_request": ("failed", "config"),
    "provider_error": ("failed", "provider"),
    "worker_shutdown": ("failed", "platform"),
    "worker_error": ("failed", "platform"),
    "worker_lost": ("failed", "platform"),
    "api_hangup": ("completed", None),
}


def _kind(phone: bool) -> str:
    return "phone" if phone else "web"


# --- the tables -----------------------------------------------------------------------------


def test_status_sets_match_the_contract() -> None:
    assert set(get_args(CallStatus)) == set(STATUSES)
    assert set(ALL_STATUSES) == set(STATUSES)
    assert set(TERMINAL_STATUSES) == TERMINAL


ALL_PAIRS = [
    pytest.param(phone, a, b, id=f"{_kind(phone)}-{a}->{b}")
    for phone in (True, False)
    for a in STATUSES
    for b in STATUSES
]


@pytest.mark.parametrize(("phone", "from_status", "to_status"), ALL_PAIRS)
def test_is_legal_matches_the_table(
    phone: bool, from_status: CallStatus, to_status: CallStatus
) -> None:
    table = PHONE_LEGAL if phone else WEB_LEGAL
    assert is_legal(from_status, to_status, phone=phone) is ((from_status, to_status) in table)


def _drive_to(status: CallStatus, *, phone: bool) -> CallLifecycle:
    """A lifecycle brought to ``status`` through legal steps."""
    lc = CallLifecycle(phone=phone, initiated_at=0.0)
    if status == "ringing":
        lc.ringing(1.0)
    elif status == "active":
        lc.activate(1.0)
    elif status == "completed":
        lc.activate(1.0)
        lc.end("customer_hangup", 2.0)
    elif status == "busy":
        lc.end("dial_busy", 1.0)
    elif status == "no_answer":
        lc.end("dial_no_answer", 1.0)
    elif status == "failed":
        lc.end("worker_error", 1.0)
    elif status == "canceled":
        lc.cancel("worker_shutdown", 1.0)
    assert lc.status == status
    return lc


def _attempt(lc: CallLifecycle, to_status: CallStatus, at: float) -> None:
    if to_status == "ringing":
        lc.ringing(at)
    elif to_status == "active":
        lc.activate(at)
    else:
        lc.end("worker_error", at, status=to_status)  # type: ignore[arg-type]


REACHABLE_PAIRS = [
    pytest.param(phone, a, b, id=f"{_kind(phone)}-{a}->{b}")
    for phone in (True, False)
    for a in STATUSES
    for b in STATUSES
    if b != "initiated"  # nothing moves *to* initiated: no method exists for it
    and (phone or a not in {"ringing", "busy", "no_answer"})  # web calls cannot get there
]


@pytest.mark.parametrize(("phone", "from_status", "to_status"), REACHABLE_PAIRS)
def test_lifecycle_applies_legal_and_rejects_illegal_transitions(
    phone: bool, from_status: CallStatus, to_status: CallStatus
) -> None:
    lc = _drive_to(from_status, phone=phone)
    before = (lc.status, lc.transitions, lc.ended_reason, lc.fault, lc.started_at, lc.ended_at)
    table = PHONE_LEGAL if phone else WEB_LEGAL
    assert lc.can(to_status) is ((from_status, to_status) in table)
    if (from_status, to_status) in table:
        _attempt(lc, to_status, 5.0)
        assert lc.status == to_status
        assert lc.transitions[-1] == Transition(from_status, to_status, 5.0)
    else:
        with pytest.raises(IllegalTransition) as info:
            _attempt(lc, to_status, 5.0)
        assert isinstance(info.value, ValueError)
        assert f"{from_status} -> {to_status}" in str(info.value)
        assert (info.value.from_status, info.value.to_status) == (from_status, to_status)
        after = (lc.status, lc.transitions, lc.ended_reason, lc.fault, lc.started_at, lc.ended_at)
        assert after == before, "a rejected transition must change nothing"


def test_web_call_cannot_ring() -> None:
    lc = CallLifecycle(phone=False, initiated_at=0.0)
    with pytest.raises(IllegalTransition, match=r"initiated -> ringing \(web call\)"):
        lc.ringing(1.0)
    assert lc.status == "initiated"
    assert lc.transitions == ()


@pytest.mark.parametrize("reason", ["dial_busy", "dial_no_answer"])
def test_web_call_cannot_end_busy_or_no_answer(reason: EndedReason) -> None:
    lc = CallLifecycle(phone=False, initiated_at=0.0)
    with pytest.raises(IllegalTransition):
        lc.end(reason, 1.0)


# --- classify ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reason", get_args(EndedReason))
def test_classify_every_ended_reason(reason: EndedReason) -> None:
    assert reason in CLASSIFICATION, f"add {reason!r} to the table in this test"
    assert classify(reason) == CLASSIFICATION[reason]


def test_classification_table_has_no_stale_reasons() -> None:
    assert set(CLASSIFICATION) == set(get_args(EndedReason))


def test_normal_endings_are_completed_without_fault() -> None:
    for reason in ("customer_hangup", "agent_hangup", "transferred", "voicemail"):
        assert classify(reason) == ("completed", None)


def test_classify_rejects_unknown_reason() -> None:
    with pytest.raises(ValueError, match="unknown ended_reason 'hung_up'"):
        classify("hung_up")  # type: ignore[arg-type]


# --- ending a call ----------------------------------------------------------------------------


def test_phone_call_full_history() -> None:
    lc = CallLifecycle(phone=True, initiated_at=100.0)
    assert (lc.status, lc.is_terminal, lc.ended_reason, lc.fault) == (
        "initiated",
        False,
        None,
        None,
    )
    lc.ringing(101.0)
    lc.activate(104.5)
    lc.end("agent_hangup", 164.5)
    assert lc.status == "completed"
    assert lc.is_terminal
    assert (lc.ended_reason, lc.fault) == ("agent_hangup", None)
    assert (lc.initiated_at, lc.started_at, lc.ended_at) == (100.0, 104.5, 164.5)
    assert lc.transitions == (
        ("initiated", "ringing", 101.0),
        ("ringing", "active", 104.5),
        ("active", "completed", 164.5),
    )
    assert "completed" in repr(lc) and "agent_hangup" in repr(lc)


def test_second_end_is_illegal_and_keeps_the_first_outcome() -> None:
    lc = CallLifecycle(phone=False, initiated_at=0.0)
    lc.activate(1.0)
    lc.end("customer_hangup", 10.0)
    with pytest.raises(IllegalTransition, match="completed -> failed"):
        lc.end("worker_error", 11.0)
    assert (lc.status, lc.ended_reason, lc.fault, lc.ended_at) == (
        "completed",
        "customer_hangup",
        None,
        10.0,
    )
    assert len(lc.transitions) == 2


def test_fault_and_status_overrides() -> None:
    lc = CallLifecycle(phone=True, initiated_at=0.0)
    lc.activate(1.0)
    lc.end("provider_error", 2.0, fault="platform")
    assert (lc.status, lc.fault) == ("failed", "platform")

    ringing = CallLifecycle(phone=True, initiated_at=0.0)
    ringing.ringing(1.0)
    ringing.cancel("worker_shutdown", 2.0)
    assert (ringing.status, ringing.ended_reason, ringing.fault) == (
        "canceled",
        "worker_shutdown",
        "platform",
    )


def test_reason_whose_status_is_unreachable_is_rejected() -> None:
    active = CallLifecycle(phone=True, initiated_at=0.0)
    active.activate(1.0)
    with pytest.raises(IllegalTransition, match="active -> busy"):
        active.end("dial_busy", 2.0)
    fresh = CallLifecycle(phone=True, initiated_at=0.0)
    with pytest.raises(IllegalTransition, match="initiated -> completed"):
        fresh.end("customer_hangup", 1.0)


def test_active_call_cannot_be_canceled() -> None:
    lc = CallLifecycle(phone=True, initiated_at=0.0)
    lc.activate(1.0)
    with pytest.raises(IllegalTransition, match="active -> canceled"):
        lc.cancel("worker_shutdown", 2.0)


def test_end_rejects_a_non_terminal_status_override() -> None:
    lc = CallLifecycle(phone=True, initiated_at=0.0)
    with pytest.raises(ValueError, match="terminal status"):
        lc.end("worker_error", 1.0, status="active")  # type: ignore[arg-type]
    assert lc.status == "initiated"


def test_transitions_is_a_copy() -> None:
    lc = CallLifecycle(phone=False, initiated_at=0.0)
    lc.activate(1.0)
    history = lc.transitions
    lc.end("customer_hangup", 2.0)
    assert len(history) == 1
    assert len(lc.transitions) == 2


# --- duration ---------------------------------------------------------------------------------


def test_duration_counts_from_active_not_from_initiated_or_ringing() -> None:
    lc = CallLifecycle(phone=True, initiated_at=1000.0)
    assert lc.duration_seconds(1050.0) == 0.0
    lc.ringing(1010.0)
    assert lc.duration_seconds(1050.0) == 0.0
    lc.activate(1025.0)
    assert lc.duration_seconds(1055.0) == 30.0
    lc.end("customer_hangup", 1085.0)
    assert lc.duration_seconds(5000.0) == 60.0  # frozen at the end


def test_duration_is_zero_for_a_call_that_never_became_active() -> None:
    lc = CallLifecycle(phone=True, initiated_at=0.0)
    lc.ringing(5.0)
    lc.end("dial_no_answer", 35.0)
    assert lc.started_at is None
    assert lc.duration_seconds(100.0) == 0.0


def test_duration_never_negative_when_the_clock_steps_back() -> None:
    lc = CallLifecycle(phone=False, initiated_at=0.0)
    lc.activate(100.0)
    assert lc.duration_seconds(99.0) == 0.0
    lc.end("customer_hangup", 98.0)
    assert lc.duration_seconds(200.0) == 0.0


# --- any sequence of operations keeps a consistent history -----------------------------------

_OPS = st.lists(
    st.one_of(
        st.just(("ringing",)),
        st.just(("activate",)),
        st.tuples(st.just("end"), st.sampled_from(get_args(EndedReason))),
        st.tuples(st.just("cancel"), st.sampled_from(get_args(EndedReason))),
    ),
    max_size=8,
)


@given(phone=st.booleans(), ops=_OPS)
def test_random_operations_keep_history_consistent(phone: bool, ops: list[tuple[str, ...]]) -> None:
    lc = CallLifecycle(phone=phone, initiated_at=0.0)
    for at, op in enumerate(ops, start=1):
        try:
            if op[0] == "ringing":
                lc.ringing(float(at))
            elif op[0] == "activate":
                lc.activate(float(at))
            elif op[0] == "end":
                lc.end(op[1], float(at))  # type: ignore[arg-type]
            else:
                lc.cancel(op[1], float(at))  # type: ignore[arg-type]
        except IllegalTransition:
            pass
    table = PHONE_LEGAL if phone else WEB_LEGAL
    current: CallStatus = "initiated"
    for step in lc.transitions:
        assert step.from_status == current
        assert (step.from_status, step.to_status) in table
        current = step.to_status
    assert lc.status == current
    terminal_steps = [s for s in lc.transitions if s.to_status in TERMINAL]
    assert len(terminal_steps) <= 1
    assert lc.is_terminal is (len(terminal_steps) == 1)
    assert (lc.ended_reason is not None) is lc.is_terminal
    assert (lc.started_at is not None) is any(s.to_status == "active" for s in lc.transitions)
