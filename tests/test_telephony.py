"""convoi.telephony: dial outcomes, the dialer's request and error boundary, trunk provisioning,
and the devstack participant stand-in.

Three layers:

- pure: the outcome table, the exact ``CreateSIPParticipantRequest``, the provisioning plan;
- fakes: a recording ``lk.sip``/``lk.room`` fake raising the real ``api.SipCallError``, a tiny
  Twirp server (so the real SDK parses the error JSON), an in-memory trunk store;
- a REAL livekit-server on 127.0.0.1:7990-7992 (no SIP bridge can run here), once without Redis
  and once with a private Redis. What it answered (livekit-server v1.13.5):

  =========================  ==========================================================
  without Redis, every SIP   twirp ``internal`` HTTP 500 "twirp error unknown: sip not
  API call                   connected (redis required)" (immediately)
  with Redis: trunk CRUD     works (no livekit-sip needed); list shows auth_password
  with Redis: CreateSIP-     twirp ``unavailable`` HTTP 503 "twirp error unknown: no
  Participant (inline)       response from servers" after ~1 s (psrpc finds no bridge)
  with Redis: unknown        twirp ``not_found`` HTTP 404 "requested sip trunk does not
  sip_trunk_id               exist"
  RemoveParticipant, gone    twirp ``not_found`` HTTP 404 "participant does not exist"
  =========================  ==========================================================
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from livekit import api
from livekit.protocol.sip import (
    CreateSIPParticipantRequest,
    SIPOutboundConfig,
    SIPOutboundTrunkInfo,
    SIPParticipantInfo,
    SIPTransport,
)

from convoi.definitions.models import PhoneNumber
from convoi.devstack.livekit_server import LiveKitServer, ServerConfig
from convoi.lifecycle.status import CallLifecycle, classify
from convoi.telephony import (
    DialOutcome,
    DialResult,
    TrunkConfigError,
    build_request,
    dial,
    hang_up,
    phone_identity,
    trunk_name,
)
from convoi.telephony import dialer as dialer_mod
from convoi.telephony.outcomes import SIP_REASON_PHRASES, dial_outcome
from convoi.telephony.provision import (
    DesiredTrunk,
    ProvisionError,
    TrunkAction,
    plan_trunks,
    provision_trunks,
)
from tests.helpers import free_port

PASSWORD = "s3cret-trunk-pw"
PW_ENV = "CONVOI_TEST_TRUNK_PASSWORD"
CALLEE = "+15550000002"


def make_phone(
    pid: str = "phn_test0001",
    *,
    number: str = "+15550000001",
    address: str = "127.0.0.1:5080",
    transport: str = "udp",
    auth: bool = False,
    trunk_id: str | None = None,
) -> PhoneNumber:
    sip: dict[str, Any] = {"address": address, "transport": transport}
    if auth:
        sip |= {"auth_username": "convoi", "auth_password_env": PW_ENV}
    if trunk_id:
        sip["trunk_id"] = trunk_id
    return PhoneNumber.model_validate({"id": pid, "number": number, "sip": sip})


# =============================================================================================
# outcomes (pure)
# =============================================================================================

OUTCOME_TABLE: list[tuple[int | None, bool, str, str, str, str, str]] = [
    # code, timed_out, message -> status, ended_reason, fault, detail
    (486, False, "Busy Here", "busy", "dial_busy", "customer", "SIP 486 Busy Here"),
    (486, True, "", "busy", "dial_busy", "customer", "SIP 486 Busy Here"),
    (600, False, "", "busy", "dial_busy", "customer", "SIP 600 Busy Everywhere"),
    (480, False, "", "no_answer", "dial_no_answer", "customer", "SIP 480 Temporarily Unavailable"),
    (408, False, "Request Timeout", "no_answer", "dial_no_answer", "customer", "SIP 408 Request Timeout"),
    (487, True, "", "no_answer", "dial_no_answer", "customer", "SIP 487 Request Terminated"),
    (487, False, "", "failed", "dial_failed", "platform", "SIP 487 Request Terminated"),
    (None, True, "no answer within 30s", "no_answer", "dial_no_answer", "customer", "no answer within 30s"),
    (None, True, "", "no_answer", "dial_no_answer", "customer", "no answer before the ringing timeout"),
    (None, False, "twirp error unknown: sip request timed out", "no_answer", "dial_no_answer", "customer", "twirp error unknown: sip request timed out"),
    (603, False, "Decline", "failed", "dial_failed", "customer", "SIP 603 Decline"),
    (603, True, "", "failed", "dial_failed", "customer", "SIP 603 Decline"),
    (604, False, "", "failed", "dial_failed", "customer", "SIP 604 Does Not Exist Anywhere"),
    (404, False, "Not Found", "failed", "dial_failed", "customer", "SIP 404 Not Found"),
    (484, False, "", "failed", "dial_failed", "customer", "SIP 484 Address Incomplete"),
    (410, False, "", "failed", "dial_failed", "customer", "SIP 410 Gone"),
    (607, False, "", "failed", "dial_failed", "customer", "SIP 607 Unwanted"),
    (608, False, "", "failed", "dial_failed", "customer", "SIP 608 Rejected"),
    (401, False, "", "failed", "dial_failed", "config", "SIP 401 Unauthorized"),
    (403, False, "Forbidden", "failed", "dial_failed", "config", "SIP 403 Forbidden"),
    (407, False, "", "failed", "dial_failed", "config", "SIP 407 Proxy Authentication Required"),
    (400, False, "", "failed", "dial_failed", "provider", "SIP 400 Bad Request"),
    (488, False, "", "failed", "dial_failed", "provider", "SIP 488 Not Acceptable Here"),
    (500, False, "", "failed", "dial_failed", "provider", "SIP 500 Server Internal Error"),
    (502, False, "", "failed", "dial_failed", "provider", "SIP 502 Bad Gateway"),
    (503, False, "Service Unavailable", "failed", "dial_failed", "provider", "SIP 503 Service Unavailable"),
    (503, False, "cps limit exceeded", "failed", "dial_failed", "provider", "SIP 503 Service Unavailable (cps limit exceeded)"),
    (503, True, "", "failed", "dial_failed", "provider", "SIP 503 Service Unavailable"),
    (504, False, "", "failed", "dial_failed", "provider", "SIP 504 Server Time-out"),
    (606, False, "", "failed", "dial_failed", "provider", "SIP 606 Not Acceptable"),
    (499, False, "Carrier Special", "failed", "dial_failed", "provider", "SIP 499 Carrier Special"),
    (499, False, "", "failed", "dial_failed", "provider", "SIP 499 Unknown"),
    (None, False, "twirp error unknown: no response from servers", "failed", "dial_failed", "platform", "no SIP response: twirp error unknown: no response from servers"),
    (None, False, "twirp error unknown: sip not connected (redis required)", "failed", "dial_failed", "platform", "no SIP response: twirp error unknown: sip not connected (redis required)"),
    (None, False, "", "failed", "dial_failed", "platform", "no SIP response"),
    (None, False, "sip server required auth, but no username or password was provided", "failed", "dial_failed", "config", "no SIP response: sip server required auth, but no username or password was provided"),
    (None, False, "max auth retry attempts reached for SIP invite", "failed", "dial_failed", "config", "no SIP response: max auth retry attempts reached for SIP invite"),
    (None, False, "requested sip trunk does not exist", "failed", "dial_failed", "config", "no SIP response: requested sip trunk does not exist"),
    (None, False, "lookup sip.example: no such host", "failed", "dial_failed", "config", "no SIP response: lookup sip.example: no such host"),
    (None, False, "transaction failed to complete (0 intermediate responses)", "failed", "dial_failed", "provider", "no SIP response: transaction failed to complete (0 intermediate responses)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("code", "timed_out", "message", "status", "reason", "fault", "detail"), OUTCOME_TABLE
)
def test_dial_outcome_table(
    code: int | None,
    timed_out: bool,
    message: str,
    status: str,
    reason: str,
    fault: str,
    detail: str,
) -> None:
    out = dial_outcome(code, timed_out=timed_out, message=message)
    assert out == DialOutcome(status, reason, fault, detail, code)  # type: ignore[arg-type]


@pytest.mark.parametrize("code", sorted(c for c in SIP_REASON_PHRASES if c >= 300))
@pytest.mark.parametrize("timed_out", [False, True])
def test_every_known_code_gives_a_consistent_outcome(code: int, timed_out: bool) -> None:
    out = dial_outcome(code, timed_out=timed_out, message="")
    phrase = SIP_REASON_PHRASES[code]
    assert out.detail == f"SIP {code} {phrase}"
    assert out.sip_status_code == code
    # the status is the default for the reason; the call may end that way before or after ringing
    assert classify(out.ended_reason)[0] == out.status
    for ringing in (False, True):
        call = CallLifecycle(phone=True, initiated_at=0.0)
        if ringing:
            call.ringing(1.0)
        call.end(out.ended_reason, 2.0, status=out.status, fault=out.fault)
        assert (call.status, call.fault) == (out.status, out.fault)
    if code in (486, 600):
        assert out.status == "busy"
    elif code in (408, 480) or (code == 487 and timed_out):
        assert out.status == "no_answer"
    else:
        assert (out.status, out.ended_reason) == ("failed", "dial_failed")


def test_detail_is_capped_and_whitespace_normalised() -> None:
    out = dial_outcome(503, timed_out=False, message="x\n" * 500)
    assert len(out.detail) <= 300 and out.detail.startswith("SIP 503 Service Unavailable (x x")
    assert "\n" not in out.detail
    assert dial_outcome(486, timed_out=False, message="486 busy here").detail == "SIP 486 Busy Here"


# =============================================================================================
# the request (pure)
# =============================================================================================


def _request(phone: PhoneNumber, **kw: Any) -> CreateSIPParticipantRequest:
    args: dict[str, Any] = {
        "phone": phone,
        "to_number": CALLEE,
        "room": "call-room",
        "identity": phone_identity(CALLEE),
        "display_name": "Ahmed",
        "ringing_timeout": 30,
        "max_call_duration": 1800,
        "env": {PW_ENV: PASSWORD},
    }
    return build_request(**(args | kw))


def test_request_with_inline_trunk_is_exact() -> None:
    req = _request(make_phone(auth=True, transport="tcp"))
    expected = CreateSIPParticipantRequest(
        sip_trunk_id="",
        trunk=SIPOutboundConfig(
            hostname="127.0.0.1:5080",
            transport=SIPTransport.SIP_TRANSPORT_TCP,
            auth_username="convoi",
            auth_password=PASSWORD,
        ),
        sip_call_to=CALLEE,
        sip_number="+15550000001",
        room_name="call-room",
        participant_identity="phone-15550000002",
        participant_name="Ahmed",
        wait_until_answered=True,
        ringing_timeout={"seconds": 30},
        max_call_duration={"seconds": 1800},
        play_dialtone=False,
    )
    assert req == expected
    assert req.display_name == ""  # the customer's name is never our caller-id display name


def test_request_with_trunk_id_has_no_inline_trunk_and_needs_no_password() -> None:
    phone = make_phone(auth=True, trunk_id="ST_abc123")
    req = _request(phone, env={}, display_name=None, max_call_duration=None)
    assert req.sip_trunk_id == "ST_abc123"
    assert not req.HasField("trunk")
    assert not req.HasField("max_call_duration")
    assert req.participant_name == ""
    assert req.sip_number == "+15550000001"


def test_request_without_auth_and_fractional_ringing_timeout() -> None:
    req = _request(make_phone(), ringing_timeout=2.5, env={})
    assert (req.trunk.auth_username, req.trunk.auth_password) == ("", "")
    assert req.trunk.transport == SIPTransport.SIP_TRANSPORT_UDP
    assert (req.ringing_timeout.seconds, req.ringing_timeout.nanos) == (2, 500_000_000)
    with pytest.raises(ValueError, match="ringing_timeout"):
        _request(make_phone(), ringing_timeout=0)


def test_password_read_from_process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PW_ENV, "from-os-environ")
    req = _request(make_phone(auth=True), env=None)
    assert req.trunk.auth_password == "from-os-environ"


@pytest.mark.parametrize("env", [{}, {PW_ENV: ""}])
def test_missing_password_env_is_a_clear_config_error(env: dict[str, str]) -> None:
    with pytest.raises(TrunkConfigError) as err:
        _request(make_phone(auth=True), env=env)
    assert PW_ENV in str(err.value) and "phn_test0001" in str(err.value)
    assert err.value.outcome == DialOutcome("failed", "invalid_request", "config", str(err.value))


def test_identity_helpers() -> None:
    assert phone_identity("+15550000002") == "phone-15550000002"
    assert trunk_name("phn_abcd1234") == "convoi-phn_abcd1234"


# =============================================================================================
# the dialer against a recording fake
# =============================================================================================


class FakeSip:
    def __init__(self, behaviour: Any) -> None:
        self.behaviour = behaviour
        self.requests: list[CreateSIPParticipantRequest] = []
        self.timeouts: list[float | None] = []

    async def create_sip_participant(
        self, create: CreateSIPParticipantRequest, *, timeout: float | None = None
    ) -> SIPParticipantInfo:
        self.requests.append(create)
        self.timeouts.append(timeout)
        b = self.behaviour
        if callable(b):
            b = await b()
        if isinstance(b, BaseException):
            raise b
        return b


class FakeRoom:
    def __init__(self, gone: bool = False) -> None:
        self.gone = gone
        self.removed: list[tuple[str, str]] = []

    async def remove_participant(self, req: api.RoomParticipantIdentity) -> None:
        self.removed.append((req.room, req.identity))
        if self.gone:
            raise api.TwirpError(
                "not_found", "twirp error unknown: participant does not exist", status=404
            )


class FakeLK:
    def __init__(self, behaviour: Any, *, gone: bool = False) -> None:
        self.sip = FakeSip(behaviour)
        self.room = FakeRoom(gone)


def sip_error(code: int, phrase: str | None = None, twirp: str = "unavailable") -> api.SipCallError:
    meta = {"sip_status_code": str(code)}
    if phrase:
        meta["sip_status"] = phrase
    return api.SipCallError(twirp, f"twirp error unknown: INVITE failed: {code}", status=503, metadata=meta)  # fmt: skip


async def _dial(lk: Any, *, phone: PhoneNumber | None = None, ring: float = 5.0) -> DialResult:
    return await dial(
        lk,
        phone=phone or make_phone(auth=True),
        to_number=CALLEE,
        room="call-room",
        identity="phone-15550000002",
        display_name="Ahmed",
        ringing_timeout=ring,
        max_call_duration=600,
        env={PW_ENV: PASSWORD},
    )


async def test_dial_answered() -> None:
    info = SIPParticipantInfo(
        participant_id="PA_1", participant_identity="phone-15550000002", sip_call_id="SCL_x"
    )
    lk = FakeLK(info)
    before = time.time()
    res = await _dial(lk)
    assert res == DialResult(True, None, "phone-15550000002", "SCL_x", res.answered_at)
    assert res.answered_at is not None and before <= res.answered_at <= time.time()
    assert lk.sip.requests == [_request(make_phone(auth=True), max_call_duration=600, ringing_timeout=5.0)]  # fmt: skip
    assert lk.sip.timeouts == [5.0 + dialer_mod.DIAL_REQUEST_MARGIN]
    assert lk.room.removed == []


@pytest.mark.parametrize(
    ("error", "status", "reason", "fault", "detail"),
    [
        (sip_error(486, "Busy Here"), "busy", "dial_busy", "customer", "SIP 486 Busy Here"),
        (sip_error(600), "busy", "dial_busy", "customer", "SIP 600 Busy Everywhere"),
        (sip_error(480, "Temporarily Unavailable"), "no_answer", "dial_no_answer", "customer", "SIP 480 Temporarily Unavailable"),
        (sip_error(408), "no_answer", "dial_no_answer", "customer", "SIP 408 Request Timeout"),
        (sip_error(487), "failed", "dial_failed", "platform", "SIP 487 Request Terminated"),
        (sip_error(603, "Decline"), "failed", "dial_failed", "customer", "SIP 603 Decline"),
        (sip_error(404, "Not Found"), "failed", "dial_failed", "customer", "SIP 404 Not Found"),
        (sip_error(403, "Forbidden"), "failed", "dial_failed", "config", "SIP 403 Forbidden"),
        (sip_error(503, "Service Unavailable"), "failed", "dial_failed", "provider", "SIP 503 Service Unavailable"),
        (api.TwirpError("canceled", "twirp error unknown: sip request timed out", status=408), "no_answer", "dial_no_answer", "customer", "twirp error unknown: sip request timed out (LiveKit canceled, HTTP 408)"),
        (api.TwirpError("internal", "twirp error unknown: sip not connected (redis required)", status=500), "failed", "dial_failed", "platform", "no SIP response: twirp error unknown: sip not connected (redis required) (LiveKit internal, HTTP 500)"),
        (api.TwirpError("not_found", "requested sip trunk does not exist", status=404), "failed", "dial_failed", "config", "no SIP response: requested sip trunk does not exist (LiveKit not_found, HTTP 404)"),
        (api.TwirpError("unauthenticated", "invalid token", status=401), "failed", "dial_failed", "platform", "no SIP response: invalid token (LiveKit unauthenticated, HTTP 401)"),
        (aiohttp.ClientConnectionError("Connection refused"), "failed", "dial_failed", "platform", "no SIP response: cannot reach LiveKit: ClientConnectionError: Connection refused"),
    ],
)  # fmt: skip
async def test_dial_failures_map_to_outcomes(
    error: BaseException, status: str, reason: str, fault: str, detail: str
) -> None:
    res = await _dial(FakeLK(error))
    assert not res.answered and res.answered_at is None and res.sip_call_id is None
    assert res.participant_identity == "phone-15550000002"
    assert res.outcome is not None
    assert (res.outcome.status, res.outcome.ended_reason, res.outcome.fault) == (status, reason, fault)  # fmt: skip
    assert res.outcome.detail == detail


async def test_487_after_our_ring_timeout_is_no_answer() -> None:
    async def slow_487() -> BaseException:
        await asyncio.sleep(0.4)
        return sip_error(487, "Request Terminated")

    res = await _dial(FakeLK(slow_487), ring=0.4)
    assert res.outcome is not None
    assert (res.outcome.status, res.outcome.fault) == ("no_answer", "customer")
    assert res.outcome.sip_status_code == 487


async def test_codeless_deadline_after_ring_window_is_no_answer() -> None:
    async def slow_deadline() -> BaseException:
        await asyncio.sleep(0.4)
        return api.TwirpError("deadline_exceeded", "context deadline exceeded", status=504)

    res = await _dial(FakeLK(slow_deadline), ring=0.4)
    assert res.outcome is not None and res.outcome.status == "no_answer"


async def test_hung_livekit_is_bounded_and_hangs_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dialer_mod, "DIAL_REQUEST_MARGIN", 0.3)

    async def never() -> None:
        await asyncio.sleep(3600)

    lk = FakeLK(never, gone=True)
    started = time.monotonic()
    res = await asyncio.wait_for(_dial(lk, ring=0.3), 10)
    assert time.monotonic() - started < 3.0
    assert res.outcome is not None
    assert (res.outcome.status, res.outcome.ended_reason, res.outcome.fault) == ("failed", "dial_failed", "platform")  # fmt: skip
    assert "did not answer the dial request" in res.outcome.detail
    assert lk.room.removed == [("call-room", "phone-15550000002")]


async def test_cancelled_dial_hangs_up_and_propagates() -> None:
    ringing = asyncio.Event()

    async def ring_forever() -> None:
        ringing.set()
        await asyncio.sleep(3600)

    lk = FakeLK(ring_forever)
    task = asyncio.create_task(_dial(lk))
    await ringing.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lk.room.removed == [("call-room", "phone-15550000002")]


async def test_missing_password_fails_before_dialing() -> None:
    lk = FakeLK(sip_error(486))
    with pytest.raises(TrunkConfigError, match=PW_ENV):
        await dial(
            lk,  # type: ignore[arg-type]
            phone=make_phone(auth=True),
            to_number=CALLEE,
            room="r",
            identity="phone-15550000002",
            display_name=None,
            ringing_timeout=5,
            max_call_duration=None,
            env={},
        )
    assert lk.sip.requests == []


async def test_password_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await _dial(FakeLK(sip_error(403, "Forbidden")))
    await _dial(FakeLK(SIPParticipantInfo(sip_call_id="SCL_y")))
    assert caplog.text and PASSWORD not in caplog.text
    assert CALLEE not in caplog.text  # numbers are masked


async def test_hang_up_tolerates_gone_participant() -> None:
    assert await hang_up(FakeLK(None, gone=True), "r", "p") is False  # type: ignore[arg-type]
    assert await hang_up(FakeLK(None), "r", "p") is True  # type: ignore[arg-type]

    class Boom(FakeRoom):
        async def remove_participant(self, req: api.RoomParticipantIdentity) -> None:
            raise api.TwirpError("permission_denied", "no", status=403)

    lk = FakeLK(None)
    lk.room = Boom()
    with pytest.raises(api.TwirpError):
        await hang_up(lk, "r", "p")  # type: ignore[arg-type]


# =============================================================================================
# the real SDK against a tiny Twirp server (checks the error JSON → SipCallError path)
# =============================================================================================


@contextlib.asynccontextmanager
async def twirp_server(status: int, body: dict[str, Any]) -> AsyncIterator[tuple[str, list[bytes]]]:
    seen: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(await request.read())
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post("/twirp/livekit.SIP/CreateSIPParticipant", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (503, {"code": "unavailable", "msg": "INVITE failed", "meta": {"sip_status_code": "486", "sip_status": "Busy Here"}}, ("busy", "customer", "SIP 486 Busy Here")),
        (503, {"code": "unavailable", "msg": "INVITE failed", "meta": {"sip_status_code": "603", "sip_status": "Decline"}}, ("failed", "customer", "SIP 603 Decline")),
        (408, {"code": "canceled", "msg": "twirp error unknown: sip request timed out"}, ("no_answer", "customer", "twirp error unknown: sip request timed out (LiveKit canceled, HTTP 408)")),
    ],
)  # fmt: skip
async def test_real_sdk_error_parsing(
    status: int, body: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    async with twirp_server(status, body) as (url, seen):
        lk = api.LiveKitAPI(url, "devkey", "secret")
        try:
            res = await _dial(lk)
        finally:
            await lk.aclose()
    assert res.outcome is not None
    assert (res.outcome.status, res.outcome.fault, res.outcome.detail) == expected
    assert CreateSIPParticipantRequest.FromString(seen[0]) == _request(
        make_phone(auth=True), max_call_duration=600, ringing_timeout=5.0
    )


# =============================================================================================
# provisioning: plan (pure) and an in-memory fake of the SIP trunk API
# =============================================================================================


class FakeTrunkStore:
    """list/create/update_fields/delete of outbound trunks, like livekit-server with Redis."""

    def __init__(self, *, redact: bool = False) -> None:
        self.trunks: dict[str, SIPOutboundTrunkInfo] = {}
        self.calls: list[str] = []
        self.redact = redact
        self._n = 0

    async def list_outbound_trunk(self, req: Any) -> Any:
        self.calls.append("list")
        items = []
        for t in self.trunks.values():
            c = SIPOutboundTrunkInfo()
            c.CopyFrom(t)
            if self.redact:
                c.auth_password = ""
            items.append(c)
        return type("Resp", (), {"items": items})()

    async def create_outbound_trunk(self, req: Any) -> SIPOutboundTrunkInfo:
        self.calls.append("create")
        self._n += 1
        t = SIPOutboundTrunkInfo()
        t.CopyFrom(req.trunk)
        t.sip_trunk_id = f"ST_fake{self._n}"
        t.created_at.seconds = self._n
        self.trunks[t.sip_trunk_id] = t
        return t

    async def update_outbound_trunk_fields(self, trunk_id: str, **fields: Any) -> None:
        self.calls.append("update")
        t = self.trunks[trunk_id]
        for k, v in fields.items():
            if k == "numbers":
                del t.numbers[:]
                t.numbers.extend(v)
            elif v is not None:
                setattr(t, k, v)

    async def delete_trunk(self, req: Any) -> None:
        self.calls.append("delete")
        self.trunks.pop(req.sip_trunk_id, None)


class FakeProvisionLK:
    def __init__(self, store: FakeTrunkStore) -> None:
        self.sip = store


@pytest.mark.parametrize("redact", [False, True])
async def test_provision_is_idempotent_against_fake(redact: bool) -> None:
    store = FakeTrunkStore(redact=redact)
    lk: Any = FakeProvisionLK(store)
    env = {PW_ENV: PASSWORD}
    phones = [
        make_phone("phn_aaaa0001"),
        make_phone("phn_bbbb0002", number="+971800000002", auth=True, transport="tls"),
        make_phone("phn_cccc0003", trunk_id="ST_external1"),
    ]
    lines: list[str] = []
    first = await provision_trunks(lk, phones, env=env, echo=lines.append)
    assert first == {
        "phn_aaaa0001": "ST_fake1",
        "phn_bbbb0002": "ST_fake2",
        "phn_cccc0003": "ST_external1",
    }
    t2 = store.trunks["ST_fake2"]
    assert (t2.name, t2.address, t2.transport, list(t2.numbers)) == (
        "convoi-phn_bbbb0002",
        "127.0.0.1:5080",
        SIPTransport.SIP_TRANSPORT_TLS,
        ["+971800000002"],
    )
    assert (t2.auth_username, t2.auth_password) == ("convoi", PASSWORD)
    assert PASSWORD not in t2.metadata and "auth_fingerprint" in t2.metadata
    assert all(PASSWORD not in line for line in lines)

    store.calls.clear()
    lines.clear()
    assert await provision_trunks(lk, phones, env=env, echo=lines.append) == first
    assert store.calls == ["list"]  # nothing to do, whether or not the server shows passwords
    assert lines[:2] == [
        "unchanged convoi-phn_aaaa0001 (ST_fake1)",
        "unchanged convoi-phn_bbbb0002 (ST_fake2)",
    ]

    # a changed address and a changed password: updated in place, same ids
    phones[0] = make_phone("phn_aaaa0001", address="10.0.0.5:5060")
    env = {PW_ENV: "rotated-pw"}
    plan = plan_trunks(phones, (await store.list_outbound_trunk(None)).items, env=env)
    assert [(a.kind, a.changes) for a in plan[:2]] == [
        ("update", ("address",)),
        ("update", ("auth_password",)),
    ]
    lines.clear()
    assert await provision_trunks(lk, phones, dry_run=True, env=env, echo=lines.append) == first
    assert lines[:2] == [
        "would update convoi-phn_aaaa0001 (ST_fake1): address",
        "would update convoi-phn_bbbb0002 (ST_fake2): auth_password",
    ]
    assert store.trunks["ST_fake1"].address == "127.0.0.1:5080"  # dry run changed nothing
    assert await provision_trunks(lk, phones, env=env, echo=None) == first
    assert store.trunks["ST_fake1"].address == "10.0.0.5:5060"
    assert store.trunks["ST_fake2"].auth_password == "rotated-pw"
    store.calls.clear()
    await provision_trunks(lk, phones, env=env, echo=None)
    assert store.calls == ["list"]


async def test_provision_duplicates_orphans_and_dry_run_create() -> None:
    store = FakeTrunkStore()
    lk: Any = FakeProvisionLK(store)
    phone = make_phone("phn_dddd0004")
    desired = DesiredTrunk.from_phone(phone, {})
    for _ in range(2):
        await store.create_outbound_trunk(type("R", (), {"trunk": desired.info()})())
    orphan = DesiredTrunk.from_phone(make_phone("phn_gone0009"), {})
    await store.create_outbound_trunk(type("R", (), {"trunk": orphan.info()})())
    foreign = SIPOutboundTrunkInfo(name="someone-else", address="x:5060")
    await store.create_outbound_trunk(type("R", (), {"trunk": foreign})())

    lines: list[str] = []
    mapping = await provision_trunks(lk, [phone], env={}, echo=lines.append)
    assert mapping == {"phn_dddd0004": "ST_fake1"}
    assert lines == [
        "unchanged convoi-phn_dddd0004 (ST_fake1)",
        "deleted duplicate convoi-phn_dddd0004 (ST_fake2)",
        "orphan (left alone) convoi-phn_gone0009 (ST_fake3)",
    ]
    assert set(store.trunks) == {"ST_fake1", "ST_fake3", "ST_fake4"}

    lines.clear()
    new = make_phone("phn_eeee0005", auth=True)
    assert await provision_trunks(lk, [new], dry_run=True, env={PW_ENV: PASSWORD}, echo=lines.append) == {}  # fmt: skip
    assert lines[0] == "would create convoi-phn_eeee0005: 127.0.0.1:5080/udp numbers=+15550000001 with auth"  # fmt: skip


def test_plan_reports_every_missing_password_at_once() -> None:
    phones = [
        make_phone("phn_ffff0006", auth=True),
        make_phone("phn_gggg0007", auth=True),
    ]
    with pytest.raises(TrunkConfigError) as err:
        plan_trunks(phones, [], env={})
    assert "phn_ffff0006" in str(err.value) and "phn_gggg0007" in str(err.value)


def test_trunk_action_repr_hides_password() -> None:
    desired = DesiredTrunk.from_phone(make_phone(auth=True), {PW_ENV: PASSWORD})
    action = TrunkAction("create", "phn_test0001", "convoi-phn_test0001", None, desired=desired)
    assert PASSWORD not in repr(action) and PASSWORD not in repr(desired)
    assert PASSWORD not in action.describe(dry_run=True)


# =============================================================================================
# a REAL livekit-server on 7990-7992 (no SIP bridge), without and with Redis: marked `server`
# =============================================================================================

LK_PORT, LK_TCP, LK_UDP = 7990, 7991, 7992


def _port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def private_redis(workdir: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)]  # fmt: skip
    with (workdir / "redis.log").open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _port_in_use(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"redis-server did not start (log {workdir / 'redis.log'})")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module", params=["no-redis", "redis"])
def sip_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, LiveKitServer]]:
    """Our own livekit-server on 7990 (never the shared 7880), once without, once with Redis."""
    if _port_in_use(LK_PORT):
        pytest.skip(f"port {LK_PORT} is in use by something else")
    workdir = tmp_path_factory.mktemp(f"lk-{request.param}")
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(private_redis(workdir / "redis")) if request.param == "redis" else None  # fmt: skip
        cfg = ServerConfig(port=LK_PORT, rtc_tcp_port=LK_TCP, rtc_udp_port=LK_UDP, redis_address=redis)  # fmt: skip
        server = stack.enter_context(LiveKitServer(cfg, workdir=workdir, reuse=False))
        yield request.param, server


@pytest.fixture
async def lk(sip_server: tuple[str, LiveKitServer]) -> AsyncIterator[api.LiveKitAPI]:
    _, server = sip_server
    client = api.LiveKitAPI(server.http_url, server.api_key, server.api_secret)
    try:
        yield client
    finally:
        await client.aclose()


EXPECTED_DIAL_ANSWER = {
    "no-redis": "twirp error unknown: sip not connected (redis required) (LiveKit internal, HTTP 500)",
    "redis": "twirp error unknown: no response from servers (LiveKit unavailable, HTTP 503)",
}


@pytest.mark.server
async def test_real_server_dial_fails_clearly_without_sip_bridge(
    sip_server: tuple[str, LiveKitServer], lk: api.LiveKitAPI
) -> None:
    mode, _ = sip_server
    started = time.monotonic()
    res = await asyncio.wait_for(_dial(lk, ring=5.0), 30)
    elapsed = time.monotonic() - started
    assert not res.answered and res.outcome is not None
    assert (res.outcome.status, res.outcome.ended_reason, res.outcome.fault) == ("failed", "dial_failed", "platform")  # fmt: skip
    assert res.outcome.detail == f"no SIP response: {EXPECTED_DIAL_ANSWER[mode]}"
    assert elapsed < 5.0, f"dial took {elapsed:.1f}s"


@pytest.mark.server
async def test_real_server_dial_with_unknown_trunk_id(
    sip_server: tuple[str, LiveKitServer], lk: api.LiveKitAPI
) -> None:
    mode, _ = sip_server
    res = await asyncio.wait_for(_dial(lk, phone=make_phone(trunk_id="ST_doesnotexist")), 30)
    assert res.outcome is not None and res.outcome.status == "failed"
    if mode == "redis":
        assert res.outcome.fault == "config"
        assert res.outcome.detail == "no SIP response: requested sip trunk does not exist (LiveKit not_found, HTTP 404)"  # fmt: skip
    else:
        assert res.outcome.detail == f"no SIP response: {EXPECTED_DIAL_ANSWER[mode]}"


@pytest.mark.server
async def test_real_server_hang_up_of_absent_participant(lk: api.LiveKitAPI) -> None:
    assert await hang_up(lk, f"no-room-{uuid.uuid4().hex[:6]}", "phone-15550000002") is False


@pytest.mark.server
async def test_real_server_provisioning(
    sip_server: tuple[str, LiveKitServer], lk: api.LiveKitAPI
) -> None:
    mode, _ = sip_server
    tag = uuid.uuid4().hex[:8]
    phones = [
        make_phone(f"phn_{tag}a"),
        make_phone(f"phn_{tag}b", number="+971800000002", auth=True, transport="tcp"),
    ]
    env = {PW_ENV: PASSWORD}
    if mode == "no-redis":
        with pytest.raises(ProvisionError) as err:
            await provision_trunks(lk, phones, env=env, echo=None)
        assert "sip not connected (redis required)" in str(err.value)
        return

    lines: list[str] = []
    assert await provision_trunks(lk, phones, dry_run=True, env=env, echo=lines.append) == {}
    assert [line.split(":")[0] for line in lines] == [f"would create convoi-phn_{tag}a", f"would create convoi-phn_{tag}b"]  # fmt: skip
    first = await provision_trunks(lk, phones, env=env, echo=None)
    assert set(first) == {p.id for p in phones} and all(v.startswith("ST_") for v in first.values())
    listed = {t.name: t for t in (await lk.sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest())).items}  # fmt: skip
    b = listed[f"convoi-phn_{tag}b"]
    assert (b.address, b.transport, list(b.numbers), b.auth_username, b.auth_password) == (
        "127.0.0.1:5080",
        SIPTransport.SIP_TRANSPORT_TCP,
        ["+971800000002"],
        "convoi",
        PASSWORD,
    )

    lines.clear()
    assert await provision_trunks(lk, phones, env=env, echo=lines.append) == first
    assert lines == [f"unchanged convoi-phn_{tag}a ({first[phones[0].id]})", f"unchanged convoi-phn_{tag}b ({first[phones[1].id]})"]  # fmt: skip

    phones[1] = make_phone(f"phn_{tag}b", number="+971800000002", auth=True, transport="udp")
    env = {PW_ENV: "rotated"}
    lines.clear()
    assert await provision_trunks(lk, phones, env=env, echo=lines.append) == first
    assert lines[1] == f"updated convoi-phn_{tag}b ({first[phones[1].id]}): transport, auth_password"  # fmt: skip
    listed = {t.name: t for t in (await lk.sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest())).items}  # fmt: skip
    b = listed[f"convoi-phn_{tag}b"]
    assert (b.transport, b.auth_password) == (SIPTransport.SIP_TRANSPORT_UDP, "rotated")
    lines.clear()
    await provision_trunks(lk, phones, env=env, echo=lines.append)
    assert all(line.startswith("unchanged") for line in lines)
