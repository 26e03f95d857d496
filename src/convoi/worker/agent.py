"""The per-call voice agent: instructions, pipeline and greeting of one effective agent."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from livekit import rtc
from livekit.agents import Agent, ModelSettings, RunContext, function_tool
from livekit.agents.llm import ChatContext

from convoi.callspec import EffectiveAgent
from convoi.worker.log import logger
from convoi.worker.state import CallState

__all__ = ["END_CALL_DESCRIPTION", "OPENER_INSTRUCTIONS", "ConvoiAgent", "presynthesize"]

END_CALL_DESCRIPTION = (
    "End the call. Use it only after the caller says goodbye or clearly has nothing else, "
    "and after you have said goodbye yourself."
)
"""The ``end_call`` tool's description: the prompt the LLM reads."""

OPENER_INSTRUCTIONS = (
    "The call has just connected. Greet the person warmly in one short sentence and ask how you "
    "can help."
)
"""What the LLM is asked to do when the agent has no first_message."""


async def _frames(frames: list[rtc.AudioFrame]) -> AsyncIterator[rtc.AudioFrame]:
    for frame in frames:
        yield frame


async def presynthesize(tts: Any, text: str) -> list[rtc.AudioFrame]:
    """Render ``text`` with ``tts`` ahead of time (e.g. while a phone call rings)."""
    frames: list[rtc.AudioFrame] = []
    async with tts.synthesize(text) as stream:
        async for event in stream:
            frames.append(event.frame)
    return frames


class ConvoiAgent(Agent):
    """One effective agent running in an AgentSession.

    On entering the session it speaks its rendered first_message, or asks the LLM for an opener
    when there is none. ``tools`` are added after the built-in ones; ``chat_ctx`` is the history
    it starts with (a squad member taking over a call), empty by default.
    """

    def __init__(
        self,
        effective: EffectiveAgent,
        *,
        stt: Any = None,
        llm: Any = None,
        tts: Any = None,
        tools: list[Any] | None = None,
        chat_ctx: ChatContext | None = None,
    ) -> None:
        built_in = (
            [function_tool(self._end_call, name="end_call", description=END_CALL_DESCRIPTION)]
            if "end_call" in effective.agent.tools
            else []
        )
        super().__init__(
            instructions=effective.instructions,
            stt=stt,
            llm=llm,
            tts=tts,
            tools=[*built_in, *(tools or [])],
            chat_ctx=chat_ctx,
            id=effective.key,
        )
        self.effective = effective

    async def stt_node(
        self, audio: AsyncIterable[rtc.AudioFrame], model_settings: ModelSettings
    ) -> Any:
        """The default STT node, counting the audio it streams (STT is billed per audio minute).

        The plugin's own usage metrics arrive in 5 s batches and may land after the call's final
        report, so the count is kept here, per member, on the call state."""
        counts = self.session.userdata.stt_audio_seconds

        async def counted() -> AsyncIterator[rtc.AudioFrame]:
            async for frame in audio:
                counts[self.id] = counts.get(self.id, 0.0) + frame.duration
                yield frame

        async for event in Agent.default.stt_node(self, counted(), model_settings):
            yield event

    async def on_enter(self) -> None:
        greeting = self.effective.greeting
        state = self.session.userdata
        ready = getattr(state, "greeting_audio", None)
        if greeting and ready:  # synthesised while the phone rang: plays the moment it is answered
            state.greeting_audio = None
            self.session.say(greeting, audio=_frames(ready), allow_interruptions=False)
        elif greeting:
            self.session.say(greeting, allow_interruptions=False, add_to_chat_ctx=True)
        else:
            self.session.generate_reply(instructions=OPENER_INSTRUCTIONS)

    async def _end_call(self, context: RunContext[CallState]) -> None:
        logger.info("agent ended the call", extra={"agent": self.effective.key})
        context.userdata.ended_reason = "agent_hangup"
        await context.wait_for_playout()
        context.session.shutdown(drain=True)
