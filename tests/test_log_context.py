"""Every log line of a call carries job_id, room and call_id — whoever logs it.

The call sets ``ctx.log_context_fields`` as soon as it knows its call id. livekit-agents
(``job.py``) adds a ``_ContextLogFieldsFilter`` to every handler of the root logger of the job
process when the job starts; the filter copies the fields onto each record that reaches those
handlers, unless the record already has that attribute. In a job process the root handler is
``LogQueueHandler``, which pickles the record (attributes included) to the worker's main process,
where ``JsonFormatter`` writes each extra attribute as a JSON key.

This test runs the real worker wiring (``build_server`` with the ``WorkerConfig`` from the
environment, so the configuration really travels to the job process) without a LiveKit server: the
AgentServer is started ``unregistered`` and runs a fake job (what ``console`` mode does) in a real
job process, with ``start``'s JSON logging. The job's CallSpec (``CONVOI_CONSOLE_CALL``) names an
override that does not exist, so the real entrypoint rejects the call, reports it to the outbox
and ends the job — every line it writes on the way must carry the call's fields.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from convoi.reporting.outbox import Outbox

CALL_ID = "call_logcontext0001"

_WORKER = """
    import asyncio

    from livekit.agents.cli.log import setup_logging

    from convoi.worker.config import WorkerConfig
    from convoi.worker.server import build_server

    async def main() -> None:
        server = build_server(WorkerConfig.from_env())
        started = asyncio.Event()
        server.on("worker_started", started.set)
        run = asyncio.create_task(server.run(devmode=False, unregistered=True))
        await asyncio.wait_for(started.wait(), 60)
        await server.simulate_job("room-logtest", fake_job=True)
        for _ in range(600):                       # wait for the job process to finish
            await asyncio.sleep(0.1)
            if not server.active_jobs:
                break
        await asyncio.sleep(1.0)                   # let the log listener drain
        await server.aclose()
        await run

    if __name__ == "__main__":
        setup_logging("INFO", devmode=False, console=False)   # what `start` does: JSON lines
        asyncio.run(main())
"""


def _json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for raw in text.splitlines():
        try:
            lines.append(json.loads(raw))
        except ValueError:
            continue
    return lines


def test_every_line_of_a_job_carries_the_call_fields(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(_WORKER))
    callspec = tmp_path / "call.json"
    callspec.write_text(
        json.dumps(
            {
                "call_id": CALL_ID,
                "type": "web",
                "agent_id": "agt_b88d642dd68747f28305c428b209xxxx",
                "agent_overrides": {"voice": "rachel"},
            }
        )
    )
    outbox = tmp_path / "outbox.sqlite3"
    env = {
        **os.environ,
        "CONVOI_CONFIG_DIR": str(Path("agents_config").resolve()),
        "CONVOI_CONSOLE_CALL": str(callspec),
        "CONVOI_OUTBOX_PATH": str(outbox),
        "CONVOI_NUM_IDLE_PROCESSES": "1",
        "CONVOI_HEALTH_PORT": "0",
        "LIVEKIT_URL": "ws://127.0.0.1:9",
        "OPENAI_API_KEY": "sk-test",
        "DEEPGRAM_API_KEY": "dg-test",
        "ELEVEN_API_KEY": "el-test",
    }
    env.pop("CONVOI_API_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    proc = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = _json_lines(proc.stdout)
    by_message = {str(line.get("message")).split("\n")[0]: line for line in lines}

    rejected = by_message.get("call rejected: invalid CallSpec")
    assert rejected is not None, proc.stdout[-3000:]
    assert (rejected["field"], rejected["reason"]) == ("agent_overrides.voice", "invalid_request")
    ended = by_message["call ended"]
    assert (ended["status"], ended["reason"]) == ("failed", "invalid_request")
    job_pid = rejected["pid"]
    job_id = rejected["job_id"]
    assert job_id.startswith("mock-job-")

    # every line the job process wrote from the call's first line to its last (livekit-agents'
    # and our reporting's included) carries the fields; the main process prints them all
    # ("process exiting" is the main process's line about the job: it carries the job's pid and
    # races the job's own last lines through livekit's log forwarding)
    job_lines = [
        line
        for line in lines
        if line.get("pid") == job_pid and line.get("message") != "process exiting"
    ]
    first = next(i for i, line in enumerate(job_lines) if line.get("call_id") is not None)
    last = job_lines.index(ended)
    window = job_lines[first : last + 1]
    assert len(window) >= 3  # the outbox warning, the rejection and the end at least
    unmarked = [
        line
        for line in window
        if (line.get("job_id"), line.get("room"), line.get("call_id"))
        != (job_id, "room-logtest", CALL_ID)
    ]
    assert unmarked == [], [line.get("message") for line in window]
    # the first thing the call logs (its outbox has no control plane to send to) already has them
    [outbox_warning] = [
        line for line in window if str(line.get("message")).startswith("CONVOI_API_URL")
    ]
    assert outbox_warning["name"] == "convoi.reporting"

    # and the call was reported, through the outbox the configuration named
    with Outbox(outbox) as box:
        final = [p.event() for p in box.due(now=float("inf")) if p.type == "call.ended"]
    assert [(e.call_id, e.status, e.ended_reason) for e in final] == [
        (CALL_ID, "failed", "invalid_request")
    ]
