"""The job entrypoint: one dispatched job = one :class:`~convoi.worker.call.Call`.

Wiring only: the job process's resources (loaded once by :func:`prewarm`), the log context, the
call. Everything about the call's life, from its CallSpec to ``call.ended``, is the call's.
"""

from __future__ import annotations

import json

from livekit.agents import JobContext, JobProcess

from convoi.definitions.models import Definitions
from convoi.reporting.checkpoint import split_resume
from convoi.settings import WorkerSettings
from convoi.worker.call import Call
from convoi.worker.config import JobResources, WorkerConfig
from convoi.worker.log import keep_customer_data_out_of_logs

__all__ = ["console_callspec", "entrypoint", "prewarm"]


def prewarm(config: WorkerConfig, proc: JobProcess) -> None:
    """Once per job process: load the definitions and silero's VAD for its calls; keep
    livekit's customer-data log fields out of the process's logs."""
    keep_customer_data_out_of_logs()
    JobResources.load(config).install(proc)


def console_callspec(settings: WorkerSettings, defs: Definitions) -> str:
    """The CallSpec for ``convoi-worker console``: CONVOI_CONSOLE_CALL, else a web call to the
    first agent (console jobs carry no dispatch metadata)."""
    if settings.console_call is not None:
        return settings.console_call.read_text(encoding="utf-8")
    first = sorted(defs.agents)[0]
    return json.dumps({"call_id": "call_console0001", "type": "web", "agent_id": first})


async def entrypoint(config: WorkerConfig, ctx: JobContext) -> None:
    """Conduct the call described by ``ctx.job.metadata``."""
    resources = JobResources.of(ctx.proc)
    if resources is None:  # the setup hook does not run in console mode
        prewarm(config, ctx.proc)
        resources = JobResources.of(ctx.proc)
        assert resources is not None
    metadata = ctx.job.metadata
    if ctx.is_fake_job() and not metadata.strip():
        metadata = console_callspec(resources.config.settings, resources.definitions)
    metadata, resume = split_resume(metadata)  # a resumed call: see convoi.worker.resume
    call = Call(
        ctx,
        metadata,
        resources,
        log_fields={"job_id": ctx.job.id, "room": ctx.room.name},
        resume=resume,
    )
    await call.run()
