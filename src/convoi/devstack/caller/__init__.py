"""The simulated web caller: a LiveKit participant that talks to the agent like a person would.

It joins a room with a token, publishes a microphone track that carries continuous audio (silence
between utterances, espeak-ng speech when it talks, paced in real time), subscribes to the agent's
audio, records everything the agent says and measures what a caller experiences:

* ``joined``: the room connection completed;
* ``agent_joined``: the agent participant (``ParticipantKind.PARTICIPANT_KIND_AGENT``, or the
  identity given in the script) is in the room;
* ``first_agent_audio``: the first agent frame whose RMS crosses the speech threshold (greeting);
* per turn: ``end_of_speech`` (the caller's last speech sample left the microphone),
  ``first_reply_audio`` (first loud agent frame after it) and ``reply_end`` (the agent went quiet
  for ``end_silence_ms``).

An utterance may be a :class:`PausingUtterance`, said in fragments with silent pauses between them
(:mod:`convoi.devstack.caller.pauses`): its turn also records each fragment's start and end, the
pauses, and whether the agent's reply started before the real end of speech (a false cut-in).

Every timestamp carries both ``time.monotonic()`` (for latencies) and ``time.time()`` (to correlate
with logs of other processes). Transcriptions the agent publishes on the ``lk.transcription`` text
stream topic are collected too. Every step has a deadline: a step that times out adds an error to the
report (which step, how long it waited) and ends the script; :func:`run_caller` never hangs.

Command line::

    python -m convoi.devstack.caller --url ws://127.0.0.1:7880 --token T \\
        --say "I'd like to book a table" --say "Tomorrow at eight" --json out.json --wav agent.wav
"""

from __future__ import annotations

from convoi.devstack.caller.pauses import PausingUtterance, Utterance
from convoi.devstack.caller.report import (
    TRANSCRIPTION_TOPIC,
    AgentSegment,
    CallerEvent,
    CallerReport,
    CallerScript,
    FragmentReport,
    Stamp,
    TranscriptEvent,
    TurnReport,
)
from convoi.devstack.caller.session import run_caller
from convoi.devstack.caller.token import caller_token

__all__ = [
    "TRANSCRIPTION_TOPIC",
    "AgentSegment",
    "CallerEvent",
    "CallerReport",
    "CallerScript",
    "FragmentReport",
    "PausingUtterance",
    "Stamp",
    "TranscriptEvent",
    "TurnReport",
    "Utterance",
    "caller_token",
    "run_caller",
]
