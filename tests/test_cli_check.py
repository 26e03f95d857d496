"""``convoi-worker check-config`` and ``check-call``, run as real subprocesses.

Each run starts a Python that imports livekit-agents (~2-3 s), so every invocation this module needs
is declared once in :data:`RUNS` and the ``runs`` fixture starts them all concurrently; the tests
then assert on the finished runs by name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from convoi.definitions.loader import load_definitions
from tests.fixtures.seed_examples import (
    OUTBOUND_FULL,
    SEED_EXAMPLES,
    WORKFORCE_IN_AGENT_ID,
    WORKFORCE_IN_SQUAD_ID,
    SeedExample,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "agents_config"
SECRETS = {
    "OPENAI_API_KEY": "sk-secret-123",
    "DEEPGRAM_API_KEY": "dg-secret-456",
    "ELEVEN_API_KEY": "el-secret-789",
}


@dataclass(frozen=True)
class Workspace:
    """Files the runs read: seed example CallSpecs and a broken copy of the definitions."""

    root: Path

    @property
    def calls(self) -> Path:
        return self.root / "calls"

    @property
    def broken_config(self) -> Path:
        return self.root / "broken" / "agents_config"

    def call_file(self, name: str) -> Path:
        return self.calls / f"{name}.json"


@dataclass(frozen=True)
class Run:
    """A finished ``convoi-worker`` invocation."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (
            f"convoi-worker {' '.join(self.args)} → exit {self.code}\n"
            f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"
        )


def _prepare(root: Path) -> Workspace:
    ws = Workspace(root)
    ws.calls.mkdir(parents=True)
    for example in SEED_EXAMPLES:
        ws.call_file(example.name).write_text(json.dumps(example.body(), indent=2), "utf-8")
    ws.call_file("seed_placeholder_number").write_text(
        json.dumps(OUTBOUND_FULL.body(substitute=False)), "utf-8"
    )
    shutil.copytree(SHIPPED, ws.broken_config)
    support = ws.broken_config / "agents" / "support.yaml"
    data = yaml.safe_load(support.read_text("utf-8"))
    data["tts"]["pitch"] = 1.2  # not an ElevenLabs option
    support.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    return ws


# name → arguments, built from the workspace
RUNS: dict[str, Callable[[Workspace], list[str]]] = {
    # no --config: the default folder, agents_config/ in the working directory (the repo)
    "config_shipped": lambda ws: ["check-config"],
    "config_broken": lambda ws: ["check-config", "--config", str(ws.broken_config)],
    **{
        f"call_{e.name}": (
            lambda ws, name=e.name: [
                "check-call",
                str(ws.call_file(name)),
                "--config",
                str(SHIPPED),
            ]
        )
        for e in SEED_EXAMPLES
    },
    "call_workforce_json": lambda ws: [
        "check-call",
        str(ws.call_file(WORKFORCE_IN_AGENT_ID.name)),
        "--config",
        str(SHIPPED),
        "--json",
    ],
    "call_invalid_json": lambda ws: [
        "check-call",
        str(ws.call_file("seed_placeholder_number")),
        "--config",
        str(SHIPPED),
        "--json",
    ],
    "call_missing_file": lambda ws: [
        "check-call",
        str(ws.calls / "does_not_exist.json"),
        "--config",
        str(SHIPPED),
    ],
    "call_with_broken_config": lambda ws: [
        "check-call",
        str(ws.call_file(WORKFORCE_IN_AGENT_ID.name)),
        "--config",
        str(ws.broken_config),
    ],
}


def _environment() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONVOI_", "OPENAI_", "DEEPGRAM_", "ELEVEN_"))
    }
    return {**env, **SECRETS, "PYTHONIOENCODING": "utf-8"}


