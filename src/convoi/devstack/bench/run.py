"""Orchestration of the side-by-side benchmark (see :mod:`convoi.devstack.bench`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from convoi.callspec import resolve_call
from convoi.definitions.loader import load_definitions
from convoi.devstack import install
from convoi.devstack.bench.measures import Measures, call_measures, merge, percentile
from convoi.devstack.bench.sampler import TreeSampler, _tree, tree_pss_mb
from convoi.devstack.bench.sets import pausing_scenario, utterances_for
from convoi.devstack.caller.pauses import Utterance, utterance_to_json
from convoi.devstack.demo import AGENT_ID, SCENARIO, UTTERANCES
from convoi.devstack.harness import EmulatorsProcess, WorkerProcess
from convoi.devstack.livekit_server import LiveKitServer, ServerConfig
from convoi.worker.turn_timing import EVENTS_ENV

__all__ = ["BENCH_SERVER", "EMULATORS_PORT", "Latency", "Side", "Stack", "parse_env", "side_env"]

BENCH_SERVER: Final = ServerConfig(port=7940, rtc_tcp_port=7941, rtc_udp_port=7942)
"""The benchmark's livekit-server (clear of the tests' 7880-7882/7900-7905 and bench_sip's 7920s)."""
EMULATORS_PORT: Final = 7945
IDLE_TIMEOUT_S: Final = 90.0
PAUSE_SETTLE_S: Final = 3.5
"""After a pausing turn's reply (or after its real end of speech, when the agent cut in), agent
speech starting within this long (plus the injected latencies) is waited for before the next turn:
a reply to the whole utterance after one to a fragment. It covers a turn held to the endpointing's
maximum delay (livekit-agents: 3 s, 2.5 s with a streaming turn detector) plus the reply's way."""


@dataclass(frozen=True)
class Latency:
    """Injected provider latency (ms)."""

    stt_final_ms: int = 0
    llm_ttft_ms: int = 0
    tts_ttfb_ms: int = 0

    @classmethod
    def parse(cls, text: str) -> Latency:
        """``"250/400/150"`` → STT final 250, LLM TTFT 400, TTS TTFB 150."""
        stt, llm, tts = (int(v) for v in text.split("/"))
        return cls(stt, llm, tts)

    def total_s(self) -> float:
        """The injected latencies added up (s)."""
        return (self.stt_final_ms + self.llm_ttft_ms + self.tts_ttfb_ms) / 1000

    def scenario(self) -> dict[str, int]:
        """The scenario's ``latency`` block."""
        return {
            "stt_final_ms": self.stt_final_ms,
            "llm_ttft_ms": self.llm_ttft_ms,
            "tts_ttfb_ms": self.tts_ttfb_ms,
        }

    def label(self) -> str:
        """How the tables name it."""
        if not (self.stt_final_ms or self.llm_ttft_ms or self.tts_ttfb_ms):
            return "instant providers"
        return f"STT final {self.stt_final_ms} ms, LLM TTFT {self.llm_ttft_ms} ms, TTS TTFB {self.tts_ttfb_ms} ms injected"


@dataclass
class Side:
    """One worker under test."""

    label: str
    worker: WorkerProcess
    events: Path
    metadata: Any  # Callable[[str], dict]: the dispatch metadata of a call (by call id)
    baseline_procs: int = 0
    idle_pss: float = 0.0

    @property
    def pid(self) -> int:
        assert self.worker.proc is not None
        return self.worker.proc.pid

    def lines(self) -> list[dict[str, Any]]:
        """The worker's ``turn_timing`` lines."""
        try:
            text = self.events.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.endswith("}")]

    def eou(self, room: str) -> list[dict[str, Any]]:
        """The room's end-of-turn lines."""
        return [e for e in self.lines() if e["room"] == room and e["event"] == "eou"]

    def job_pid(self, room: str) -> int | None:
        found = [e for e in self.lines() if e["room"] == room and e["event"] == "session"]
        return int(found[0]["pid"]) if found else None

    def wait_until_idle(self) -> None:
        """Until the previous calls' job processes are gone and the warm pool is back (at least
        as many processes as when the worker was first idle: convoi's pool may keep more warm
        after a burst, see convoi.worker.warm_pool)."""
        deadline = time.monotonic() + IDLE_TIMEOUT_S
        while not self._idle():
            if time.monotonic() > deadline:
                print(f"{self.label}: not idle after {IDLE_TIMEOUT_S:g}s", file=sys.stderr)
                return
            time.sleep(0.1)  # polling /proc: nothing to wait on

    def _idle(self) -> bool:
        tree = {p.pid for p in _tree(self.pid)}
        jobs = {int(e["pid"]) for e in self.lines() if e["event"] == "session"}
        return len(tree) >= self.baseline_procs and not tree & jobs

    def settle(self) -> None:
        """First idle: one warm job process initialised; remember the tree's size and PSS."""
        self.worker.wait_for_record("process initialized", IDLE_TIMEOUT_S)
        time.sleep(1.0)  # let the fresh process finish its imports before it is measured
        self.baseline_procs = len(_tree(self.pid))
        self.idle_pss = tree_pss_mb(self.pid)


