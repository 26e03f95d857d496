"""Voicemail detection on an outbound call: hold the greeting until we know who answered.

An agent with ``voicemail`` (:class:`convoi.definitions.models.Voicemail`) has its outbound calls
run livekit-agents' answering-machine detection (:class:`livekit.agents.voice.amd.AMD`) from the
moment the session starts with the answered phone. AMD classifies the callee's first words with
the start member's own LLM (billed as that member's LLM use) on the session's STT transcripts;
``no_speech_seconds`` and ``max_detection_seconds`` are its ``no_speech_threshold`` and
``timeout``. :class:`VoicemailDetection` holds the verdict and acts on it:

- ``human`` or ``uncertain`` (silence, timeout): the agent greets at once — its ``on_enter``
  waits on :meth:`VoicemailDetection.wait_to_greet`, which says True;
- a machine: ``wait_to_greet`` says False (no greeting); ``hang_up`` ends the call ``completed``
  / ``voicemail`` at once; ``leave_message`` says the rendered message, uninterruptible, and ends
  the call the same way once it has played out (drained, so it is heard before the BYE).
  ``machine-unavailable`` (the mailbox is full) always hangs up.

What the callee said before the greeting (a person's "Hello?", the machine's announcement) gets no
LLM reply of its own (:meth:`VoicemailDetection.heard_before_greeting`). The
:class:`~convoi.reporting.events.VoicemailReport` (verdict, reason, answer → verdict seconds,
action) goes to the call for ``call.ended``. Like :class:`~convoi.worker.limits.LimitsWatch`, this
never ends a call itself: it asks the call (``end_soon``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Protocol, get_args

from livekit.agents import AgentSession, llm
from livekit.agents.voice.amd import AMD, AMDPredictionEvent
from livekit.agents.voice.amd.detector import DetectionOptions

from convoi.callspec import ResolvedCall
from convoi.definitions.models import Voicemail
from convoi.greeting import render
from convoi.lifecycle import EndedReason
from convoi.reporting.events import VoicemailReport
from convoi.worker.log import logger

__all__ = [
    "DETECTION_GRACE_SECONDS",
    "Action",
    "Detector",
    "DetectorFactory",
    "Verdict",
    "VoicemailDetection",
    "decide",
    "detection_for",
    "detection_options",
    "livekit_amd",
    "voicemail_message",
]

Verdict = Literal["human", "machine-vm", "machine-ivr", "machine-unavailable", "uncertain"]
"""AMD's categories (``AMDCategory`` values)."""
Action = Literal["greeted", "hung_up", "left_message"]
"""What the agent did with the verdict."""

DETECTION_GRACE_SECONDS = 10.0
"""Beyond ``max_detection_seconds``, how long we wait for AMD before greeting anyway (AMD first
waits for the phone's audio track, up to 5 s, before its own timers start)."""

_VERDICTS: frozenset[str] = frozenset(get_args(Verdict))


class Detector(Protocol):
    """What the call uses of livekit's ``AMD`` (unit tests pass fakes)."""

    async def __aenter__(self) -> Any: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None: ...

    async def execute(self) -> AMDPredictionEvent: ...


DetectorFactory = Callable[[AgentSession[Any], Voicemail, llm.LLM[Any], str], Detector]
"""(session, options, the start member's LLM, the phone's participant identity) → a detector."""


class EndSoon(Protocol):
    """``Call.end_soon`` as the detection uses it."""

    def __call__(self, reason: EndedReason, *, drain: bool = ...) -> object: ...


def detection_options(options: Voicemail) -> DetectionOptions:
    """Our options as AMD's ``detection_options`` (AMD's defaults for the rest)."""
    return {
        "no_speech_threshold": options.no_speech_seconds,
        "timeout": options.max_detection_seconds,
    }


def livekit_amd(
    session: AgentSession[Any], options: Voicemail, model: llm.LLM[Any], identity: str
) -> Detector:
    """livekit-agents' AMD on ``session``, classifying with ``model`` on the session's STT.

    It listens to ``identity`` only, from its SIP answer; it does not navigate IVR menus, and
    ``timeout`` stays a hard bound (``wait_until_finished=False``): an undecided callee is
    greeted rather than held in silence."""
    return AMD(
        session,
        llm=model,
        stt=None,
        participant_identity=identity,
        interrupt_on_machine=True,
        ivr_detection=False,
        suppress_compatibility_warning=True,
        detection_options=detection_options(options),
        wait_until_finished=False,
    )


def decide(verdict: Verdict, options: Voicemail) -> Action:
    """What to do with a verdict: greet a person (or an undecided callee), else the configured
    action, except that a mailbox that takes no message is hung up on."""
    if verdict in ("human", "uncertain"):
        return "greeted"
    if verdict == "machine-unavailable" or options.action == "hang_up":
        return "hung_up"
    return "left_message"


def voicemail_message(call: ResolvedCall) -> str | None:
    """The start member's voicemail message with the greeting's placeholders filled in."""
    options = call.start_agent.agent.voicemail
    if options is None or options.message is None:
        return None
    return render(options.message, call.spec.contact_name)


