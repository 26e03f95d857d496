"""The per-call voice agent: instructions, pipeline and greeting of one effective agent."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from livekit import rtc
from livekit.agents import (
    Agent,
    FlushSentinel,
    ModelSettings,
    RunContext,
    function_tool,
    llm,
    stt,
    tts,
)
from livekit.agents.llm import ChatContext, StopResponse, Tool

from convoi.agent.controls import CallControls
from convoi.agent.keypad import send_dtmf_tool
from convoi.agent.knowledge import TurnKnowledge
from convoi.agent.transfer import transfer_tool
from convoi.callspec import EffectiveAgent
from convoi.knowledge.retrieval import RETRIEVAL_EXTRA_KEY, Retrieval

if TYPE_CHECKING:
    from livekit.agents.voice.agent_session import AgentSession

__all__ = ["END_CALL_DESCRIPTION", "OPENER_INSTRUCTIONS", "ConvoiAgent"]

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


class ConvoiAgent(Agent):
    """One effective agent running in an AgentSession whose userdata is the call's
    :class:`~convoi.agent.controls.CallControls`.

    On entering the session it speaks its rendered first_message (the pre-rendered audio when the
    call has it), or asks the LLM for an opener when there is none. Its built-in tools are those
    its ``tools`` name (``end_call``, ``send_dtmf``: :mod:`convoi.agent.keypad`); ``tools`` are
    added after them; ``chat_ctx`` is the history it starts with (a squad member taking over a call),
    empty by default.
    """

    def __init__(
        self,
        effective: EffectiveAgent,
        *,
        stt: stt.STT[Any] | None = None,
        llm: llm.LLM[Any] | None = None,
        tts: tts.TTS[Any] | None = None,
        tools: Sequence[llm.Tool] | None = None,
        chat_ctx: ChatContext | None = None,
    ) -> None:
        built_in: list[Tool] = (
            [function_tool(self._end_call, name="end_call", description=END_CALL_DESCRIPTION)]
            if "end_call" in effective.agent.tools
            else []
        )
        if "send_dtmf" in effective.agent.tools:
            built_in.append(send_dtmf_tool())
        if effective.agent.transfers:  # phone calls only: web calls resolve without transfers
            built_in.append(transfer_tool(effective.agent.transfers))
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
        self._knowledge = TurnKnowledge(self._search_knowledge)

    @property
    def controls(self) -> CallControls:
        """The call this agent runs in (the session's userdata)."""
        session: AgentSession[CallControls] = self.session
        return session.userdata

    async def stt_node(
        self, audio: AsyncIterable[rtc.AudioFrame], model_settings: ModelSettings
    ) -> AsyncIterable[stt.SpeechEvent | str]:
        """The default STT node, counting the audio it streams (STT is billed per audio minute).

        The plugin's own usage metrics arrive in 5 s batches and may land after the call's final
        report, so the count is kept here, per member, by the call."""
        controls = self.controls

        async def counted() -> AsyncIterator[rtc.AudioFrame]:
            async for frame in audio:
                controls.count_stt_audio(self.id, frame.duration)
                yield frame

        async for event in Agent.default.stt_node(self, counted(), model_settings):
            yield event

    async def on_enter(self) -> None:
        """Greet: the pre-rendered greeting, else the rendered first_message, else an opener;
        once the call allows it (voicemail detection holds the greeting until its verdict).
        A resumed call says its apology instead and waits for the caller's next turn."""
        apology = self.controls.take_resume_apology()
        if apology is not None:  # a resumed call: carry on after one short apology
            self.session.say(apology, allow_interruptions=False, add_to_chat_ctx=True)
            return
        if not await self.controls.wait_to_greet():
            return  # an answering machine: the call deals with it
        greeting = self.effective.greeting
        ready = self.controls.take_greeting_audio() if greeting else None
        if greeting and ready:  # synthesised while the phone rang: plays the moment it is answered
            self.session.say(greeting, audio=ready, allow_interruptions=False)
        elif greeting:
            self.session.say(greeting, allow_interruptions=False, add_to_chat_ctx=True)
        else:
            self.session.generate_reply(instructions=OPENER_INSTRUCTIONS)

    async def on_user_turn_completed(
        self, turn_ctx: ChatContext, new_message: llm.ChatMessage
    ) -> None:
        """No reply to what the callee said before the greeting (a person's "Hello?" while
        voicemail detection listened): the greeting answers it. It stays in the context.
        Otherwise the turn gets the chunks of the agent's knowledge bases that match it."""
        if self.controls.heard_before_greeting(new_message):
            chat_ctx = self.chat_ctx.copy()
            chat_ctx.insert(new_message)
            await self.update_chat_ctx(chat_ctx)
            raise StopResponse()
        await self._add_knowledge(turn_ctx, new_message)

    async def _add_knowledge(self, turn_ctx: ChatContext, new_message: llm.ChatMessage) -> None:
        """Search this agent's knowledge bases for what the caller just said (the search a reply
        started ahead of the turn's end is reused; see convoi.agent.knowledge). The excerpts reach
        the LLM through :meth:`llm_node`, for this turn only; ``turn_ctx`` stays unchanged so an
        early reply is kept. What was found, how long it took, or why it failed rides on
        ``new_message`` into the call's latency figures; a failure leaves the LLM to answer
        without context."""
        query = new_message.text_content or ""
        if not self.effective.agent.knowledge_base_ids or not query.strip():
            return
        found = await self._knowledge.lookup(query)
        if found is None:
            return
        new_message.extra[RETRIEVAL_EXTRA_KEY] = found.report()
        if isinstance(new_message.metrics, dict):
            # when the turn's context is unchanged livekit-agents commits its preemptive copy of
            # the message, which shares this metrics dict but not ``extra``
            new_message.metrics[RETRIEVAL_EXTRA_KEY] = found.report()  # type: ignore[literal-required]

    async def _search_knowledge(self, query: str) -> Retrieval | None:
        return await self.controls.retrieve_knowledge(
            self.effective.agent.knowledge_base_ids, query
        )

    async def llm_node(
        self, chat_ctx: ChatContext, tools: list[Tool], model_settings: ModelSettings
    ) -> AsyncIterable[llm.ChatChunk | str | FlushSentinel]:
        """The default LLM node, given the knowledge-base excerpts for the caller's last turn."""
        if self.effective.agent.knowledge_base_ids:
            chat_ctx = await self._knowledge.with_excerpts(chat_ctx)
        async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
            yield chunk

    async def _end_call(self, context: RunContext[CallControls]) -> None:
        await context.wait_for_playout()
        context.userdata.hang_up()