@dataclass
class Stack:
    """livekit-server, the emulators and the two workers, in ``work``."""

    work: Path
    idle_processes: int = 1
    caller_cpu: int | None = None
    ours_env: dict[str, str] = field(default_factory=dict)
    """Extra environment of convoi's worker only (``--ours-env``: experiments side by side)."""
    server: LiveKitServer | None = None
    emulators: EmulatorsProcess | None = None
    sides: list[Side] = field(default_factory=list)
    failures: int = 0
    raw: list[dict[str, Any]] = field(default_factory=list)
    """Every call's result, its caller report trimmed of transcripts and events (for --json)."""
    """Calls whose caller reported an error (a step timed out)."""

    def start(self) -> None:
        self.server = LiveKitServer(BENCH_SERVER, workdir=self.work / "livekit", reuse=False)
        self.server.start()
        self.emulators = EmulatorsProcess(self.work / "emulators.log", port=EMULATORS_PORT)
        self.emulators.start_and_wait()
        config = install.repo_root() / "agents_config"
        env = {
            "LIVEKIT_URL": self.server.url,
            "LIVEKIT_API_KEY": self.server.api_key,
            "LIVEKIT_API_SECRET": self.server.api_secret,
            "CONVOI_CONFIG_DIR": str(config),
            "CONVOI_NUM_IDLE_PROCESSES": str(self.idle_processes),
            "CONVOI_LOAD_THRESHOLD": "inf",
            "CONVOI_OUTBOX_PATH": str(self.work / "outbox.sqlite3"),
            **self.emulators.provider_env(),
        }
        defs = load_definitions(config).definitions
        tag = uuid.uuid4().hex[:6]

        def ours_meta(call_id: str) -> dict[str, Any]:
            return {"call_id": call_id, "type": "web", "agent_id": AGENT_ID}

        def stock_meta(call_id: str) -> dict[str, Any]:
            greeting = resolve_call(ours_meta(call_id), defs).start_agent.greeting or ""
            return {"agent_id": AGENT_ID, "greeting": greeting}

        for label, meta, module in (
            ("ours", ours_meta, None),
            ("stock", stock_meta, "convoi.devstack.bench.stock_agent"),
        ):
            events = self.work / f"events-{label}.jsonl"
            worker = WorkerProcess(
                self.work / f"worker-{label}.log",
                side_env(env, label, events, self.ours_env),
                agent_name=f"convoi-bench-{label}-{tag}",
            )
            if module is not None:
                worker.argv = [sys.executable, "-m", module, "start"]
            self.sides.append(Side(label, worker, events, meta))
        for side in self.sides:
            side.worker.start_and_wait()
        for side in self.sides:
            side.settle()

    def stop(self) -> None:
        for side in reversed(self.sides):
            side.worker.stop()
        if self.emulators is not None:
            self.emulators.stop()
        if self.server is not None:
            self.server.stop()

    def load(
        self, latency: Latency, *, turns: int, caller_set: str = "plain", call_index: int = 0
    ) -> list[Utterance]:
        """Load the emulators' scenario for call ``call_index`` of ``caller_set`` with
        ``latency``; the caller's utterances (``turns`` of them). ``plain``: the demo scenario;
        ``pausing``: :func:`~convoi.devstack.bench.sets.pausing_scenario`."""
        assert self.emulators is not None
        utterances = utterances_for(caller_set, call_index, turns, UTTERANCES)
        if caller_set == "plain":
            scenario = yaml.safe_load(SCENARIO.read_text())
            scenario["latency"] = latency.scenario()
        else:
            scenario = pausing_scenario(utterances, latency.scenario())
        self.emulators.load_scenario(scenario)
        return utterances

    def callers(
        self,
        side: Side,
        n: int,
        utterances: list[Utterance],
        tag: str,
        *,
        caller_set: str = "plain",
        settle_s: float = PAUSE_SETTLE_S,
    ) -> list[dict[str, Any]]:
        """``n`` simultaneous calls to ``side`` by the callers' process; their results.
        ``settle_s``: how long a pausing caller waits for more agent speech after a reply."""
        assert self.server is not None
        calls = []
        for i in range(n):
            call_id = f"call_bench{uuid.uuid4().hex[:16]}"
            calls.append(
                {
                    "agent_name": side.worker.agent_name,
                    "room": f"bench-{side.label}-{uuid.uuid4().hex[:8]}",
                    "metadata": side.metadata(call_id),
                    "label": f"{side.label} {tag}{'' if n == 1 else f' #{i + 1}'}",
                }
            )
        batch = {
            "url": self.server.url,
            "api_key": self.server.api_key,
            "api_secret": self.server.api_secret,
            "utterances": [utterance_to_json(u) for u in utterances],
            "max_wait_s": 90,
            "pause_settle_s": settle_s,
            "calls": calls,
        }
        argv = [sys.executable, "-m", "convoi.devstack.bench.callers"]
        if self.caller_cpu is not None:
            argv += ["--cpu", str(self.caller_cpu)]
        done = subprocess.run(
            argv, input=json.dumps(batch).encode(), stdout=subprocess.PIPE, check=True
        )
        results: list[dict[str, Any]] = json.loads(done.stdout)
        self.failures += sum(1 for r in results if r["report"]["errors"])
        drop = ("transcripts", "events", "segments")
        self.raw += [
            {
                **r,
                "side": side.label,
                "callers": caller_set,
                "report": {k: v for k, v in r["report"].items() if k not in drop},
            }
            for r in results
        ]
        return results


