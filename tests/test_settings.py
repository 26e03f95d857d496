"""Settings: every environment variable the worker reads is documented in the README."""

from __future__ import annotations

from pathlib import Path

from convoi.controlplane import ControlPlaneSettings
from convoi.knowledge.settings import KnowledgeSettings
from convoi.reporting.delivery import DeliverySettings
from convoi.settings import WorkerSettings
from convoi.worker.metrics import MetricsSettings


def test_every_worker_setting_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    variables = [
        f.alias
        for model in (
            WorkerSettings,
            DeliverySettings,
            MetricsSettings,
            ControlPlaneSettings,
            KnowledgeSettings,
        )
        for f in model.model_fields.values()
    ]
    assert variables and all(variables)
    undocumented = [v for v in variables if f"| `{v}` |" not in readme]
    assert undocumented == []


def test_secrets_do_not_appear_in_the_settings_repr() -> None:
    settings = WorkerSettings(
        OPENAI_API_KEY="sk-live-very-secret", LIVEKIT_API_SECRET="lk-secret-x"
    )
    assert "sk-live-very-secret" not in repr(settings)
    assert "lk-secret-x" not in repr(settings)
