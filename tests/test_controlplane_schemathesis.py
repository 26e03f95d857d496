"""Property-based API tests: schemathesis drives the public endpoints from the app's OpenAPI.

In process (ASGI), fake LiveKit, a valid ``sk_live_`` key on every request. The assertion is
"no 5xx": whatever schemathesis sends (valid bodies from the schema, and broken ones), the API
answers with a 2xx or a 4xx and the documented error body, never a server error. Bounded: a few
dozen examples per operation, no deadline.

The schema is loaded at import (``schemathesis.pytest.from_fixture`` relies on a pytest internal
that pytest 9.2 removed), so the app is built here with its SQLite file in a temporary folder;
the fixture migrates it and mints the key.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from convoi.controlplane import ControlPlaneSettings, create_app
from convoi.controlplane.db import upgrade_to_head
from convoi.controlplane.keys import create_key
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway

REPO = Path(__file__).resolve().parents[1]
_FOLDER = tempfile.mkdtemp(prefix="convoi-schemathesis-")
atexit.register(shutil.rmtree, _FOLDER, ignore_errors=True)

app = create_app(
    ControlPlaneSettings(
        CONVOI_DATABASE_URL=f"sqlite:///{_FOLDER}/controlplane.sqlite3",
        CONVOI_CONFIG_DIR=REPO / "agents_config",
        CONVOI_EVENTS_SECRET="schemathesis-secret",
    ),
    FakeLiveKitGateway(),
)
schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex="^/api/v1/public/")


@pytest.fixture(scope="module")
def api_key() -> str:
    """A secret key of the test account (the database migrated first)."""
    database = app.state.convoi.database
    upgrade_to_head(database)
    with database.session() as session:
        return create_key(session, "acct_fuzz", "sk_live")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_public_endpoints_never_answer_5xx(case: Any, api_key: str) -> None:
    response = case.call(headers={"Authorization": f"Bearer {api_key}"})
    case.validate_response(response, checks=[not_a_server_error])
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "field"}, error