class VoicemailDetection:
    """Answering-machine detection of one answered outbound call (see the module docstring).

    ``answered_at`` is when the phone answered (Unix time, the :attr:`report`'s zero);
    ``on_report`` receives the report when the verdict is in."""

    def __init__(
        self,
        session: AgentSession[Any],
        options: Voicemail,
        *,
        model: llm.LLM[Any],
        identity: str,
        message: str | None,
        answered_at: float,
        end_soon: EndSoon,
        on_report: Callable[[VoicemailReport], None],
        detector_factory: DetectorFactory = livekit_amd,
        clock: Callable[[], float] = time.time,
        log_fields: dict[str, Any] | None = None,
        detection_grace: float = DETECTION_GRACE_SECONDS,
    ) -> None:
        self._session = session
        self._grace = detection_grace
        self._options = options
        self._model = model
        self._identity = identity
        self._message = message
        self._answered_at = answered_at
        self._end_soon = end_soon
        self._on_report = on_report
        self._factory = detector_factory
        self._clock = clock
        self._fields = log_fields or {}
        self._decided = asyncio.Event()
        self._greet = False
        self._decided_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._preemptive: bool | None = None
        self.report: VoicemailReport | None = None
        """The verdict and what was done with it (None until decided)."""

    def start(self) -> None:
        """The session is running with the answered phone: detect."""
        if self._task is None:
            self._hold_preemptive_replies()
            self._task = asyncio.create_task(self._run(), name="convoi-voicemail-detection")

    def stop(self) -> None:
        """The call is ending: stop detecting; a greeting still waiting is called off."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._decided.set()

    async def wait_to_greet(self) -> bool:
        """Wait for the verdict: True to greet (a person, or undecided), False for a machine."""
        await self._decided.wait()
        return self._greet

    def heard_before_greeting(self, message: llm.ChatMessage) -> bool:
        """True when the callee's turn ``message`` must get no reply: it ended before the
        greeting was released, or a machine answered (nothing is said to it but the message)."""
        if self._decided_at is None or not self._greet:
            return True
        stopped = (message.metrics or {}).get("stopped_speaking_at")
        return stopped is not None and stopped < self._decided_at

    async def _run(self) -> None:
        verdict, reason = await self._detect()
        self._decided_at = self._clock()
        action = decide(verdict, self._options)
        self.report = VoicemailReport(
            verdict=verdict,
            reason=reason,
            detection_seconds=round(max(0.0, self._decided_at - self._answered_at), 3),
            action=action,
        )
        self._on_report(self.report)
        logger.info(
            "voicemail detection: %s",
            verdict,
            extra={
                **self._fields,
                "reason": reason,
                "action": action,
                "detection_seconds": self.report.detection_seconds,
            },
        )
        self._greet = action == "greeted"
        if self._greet:
            self._release_preemptive_replies()
        self._decided.set()
        if action == "left_message":
            await self._leave_message()
        elif action == "hung_up":
            self._end_soon("voicemail")

    def _hold_preemptive_replies(self) -> None:
        """No speculative LLM reply to what is said before the verdict: it would be discarded
        (:meth:`heard_before_greeting`) after being paid for. livekit reads this option live."""
        options = self._session.options.preemptive_generation
        self._preemptive = options.get("enabled", False)
        options["enabled"] = False

    def _release_preemptive_replies(self) -> None:
        if self._preemptive is not None:
            self._session.options.preemptive_generation["enabled"] = self._preemptive

    async def _detect(self) -> tuple[Verdict, str]:
        """AMD's verdict, or ``uncertain`` when it fails or takes too long."""
        bound = self._options.max_detection_seconds + self._grace
        try:
            detector = self._factory(self._session, self._options, self._model, self._identity)
            async with detector:
                result = await asyncio.wait_for(detector.execute(), timeout=bound)
        except TimeoutError:
            logger.warning("voicemail detection took too long: greeting", extra=self._fields)
            return "uncertain", "worker_timeout"
        except Exception as exc:  # detection is best effort: a person must still be greeted
            logger.warning(
                "voicemail detection failed (%s): greeting", type(exc).__name__, extra=self._fields
            )
            return "uncertain", "error"
        category = str(result.category.value)
        if category not in _VERDICTS:
            return "uncertain", result.reason
        verdict: Verdict = category  # type: ignore[assignment]  # checked just above
        return verdict, result.reason

    async def _leave_message(self) -> None:
        assert self._message is not None  # Voicemail requires one for leave_message
        try:
            handle = self._session.say(
                self._message, allow_interruptions=False, add_to_chat_ctx=True
            )
        except RuntimeError:  # the session is closing: the call is ending anyway
            return
        await handle.wait_for_playout()
        self._end_soon("voicemail", drain=True)


def detection_for(
    call: ResolvedCall,
    session: AgentSession[Any],
    model: object,
    *,
    identity: str,
    answered_at: float,
    end_soon: EndSoon,
    on_report: Callable[[VoicemailReport], None],
    log_fields: dict[str, Any] | None = None,
) -> VoicemailDetection | None:
    """The detection an answered outbound ``call`` runs (None: its start member has no
    ``voicemail``, or no LLM of ours to classify with). ``model`` is the start agent's LLM."""
    options = call.start_agent.agent.voicemail
    if options is None or call.spec.type != "outbound_phone" or not isinstance(model, llm.LLM):
        return None
    return VoicemailDetection(
        session,
        options,
        model=model,
        identity=identity,
        message=voicemail_message(call),
        answered_at=answered_at,
        end_soon=end_soon,
        on_report=on_report,
        log_fields=log_fields,
    )
