"""The worker's configuration and the resources each job process loads once.

:class:`WorkerConfig` is built once, in the worker's main process, from the environment, and passed
explicitly: to :func:`convoi.worker.server.build_server`, which hands it to every job process's
:func:`~convoi.worker.entrypoint.prewarm`. There it becomes :class:`JobResources` (the definitions
and silero's VAD, loaded once per process), which every call of that process uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from livekit import rtc
from livekit.agents import JobProcess, vad
from livekit.plugins import silero  # plugins register on import, which must be the main thread

from convoi.definitions.loader import load_definitions
from convoi.definitions.models import Definitions
from convoi.knowledge.retrieval import Retriever
from convoi.knowledge.settings import KnowledgeSettings
from convoi.knowledge.startup import open_retriever
from convoi.reporting.delivery import DeliverySettings
from convoi.settings import WorkerSettings
from convoi.telephony import Dialer, dial
from convoi.worker.apology import load_apology
from convoi.worker.metrics import MetricsSettings
from convoi.worker.session import vad_min_silence
from convoi.worker.warmup import warm_up

__all__ = ["JobResources", "WorkerConfig"]


@dataclass(frozen=True)
class WorkerConfig:
    """Everything the worker reads from its environment, in one object."""

    settings: WorkerSettings
    """LiveKit, providers, dispatch name, definitions folder, dial mode."""
    delivery: DeliverySettings
    """Where call events go (outbox file, control plane URL and secret, progress interval)."""
    metrics: MetricsSettings
    """Where the Prometheus endpoint is served."""
    dialer: Dialer
    """How outbound calls are dialled: :func:`convoi.telephony.dial` (CreateSIPParticipant)."""
    knowledge: KnowledgeSettings = field(default_factory=KnowledgeSettings)
    """Where the knowledge index lives and how many chunks a turn gets."""
    knowledge_index: Path | None = None
    """The index the main process built or found at start-up (None: job processes look for the
    one the current documents belong to)."""

    @classmethod
    def from_env(cls) -> WorkerConfig:
        """Read every setting from the environment (and ``.env``)."""
        return cls(
            settings=WorkerSettings(),
            delivery=DeliverySettings(),
            metrics=MetricsSettings(),
            dialer=dial,
        )


@dataclass(frozen=True)
class JobResources:
    """What a job process loads once and every call in it uses."""

    config: WorkerConfig
    definitions: Definitions
    """Agents, squads, phone numbers, knowledge bases and prices."""
    vad: vad.VAD | None
    """silero's VAD (None: turn detection off, text-mode tests)."""
    apology: tuple[rtc.AudioFrame, ...] = ()
    """The pre-rendered apology played when every provider of a kind fails
    (:mod:`convoi.worker.apology`)."""
    knowledge: Retriever | None = None
    """Searches the knowledge index, opened read-only once per job process (None: no
    retrieval)."""

    @classmethod
    def load(cls, config: WorkerConfig, *, with_vad: bool = True) -> JobResources:
        """Load the definitions, the apology audio, the knowledge index (read-only) and (unless
        ``with_vad`` is False) silero's VAD."""
        warm_up()  # TLS contexts & first uses: done in the forkserver unless processes are spawned
        vad_model: vad.VAD | None = None
        if with_vad:
            silence = vad_min_silence(config.settings)
            vad_model = (
                silero.VAD.load()
                if silence is None
                else silero.VAD.load(min_silence_duration=silence)
            )
        config_dir = config.settings.config_dir
        definitions = load_definitions(config_dir).definitions
        return cls(
            config=config,
            definitions=definitions,
            vad=vad_model,
            apology=load_apology(),
            knowledge=open_retriever(
                definitions, config_dir, config.knowledge, config.knowledge_index
            ),
        )

    def install(self, proc: JobProcess) -> None:
        """Keep these resources for the calls of ``proc`` (livekit's per-process slot)."""
        proc.userdata[_SLOT] = self

    @classmethod
    def of(cls, proc: JobProcess) -> JobResources | None:
        """The resources :meth:`install` kept for ``proc``, if any."""
        found = proc.userdata.get(_SLOT)
        return found if isinstance(found, cls) else None


_SLOT = "convoi.resources"
"""livekit-agents gives a job process one untyped dict (``JobProcess.userdata``); the typed
:class:`JobResources` is the only thing kept in it."""
