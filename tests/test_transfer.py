"""Unit tests of transfers: the ``transfer_call`` tool from definitions, what a call does with
a REFER's outcome (success ends ``transferred``, failure keeps the call), warm dial routing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from livekit import api
from livekit.protocol.sip import TransferSIPParticipantResponse

from convoi.agent import TRANSFER_TOOL, TransferOutcome, transfer_tool
from convoi.agent.transfer import failure_result, transfer_schema
from convoi.callspec import resolve_call
from convoi.definitions.models import Definitions, TransferDestination
from convoi.worker.call import Call
from convoi.worker.transfer import describe_error, refer_target
from convoi.worker.warm_transfer import warm_origination
from tests.fake_llm import Reply
from tests.helpers import SUPPORT, US_LINE
from tests.test_call import (
    TIMEOUT,
    Clock,
    FakeJob,
    Scripted,
    TextRoom,
    assistant_said,
    ended,
    phone_spec,
    reported,
    resources,
    web_spec,
)

DESK = TransferDestination(
    name="billing_desk", destination="+15550000100", description="Questions about a bill."
)
SUPERVISOR = TransferDestination(
    name="supervisor",
    destination="sip:desk@pbx.example.com:5070",
    description="A person, when the caller insists on one.",
    mode="warm",
)
CALLER = "phone-15550000002"
FAILED = "Sorry, I could not connect you."


def with_transfers(defs: Definitions) -> Definitions:
    agent = defs.agents[SUPPORT].model_copy(update={"transfers": (DESK, SUPERVISOR)})
    return defs.model_copy(update={"agents": {**defs.agents, SUPPORT: agent}})


class ReferJob(FakeJob):
    """A job whose REFERs end as the test says (``answer``: a response or an exception)."""

    def __init__(self, answer: Any) -> None:
        super().__init__(participant=None)
        self.answer = answer
        self.referred: list[tuple[str, str]] = []
        self.release = asyncio.Event()
        self.release.set()
        self.asked = asyncio.Event()

    def transfer_sip_participant(
        self, participant: Any, transfer_to: str, play_dialtone: bool = False
    ) -> asyncio.Future[Any]:
        self.referred.append((participant, transfer_to))
        self.asked.set()

        async def refer() -> Any:
            await self.release.wait()
            if isinstance(self.answer, BaseException):
                raise self.answer
            return self.answer

        return asyncio.ensure_future(refer())


def test_tool_schema_names_each_destination_and_shows_its_description() -> None:
    schema = transfer_schema([DESK, SUPERVISOR])
    assert schema["name"] == TRANSFER_TOOL
    destination = schema["parameters"]["properties"]["destination"]
    assert destination["enum"] == ["billing_desk", "supervisor"]
    assert schema["parameters"]["required"] == ["destination"]
    assert "summary" in schema["parameters"]["properties"]
    assert "- billing_desk: Questions about a bill." in schema["description"]
    assert "- supervisor: A person, when the caller insists on one." in schema["description"]
    assert transfer_tool([DESK]).info.name == TRANSFER_TOOL
    with pytest.raises(ValueError):
        transfer_tool([])


def test_only_phone_calls_offer_transfers(defs: Definitions) -> None:
    defs = with_transfers(defs)
    assert resolve_call(phone_spec(), defs).start_agent.agent.transfers == (DESK, SUPERVISOR)
    assert resolve_call(web_spec(), defs).start_agent.agent.transfers == ()


def test_refer_targets_and_failure_texts() -> None:
    assert refer_target("+15550000100") == "tel:+15550000100"
    assert refer_target("sip:desk@pbx.example.com") == "sip:desk@pbx.example.com"
    refused = api.SipCallError(
        "permission_denied",
        "call transfer failed",
        status=403,
        metadata={"sip_status_code": "403", "sip_status": "Forbidden"},
    )
    assert describe_error(refused) == "SIP 403 Forbidden"
    assert describe_error(TimeoutError()) == "timed out"
    text = failure_result("billing_desk", TransferOutcome(False, "SIP 403 Forbidden"))
    assert "billing_desk failed (SIP 403 Forbidden)" in text and "still on the line" in text


def test_warm_transfers_dial_numbers_through_the_calls_trunk_and_uris_directly(
    defs: Definitions,
) -> None:
    phone = defs.phone_numbers[US_LINE]
    number = warm_origination("+15550000100", phone, 20.0)
    assert (number["sip_call_to"], number["sip_number"]) == ("+15550000100", phone.number)
    assert number["sip_connection"].hostname == phone.sip.address  # the call's own trunk
    uri = warm_origination("sip:desk@pbx.example.com:5070", phone, 20.0)
    assert (uri["sip_call_to"], uri["sip_connection"].hostname) == ("desk", "pbx.example.com:5070")
    assert uri["sip_connection"].auth_username == ""  # trunk credentials stay with the trunk


async def phone_call_asking(
    defs: Definitions, tmp_path: Path, job: ReferJob
) -> tuple[Call, TextRoom]:
    replies = [
        Reply(
            tool=TRANSFER_TOOL,
            arguments='{"destination": "billing_desk", "summary": "  a bill  "}',
            when="billing",
        ),
        Reply(FAILED, when="billing"),
    ]
    room = TextRoom(job)
    call = Call(
        job,
        phone_spec(),
        resources(with_transfers(defs), tmp_path),
        pipeline_factory=Scripted(replies),
        start_session=room,
        clock=Clock(),
    )
    await call.run()
    return call, room


async def test_accepted_refer_ends_the_call_transferred(defs: Definitions, tmp_path: Path) -> None:
    job = ReferJob(TransferSIPParticipantResponse())
    _call, room = await phone_call_asking(defs, tmp_path, job)
    assert room.session is not None
    room.session.generate_reply(user_input="Put me through to billing")
    await job.finished()

    assert job.referred == [(CALLER, "tel:+15550000100")]
    final = ended(reported(tmp_path))
    assert (final.status, final.ended_reason) == ("completed", "transferred")
    assert final.transfer is not None
    assert final.transfer.model_dump(exclude={"at"}) == {
        "destination": "+15550000100",
        "name": "billing_desk",
        "mode": "cold",
        "succeeded": True,
        "error": None,
    }
    assert job.deleted_rooms == 1


async def test_refused_refer_keeps_the_call_and_tells_the_llm(
    defs: Definitions, tmp_path: Path
) -> None:
    refused = api.SipCallError(
        "permission_denied",
        "call transfer failed",
        status=403,
        metadata={"sip_status_code": "403", "sip_status": "Forbidden"},
    )
    job = ReferJob(refused)
    call, room = await phone_call_asking(defs, tmp_path, job)
    assert room.session is not None
    room.session.generate_reply(user_input="Put me through to billing")
    await assistant_said(room.session, FAILED)  # the LLM answered after the failed tool
    assert not call.ended
    assert call.transfer is not None and call.transfer.succeeded is False
    assert call.transfer.error == "SIP 403 Forbidden"
    room.caller_leaves(CALLER)
    await job.finished()
    final = ended(reported(tmp_path))
    assert final.ended_reason == "customer_hangup"
    assert final.transfer is not None and final.transfer.error == "SIP 403 Forbidden"


async def test_caller_leaving_while_the_refer_completes_is_still_transferred(
    defs: Definitions, tmp_path: Path
) -> None:
    """Carriers hang up the transferred leg as soon as the new call is up, often before our
    REFER request returns: the call's end waits for the transfer's outcome."""
    job = ReferJob(TransferSIPParticipantResponse())
    job.release.clear()  # the REFER is in flight until the caller has left
    _call, room = await phone_call_asking(defs, tmp_path, job)
    assert room.session is not None
    room.session.generate_reply(user_input="Put me through to billing")
    await asyncio.wait_for(job.asked.wait(), TIMEOUT)
    room.caller_leaves(CALLER)
    job.release.set()
    await job.finished()
    final = ended(reported(tmp_path))
    assert (final.status, final.ended_reason) == ("completed", "transferred")
