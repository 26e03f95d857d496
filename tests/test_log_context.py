"""Every log line of a call carries job_id, room and call_id — whoever logs it.

The entrypoint sets ``ctx.log_context_fields``. livekit-agents (``job.py``) adds a
``_ContextLogFieldsFilter`` to every handler of the root logger of the job process when the job
starts (``JobContext._on_setup``); the filter copies the fields onto each record that reaches those
handlers, unless the record already has that attribute. In a job process the root handler is
``LogQueueHandler``, which pickles the record (attributes included) to the worker's main process,
where ``JsonFormatter`` writes each extra attribute as a JSON key. So the fields are on every
record that propagates to the root logger, from any logger (``livekit.agents``, plugins, our own,
third-party libraries) and any thread, from the moment the entrypoint sets them until the job's
cleanup (after the shutdown callbacks).

This test runs that real path without a LiveKit server: an AgentServer started ``unregistered``
runs a fake job (what ``console`` mode does) in a real job process, with ``start``'s JSON logging.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

_WORKER = """
    import asyncio, logging, threading
    from livekit.agents import AgentServer, JobContext
    from livekit.agents.cli.log import setup_logging

    CALL_ID = "call_logcontext0001"

    class TagJobLines(logging.Filter):  # tells the job process's lines from the main process's
        def filter(self, record: logging.LogRecord) -> bool:
            record.emitted_in = "job"
            return True

    async def entrypoint(ctx: JobContext) -> None:
        for handler in logging.getLogger().handlers:
            handler.addFilter(TagJobLines())
        ctx.log_context_fields = {"job_id": ctx.job.id, "room": ctx.job.room.name, "call_id": CALL_ID}
        logging.getLogger("livekit.agents").warning("marker: livekit.agents")
        logging.getLogger("livekit.plugins.openai").warning("marker: plugin")
        logging.getLogger("convoi.worker").warning("marker: convoi", extra={"status": "active"})
        logging.getLogger("some.library").warning("marker: third-party library")
        logging.getLogger().warning("marker: root logger")
        await asyncio.to_thread(logging.getLogger("convoi.worker").warning, "marker: to_thread")
        t = threading.Thread(target=logging.getLogger("convoi.x").warning, args=("marker: thread",))
        t.start(); t.join()
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("convoi.worker").exception("marker: exception")

        async def on_shutdown(reason: str) -> None:
            logging.getLogger("convoi.worker").warning("marker: shutdown callback")

        ctx.add_shutdown_callback(on_shutdown)
        ctx.shutdown("done")

    async def main() -> None:
        server = AgentServer(num_idle_processes=1, port=0, ws_url="ws://127.0.0.1:9",
                             api_key="key", api_secret="secret")
        server.rtc_session(entrypoint, agent_name="logtest")
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

MARKERS = [
    "marker: livekit.agents",
    "marker: plugin",
    "marker: convoi",
    "marker: third-party library",
    "marker: root logger",
    "marker: to_thread",
    "marker: thread",
    "marker: exception",
    "marker: shutdown callback",
]


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
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = _json_lines(proc.stdout)
    by_message = {str(line.get("message")).split("\n")[0]: line for line in lines}
    missing = [m for m in MARKERS if m not in by_message]
    assert missing == [], proc.stdout[-3000:]

    job_pid = by_message["marker: convoi"]["pid"]
    job_id = by_message["marker: convoi"]["job_id"]
    assert job_id.startswith("mock-job-")
    for marker in MARKERS:
        line = by_message[marker]
        assert line["pid"] == job_pid, line  # emitted in the job process, printed by the main one
        assert (line["job_id"], line["room"], line["call_id"]) == (
            job_id,
            "room-logtest",
            "call_logcontext0001",
        ), line
    assert by_message["marker: convoi"]["status"] == "active"  # the call's own extra is kept
    assert "ValueError: boom" in by_message["marker: exception"]["exc_info"]

    # Not only our markers: every line the job process wrote between the entrypoint setting the
    # fields and the end of its shutdown callbacks (livekit-agents' own lines too) has them.
    # (The main process's lines about the job, e.g. "process exiting", carry job_id and room.)
    job_lines = [line for line in lines if line.get("emitted_in") == "job"]
    first = job_lines.index(by_message[MARKERS[0]])
    last = job_lines.index(by_message["marker: shutdown callback"])
    unmarked = [line for line in job_lines[first : last + 1] if line.get("call_id") is None]
    assert unmarked == []