def _run(args: list[str]) -> Run:
    done = subprocess.run(
        [sys.executable, "-m", "convoi.worker.cli", *args],
        cwd=REPO,
        env=_environment(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
        check=False,
    )
    return Run(tuple(args), done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    ws = _prepare(tmp_path_factory.mktemp("cli"))
    commands = {name: build(ws) for name, build in RUNS.items()}
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        futures = {name: pool.submit(_run, args) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


# --- check-config --------------------------------------------------------------------------------


def test_check_config_on_shipped_definitions_exits_0_with_a_summary(runs: dict[str, Run]) -> None:
    run = runs["config_shipped"]
    assert run.code == 0, run
    defs = load_definitions(SHIPPED).definitions
    assert "Definitions in agents_config: OK" in run.stdout
    for object_id in [*defs.agents, *defs.squads, *defs.phone_numbers, *defs.knowledge_bases]:
        assert object_id in run.stdout, object_id
    assert "start=triage" in run.stdout
    assert "Prices (USD):" in run.stdout
    assert re.search(
        r"^llm openai/gpt-4o-mini +in 0\.15 / cached 0\.075 / out 0\.60", run.stdout, re.M
    )
    assert re.search(r"^telephony +0\.013 per minute", run.stdout, re.M)
    assert "4 agents, 1 squads, 2 phone_numbers, 2 knowledge_bases" in run.stdout
    assert "warning" not in run.stderr


def test_check_config_on_a_broken_copy_exits_1_naming_file_field_problem(
    runs: dict[str, Run],
) -> None:
    run = runs["config_broken"]
    assert run.code == 1, run
    assert re.search(
        r"^agents_config/agents/support\.yaml: tts\.pitch: unknown key; allowed here: voice_id",
        run.stderr,
        re.M,
    ), run
    assert re.search(r"^\d+ problem\(s\) in .*/broken/agents_config$", run.stderr, re.M), run
    assert run.stdout == ""


# --- check-call ----------------------------------------------------------------------------------


@pytest.mark.parametrize("example", SEED_EXAMPLES, ids=lambda e: e.name)
def test_check_call_on_each_seed_example_shows_agent_and_greeting(
    runs: dict[str, Run], example: SeedExample
) -> None:
    run = runs[f"call_{example.name}"]
    assert run.code == 0, run
    body = example.body()
    assert f"Call {example.call_id} ({body['type']}): valid" in run.stdout
    if example in (WORKFORCE_IN_AGENT_ID, WORKFORCE_IN_SQUAD_ID):
        workforce = "workforce sqd_3fa85f6457174562b3fc2c963f66afa6 (Customer care)"
        assert f"{workforce}, starts with triage" in run.stdout
        assert "[triage] agt_1f2e3d4c5b6a47988a7b6c5d4e3f2a1b Triage" in run.stdout
        assert "[billing] " in run.stdout and "[support] " in run.stdout
    else:
        assert "[agent] agt_b88d642dd68747f28305c428b209xxxx Support" in run.stdout
    assert f"greeting (first_message): {example.expected_greeting!r}" in run.stdout
    if body["type"] == "outbound_phone":
        assert f"dials {body['customer']['number']} from +" in run.stdout


def test_check_call_workforce_greets_ahmed(runs: dict[str, Run]) -> None:
    run = runs[f"call_{WORKFORCE_IN_AGENT_ID.name}"]
    assert "'Hi Ahmed, this is Convoi." in run.stdout
    line = "dials +971501234567 from +971800000002 (phn_9b2c4e6a8d0f42b1a3c5e7f9b1d3f5a7"
    assert line in run.stdout


def test_check_call_json_has_greeting_and_providers(runs: dict[str, Run]) -> None:
    run = runs["call_workforce_json"]
    assert run.code == 0, run
    report = json.loads(run.stdout)
    assert report["valid"] is True
    assert (report["agent_id"], report["squad_id"]) == (
        None,
        WORKFORCE_IN_AGENT_ID.body()["agent_id"],
    )
    assert report["start_member"] == "triage"
    assert report["contact_name"] == "Ahmed"
    triage = report["members"]["triage"]
    assert triage["greeting"] == WORKFORCE_IN_AGENT_ID.expected_greeting
    assert set(triage["providers"]) == {"llm", "stt", "tts"}
    assert triage["providers"]["llm"]["provider"] == "openai"
    assert triage["providers"]["tts"]["voice_id"] == "josh"
    for kind in ("llm", "stt", "tts"):
        assert triage["providers"][kind]["api_key"] == "set", kind
    assert report["members"]["billing"]["greeting"].startswith("Thanks Ahmed, ")


@pytest.mark.parametrize("name", list(RUNS))
def test_no_run_prints_a_secret(runs: dict[str, Run], name: str) -> None:
    run = runs[name]
    for secret in SECRETS.values():
        assert secret not in run.stdout and secret not in run.stderr, f"{secret} leaked\n{run}"


def test_invalid_call_exits_2_and_names_the_field(runs: dict[str, Run]) -> None:
    """The seed's "+0000000" as written; --json adds a report on stdout, stderr is the same."""
    run = runs["call_invalid_json"]
    assert run.code == 2, run
    assert re.search(r"^invalid call: customer\.number: must be an E\.164 number", run.stderr, re.M)
    report = json.loads(run.stdout)
    assert report["valid"] is False
    assert report["reason"] == "invalid_request"
    assert report["field"] == "customer.number"
    assert "E.164" in report["problem"]


def test_missing_call_file_exits_2(runs: dict[str, Run]) -> None:
    run = runs["call_missing_file"]
    assert run.code == 2, run
    assert "cannot read " in run.stderr and "does_not_exist.json" in run.stderr


def test_check_call_with_invalid_definitions_exits_1(runs: dict[str, Run]) -> None:
    run = runs["call_with_broken_config"]
    assert run.code == 1, run
    assert "agents/support.yaml: tts.pitch: unknown key" in run.stderr