def side_env(
    base: dict[str, str], label: str, events: Path, ours_env: dict[str, str]
) -> dict[str, str]:
    """The environment of one side's worker: ``base``, its events file, and for ``ours`` the
    ``--ours-env`` extras (which win)."""
    extra = ours_env if label == "ours" else {}
    return {**base, EVENTS_ENV: str(events), **extra}


def parse_env(text: str) -> tuple[str, str]:
    """``"KEY=VALUE"`` → ``("KEY", "VALUE")`` (the value may hold ``=``; the key may not be empty)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or key != key.strip():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def caller_core() -> int | None:
    """The core the callers are pinned to: the last one, when there are at least two."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return cores[-1] if len(cores) >= 2 else None


def sequential(
    stack: Stack,
    latency: Latency,
    calls: int,
    turns: int,
    memory: dict[str, Measures],
    caller_set: str = "plain",
) -> dict[str, Measures]:
    """``calls`` calls per side, one at a time, interleaved (ours, stock, ours, …), by callers of
    ``caller_set`` (call ``i`` of each side says the same)."""
    assert stack.emulators is not None
    out: dict[str, Measures] = {s.label: {} for s in stack.sides}
    for i in range(1, calls + 1):
        for side in stack.sides:
            side.wait_until_idle()
            utterances = stack.load(latency, turns=turns, caller_set=caller_set, call_index=i - 1)
            with TreeSampler(side.pid) as sampler:
                (result,) = stack.callers(
                    side,
                    1,
                    utterances,
                    f"{caller_set} call {i}/{calls}",
                    caller_set=caller_set,
                    settle_s=PAUSE_SETTLE_S + latency.total_s(),
                )
            room = result["room"]
            eou = side.eou(room)
            decided = [e["at"] - e["on_user_turn_completed_delay"] for e in eou]
            merge(out[side.label], call_measures(result, stack.emulators.requests(), decided))
            hooks = [e["on_user_turn_completed_delay"] * 1000 for e in eou]
            merge(out[side.label], {"hook": hooks})
            pid = side.job_pid(room)
            if pid is not None and pid in sampler.peak_pss:
                merge(
                    memory[side.label],
                    {"job_pss": [sampler.peak_pss[pid]], "job_uss": [sampler.peak_uss[pid]]},
                )
    return out


def level(stack: Stack, side: Side, n: int, turns: int) -> dict[str, Any]:
    """``n`` simultaneous calls to ``side``: latency, CPU per call-minute, memory."""
    side.wait_until_idle()
    idle = tree_pss_mb(side.pid)
    utterances = stack.load(Latency(), turns=turns)
    with TreeSampler(side.pid) as sampler:
        results = stack.callers(side, n, utterances, f"x{n}")
    measures: Measures = {}
    minutes = 0.0
    for r in results:
        merge(measures, call_measures(r))
        joined, left = r["report"].get("joined"), r["report"].get("left")
        if joined and left:
            minutes += (left["wall"] - joined["wall"]) / 60
    jobs = [side.job_pid(r["room"]) for r in results]
    job_pss = [sampler.peak_pss[p] for p in jobs if p is not None and p in sampler.peak_pss]
    return {
        "side": side.label,
        "n": n,
        "failed": sum(1 for r in results if r["report"]["errors"]),
        "reply_p50": percentile(measures["reply"], 0.5) if measures.get("reply") else None,
        "reply_p95": percentile(measures["reply"], 0.95) if measures.get("reply") else None,
        "join_p95": percentile(measures["join"], 0.95) if measures.get("join") else None,
        "cpu_s_per_call_min": sampler.cpu_seconds / minutes if minutes else None,
        "cpu_s": sampler.cpu_seconds,
        "call_minutes": minutes,
        "pss_per_call": (sampler.peak_tree_pss - idle) / n,
        "job_pss": percentile(job_pss, 0.5) if job_pss else None,
        "peak_tree_pss": sampler.peak_tree_pss,
    }
