"""docs/configuration.md is generated from the models and stays in sync with them."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

from convoi.docs import config_reference
from convoi.docs.config_reference import COMMAND, render
from convoi.settings import WorkerSettings

DOC = Path(__file__).parent.parent / "docs" / "configuration.md"


def test_the_committed_reference_matches_the_models() -> None:
    expected = render()
    committed = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            "docs/configuration.md (committed)",
            "docs/configuration.md (generated)",
            n=1,
        )
    )
    assert committed == expected, (
        f"docs/configuration.md is out of date with the models; regenerate it with\n\n"
        f"    {COMMAND}\n\nand commit the result. Difference:\n{diff[:4000]}"
    )


def test_the_module_prints_the_reference() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "convoi.docs.config_reference"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert proc.stdout == render()


def test_every_variable_and_definition_field_is_listed() -> None:
    text = render()
    for _, settings in config_reference.SETTINGS:
        for info in settings.model_fields.values():
            assert f"| `{info.alias}` |" in text
    for _, model in config_reference.DEFINITIONS:
        assert f"### {model.__name__}\n" in text
        for name in model.model_fields:
            assert f"| `{name}` |" in text


def test_a_field_shows_type_default_constraints_and_description() -> None:
    text = render()
    info = WorkerSettings.model_fields["health_port"]
    assert info.alias == "CONVOI_HEALTH_PORT"
    row = next(line for line in text.splitlines() if line.startswith("| `CONVOI_HEALTH_PORT` |"))
    assert row.startswith("| `CONVOI_HEALTH_PORT` | integer | `8081` | ≥ 0, ≤ 65535 | Port of")
    temperature = next(line for line in text.splitlines() if line.startswith("| `temperature` |"))
    assert "number \\| null" in temperature and "≤ 2.0" in temperature and "strict" in temperature
    assert "| `id` | [AgentId](#value-formats) | **required** |" in text
    assert "| `limits` | [CallLimits](#calllimits) | all defaults |" in text
