"""Definitions belong to accounts (issue 20): the definitions API, versions, the import, and the
definition that travels with the call, in process with a fake LiveKit.

Ownership: another account's agent, squad or phone number is refused exactly as an unknown id
(422 naming the field at create, 404 on the definitions API). Versions: every change is a new
version, the call records the one it was dispatched with, and the dispatch carries it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from convoi.callspec import CallSpecError, parse_callspec, resolve_call
from convoi.callspec.resolve import MAX_RAW_METADATA_BYTES
from convoi.controlplane import create_app
from convoi.controlplane import definitions as store
from convoi.controlplane.cli import main as api_main
from convoi.controlplane.db.models import Call, DefinitionVersion
from convoi.controlplane.definitions_dispatch import seed_if_new
from convoi.controlplane.definitions_import import run_import
from convoi.controlplane.keys import create_key
from convoi.definitions.loader import load_definitions
from convoi.devstack.controlplane_fakes import FakeLiveKitGateway
from tests.helpers import AGENTS_CONFIG, SQUAD, SUPPORT, TRIAGE, UAE_LINE, US_LINE
from tests.test_controlplane_api import assert_error, make_settings

PUBLIC = "/api/v1/public"
AGENTS = f"{PUBLIC}/agents"
CALLS = f"{PUBLIC}/calls"
SHIPPED = load_definitions(AGENTS_CONFIG).definitions
AGENT_BODY: dict[str, Any] = {
    "name": "Front desk",
    "first_message": "Hello {name}, front desk here.",
    "system_prompt": "You are the front desk.",
    "tts": {"provider": "elevenlabs", "voice_id": "rachel"},
}
PHONE_BODY: dict[str, Any] = {"number": "+15550000777", "sip": {"address": "127.0.0.1:5080"}}


class Client:
    """One account's view of the app."""

    def __init__(self, client: TestClient, key: str) -> None:
        self.client = client
        self.key = key

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.key}"}
        return self.client.request(method, path, json=body, headers=headers)

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.call("POST", path, body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created


class Accounts:
    def __init__(self, client: TestClient, gateway: FakeLiveKitGateway, keys: dict[str, str]):
        self.client = client
        self.gateway = gateway
        self.database = client.app.state.convoi.database  # type: ignore[attr-defined]
        self.a, self.b = Client(client, keys["a"]), Client(client, keys["b"])
        self.pk = Client(client, keys["pk"])


def _app(tmp_path: Path, **env: Any) -> tuple[TestClient, FakeLiveKitGateway]:
    gateway = FakeLiveKitGateway()
    return TestClient(create_app(make_settings(tmp_path, **env), gateway)), gateway


@pytest.fixture
def accounts(tmp_path: Path) -> Iterator[Accounts]:
    """Two accounts with no definitions of their own (no shipped definitions seeded)."""
    client, gateway = _app(tmp_path, CONVOI_SEED_DEFINITIONS=False)
    with client:
        with client.app.state.convoi.database.session() as session:  # type: ignore[attr-defined]
            keys = {
                "a": create_key(session, "acct_alpha", "sk_live"),
                "b": create_key(session, "acct_bravo", "sk_live"),
                "pk": create_key(session, "acct_alpha", "pk_live"),
            }
        yield Accounts(client, gateway, keys)


def web_call(agent_id: str) -> dict[str, Any]:
    return {"type": "web", "agent_id": agent_id, "participant_name": "Ada"}


def phone_call(agent_id: str, phone_number_id: str) -> dict[str, Any]:
    return {
        "type": "outbound_phone",
        "agent_id": agent_id,
        "customer": {"number": "+15550001234", "name": "Ada"},
        "phone_number_id": phone_number_id,
    }


# ------------------------------------------------------------------------ ownership


def test_each_account_runs_only_its_own_agent(accounts: Accounts) -> None:
    mine = accounts.a.create(AGENTS, AGENT_BODY)
    theirs = accounts.b.create(AGENTS, {**AGENT_BODY, "name": "Theirs"})
    assert mine["id"].startswith("agt_") and mine["id"] != theirs["id"]
    assert mine["object"] == "agent" and mine["version"] == 1

    assert accounts.a.call("POST", CALLS, web_call(mine["id"])).status_code == 201
    assert accounts.b.call("POST", CALLS, web_call(theirs["id"])).status_code == 201
    refused = assert_error(
        accounts.a.call("POST", CALLS, web_call(theirs["id"])), 422, "invalid_request", "agent_id"
    )
    unknown = assert_error(
        accounts.a.call("POST", CALLS, web_call("agt_nosuchagent0000")), 422, "invalid_request"
    )
    assert refused["message"] == f"agent_id: unknown agent {theirs['id']}"
    assert unknown["message"] == "agent_id: unknown agent agt_nosuchagent0000"
    assert len(accounts.gateway.dispatches) == 2  # nothing dispatched for the refused ones


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_another_accounts_agent_is_404_as_an_unknown_id(accounts: Accounts, method: str) -> None:
    theirs = accounts.b.create(AGENTS, AGENT_BODY)
    body = {"name": "Mine now"} if method == "PATCH" else None
    for agent_id in (theirs["id"], "agt_nosuchagent0000"):
        error = assert_error(
            accounts.a.call(method, f"{AGENTS}/{agent_id}", body), 404, "agent_not_found", "id"
        )
        assert error["message"] == f"no agent {agent_id!r} on this account"
    assert accounts.b.call("GET", f"{AGENTS}/{theirs['id']}").json()["name"] == "Front desk"
    assert [a["id"] for a in accounts.a.call("GET", AGENTS).json()["data"]] == []


def test_another_accounts_phone_number_is_refused_naming_the_field(accounts: Accounts) -> None:
    agent = accounts.a.create(AGENTS, AGENT_BODY)
    mine = accounts.a.create(f"{PUBLIC}/phone-numbers", PHONE_BODY)
    theirs = accounts.b.create(f"{PUBLIC}/phone-numbers", PHONE_BODY)
    assert mine["id"].startswith("phn_")
    ok = accounts.a.call("POST", CALLS, phone_call(agent["id"], mine["id"]))
    assert ok.status_code == 201, ok.text
    error = assert_error(
        accounts.a.call("POST", CALLS, phone_call(agent["id"], theirs["id"])),
        422,
        "invalid_request",
        "phone_number_id",
    )
    assert error["message"] == f"phone_number_id: unknown phone number {theirs['id']}"


def test_another_accounts_knowledge_base_is_unknown_to_an_agent(accounts: Accounts) -> None:
    theirs = accounts.b.create(f"{PUBLIC}/knowledge-bases", {"name": "Their KB"})
    assert theirs["id"].startswith("kb_")
    body = {**AGENT_BODY, "knowledge_base_ids": [theirs["id"]]}
    error = assert_error(
        accounts.a.call("POST", AGENTS, body), 422, "invalid_request", "knowledge_base_ids[0]"
    )
    assert f"unknown knowledge base {theirs['id']}" in error["message"]


def test_publishable_keys_may_not_touch_definitions(accounts: Accounts) -> None:
    assert_error(accounts.pk.call("GET", AGENTS), 403, "permission_denied", "Authorization")
    assert_error(accounts.pk.call("POST", AGENTS, AGENT_BODY), 403, "permission_denied")


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**AGENT_BODY, "tts": {"provider": "elevenlabs"}}, "tts.voice_id"),
        ({**AGENT_BODY, "first_message": "Hi {nmae}"}, "first_message"),
        ({**AGENT_BODY, "llm": {"model": "gpt-unpriced-9"}}, "llm.model"),
        ({**AGENT_BODY, "colour": "blue"}, "colour"),
        ({**AGENT_BODY, "id": "agt_chosenbyme0000"}, "id"),
    ],
    ids=["required", "placeholder", "unpriced", "unknown_key", "id_is_assigned"],
)
def test_invalid_agents_are_422_naming_the_field(
    accounts: Accounts, body: dict[str, Any], field: str
) -> None:
    assert_error(accounts.a.call("POST", AGENTS, body), 422, "invalid_request", field)
    assert accounts.a.call("GET", AGENTS).json()["data"] == []


def test_a_squad_must_name_agents_of_its_own_account(accounts: Accounts) -> None:
    mine = accounts.a.create(AGENTS, AGENT_BODY)
    theirs = accounts.b.create(AGENTS, AGENT_BODY)
    squad = {
        "name": "Desk",
        "start_member": "front",
        "members": {
            "front": {"agent_id": mine["id"], "handoffs": [{"to": "back", "description": "x"}]},
            "back": {"agent_id": theirs["id"]},
        },
    }
    assert_error(
        accounts.a.call("POST", f"{PUBLIC}/squads", squad),
        422,
        "invalid_request",
        "members.back.agent_id",
    )
    squad["members"]["back"]["agent_id"] = mine["id"]
    created = accounts.a.create(f"{PUBLIC}/squads", squad)
    assert created["id"].startswith("sqd_") and created["object"] == "squad"


# ------------------------------------------------------------------------ versions


def test_updates_are_versions_and_the_call_runs_the_current_one(accounts: Accounts) -> None:
    agent = accounts.a.create(AGENTS, AGENT_BODY)
    path = f"{AGENTS}/{agent['id']}"
    first = accounts.a.call("POST", CALLS, web_call(agent["id"])).json()

    updated = accounts.a.call("PATCH", path, {"first_message": "Welcome back, {name}."})
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] == 2
    assert updated.json()["created_at"] == agent["created_at"]
    again = accounts.a.call("PATCH", path, {"first_message": "Welcome back, {name}."})
    assert again.json()["version"] == 2  # unchanged: no new version
    second = accounts.a.call("POST", CALLS, web_call(agent["id"])).json()

    dispatched = [parse_callspec(d.metadata) for d in accounts.gateway.dispatches]
    assert [d.definition.versions for d in dispatched if d.definition] == [
        {agent["id"]: 1},
        {agent["id"]: 2},
    ]
    greetings = [resolve_call(d, SHIPPED).start_agent.greeting for d in dispatched]
    assert greetings == ["Hello Ada, front desk here.", "Welcome back, Ada."]
    with accounts.database.session() as session:
        recorded = {c.id: c.definition_versions for c in session.scalars(select(Call))}
    assert recorded == {first["id"]: {agent["id"]: 1}, second["id"]: {agent["id"]: 2}}


def test_an_invalid_update_keeps_the_current_version(accounts: Accounts) -> None:
    agent = accounts.a.create(AGENTS, AGENT_BODY)
    path = f"{AGENTS}/{agent['id']}"
    assert_error(
        accounts.a.call("PATCH", path, {"limits": {"max_duration_seconds": 1}}),
        422,
        "invalid_request",
        "limits.max_duration_seconds",
    )
    assert accounts.a.call("GET", path).json()["version"] == 1


def test_deleting_an_agent_a_squad_uses_is_a_409(tmp_path: Path) -> None:
    client, _gateway = _app(tmp_path)  # local: the account gets the shipped definitions
    with client:
        with client.app.state.convoi.database.session() as session:  # type: ignore[attr-defined]
            owner = Client(client, create_key(session, "acct_owner", "sk_live"))
        error = assert_error(owner.call("DELETE", f"{AGENTS}/{TRIAGE}"), 409, "agent_in_use", "id")
        assert SQUAD in error["message"]
        assert owner.call("DELETE", f"{PUBLIC}/squads/{SQUAD}").json() == {
            "id": SQUAD,
            "object": "squad",
            "deleted": True,
        }
        assert owner.call("DELETE", f"{AGENTS}/{TRIAGE}").status_code == 200
        assert_error(owner.call("GET", f"{AGENTS}/{TRIAGE}"), 404, "agent_not_found")
        assert_error(
            owner.call("POST", CALLS, phone_call(SQUAD, US_LINE)),
            422,
            "invalid_request",
            "squad_id",
        )


def test_local_accounts_get_the_shipped_definitions_once(tmp_path: Path) -> None:
    client, gateway = _app(tmp_path, CONVOI_DEV_API_KEYS="acct_devdemo=sk_live_" + "a" * 48)
    with client:
        dev = Client(client, "sk_live_" + "a" * 48)
        ids = {a["id"] for a in dev.call("GET", AGENTS).json()["data"]}
        assert ids == set(SHIPPED.agents)
        assert dev.call("POST", CALLS, phone_call(SQUAD, UAE_LINE)).status_code == 201
        dev.call("DELETE", f"{PUBLIC}/squads/{SQUAD}")
        assert_error(dev.call("GET", f"{PUBLIC}/squads/{SQUAD}"), 404)  # not seeded again
        (dispatch,) = gateway.dispatches
        size = len(dispatch.metadata.encode())
        print(f"dispatch metadata of the shipped squad call: {size} bytes")
        assert size < MAX_RAW_METADATA_BYTES // 10


# ------------------------------------------------------------------------ import


def _versions(database: Any) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(DefinitionVersion)) or 0)


def test_import_is_idempotent_and_a_change_is_a_new_version(
    accounts: Accounts, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_import(accounts.database, AGENTS_CONFIG, "acct_alpha") == 0
    count = _versions(accounts.database)
    assert count == sum(SHIPPED.summary().values())
    assert run_import(accounts.database, AGENTS_CONFIG, "acct_alpha") == 0
    assert _versions(accounts.database) == count  # unchanged content: no new version
    assert "0 stored, 9 unchanged" in capsys.readouterr().out

    changed = tmp_path / "config"
    _copy_config(changed)
    support = changed / "agents" / "support.yaml"
    support.write_text(
        support.read_text().replace("first_message:", "first_message: 'Changed!' #"),
        encoding="utf-8",
    )
    assert run_import(accounts.database, changed, "acct_alpha") == 0
    assert _versions(accounts.database) == count + 1
    got = accounts.a.call("GET", f"{AGENTS}/{SUPPORT}").json()
    assert (got["version"], got["first_message"]) == (2, "Changed!")
    assert accounts.b.call("GET", f"{AGENTS}/{SUPPORT}").status_code == 404  # alpha's only


def test_import_refuses_invalid_files_as_check_config_does(
    accounts: Accounts, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "config"
    _copy_config(broken)
    support = broken / "agents" / "support.yaml"
    support.write_text(support.read_text() + "\ncolour: blue\n", encoding="utf-8")
    assert run_import(accounts.database, broken, "acct_alpha") == 1
    assert "config/agents/support.yaml: colour: unknown key" in capsys.readouterr().err
    assert _versions(accounts.database) == 0


def test_cli_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVOI_DATABASE_URL", f"sqlite:///{tmp_path}/cli.sqlite3")
    argv = ["import", str(AGENTS_CONFIG), "--account", "acct_cli"]
    assert api_main(argv) == 0
    assert api_main(argv) == 0
    assert api_main(["import", str(tmp_path / "missing"), "--account", "acct_cli"]) == 1


def _copy_config(target: Path) -> None:
    for path in AGENTS_CONFIG.rglob("*.yaml"):
        dest = target / path.relative_to(AGENTS_CONFIG)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")


# ------------------------------------------------------------------------ the worker's side


def _embedded_spec(**changes: Any) -> dict[str, Any]:
    support = SHIPPED.agents[SUPPORT].model_dump(mode="json")
    kbs = [
        SHIPPED.knowledge_bases[k].model_dump(mode="json") for k in support["knowledge_base_ids"]
    ]
    definition = {"versions": {SUPPORT: 7}, "agents": [support], "knowledge_bases": kbs}
    definition.update(changes)
    return {"call_id": "call_embedded0001", "type": "web", "agent_id": SUPPORT,
            "participant_name": "Ada", "definition": definition}  # fmt: skip


def test_the_worker_prefers_the_embedded_definition_over_its_files() -> None:
    spec = _embedded_spec()
    spec["definition"]["agents"][0]["first_message"] = "Embedded hello, {name}."
    resolved = resolve_call(json.dumps(spec), SHIPPED)
    assert resolved.start_agent.greeting == "Embedded hello, Ada."
    assert resolved.spec.definition is not None and resolved.spec.definition.versions == {
        SUPPORT: 7
    }


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"agents": [{"id": SUPPORT, "name": "x"}]}, "definition.agents[0].system_prompt"),
        ({"knowledge_bases": []}, "definition.agents[0].knowledge_base_ids[0]"),
        ({"agents": []}, "agent_id"),
        ({"squad": "nope"}, "definition.squad"),
    ],
    ids=["invalid_agent", "dangling_reference", "agent_missing", "malformed"],
)
def test_the_worker_refuses_an_invalid_embedded_definition(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(CallSpecError) as caught:
        resolve_call(json.dumps(_embedded_spec(**changes)), SHIPPED)
    assert caught.value.field == field
    assert caught.value.reason == "invalid_request"


def test_store_current_ignores_other_accounts(accounts: Accounts) -> None:
    agent = accounts.b.create(AGENTS, AGENT_BODY)
    with accounts.database.session() as session:
        assert store.current(session, "acct_alpha", "agent", agent["id"]) is None
        found = store.current(session, "acct_bravo", "agent", agent["id"])
    assert found is not None and found.version == 1


def test_openapi_documents_the_definitions_api(accounts: Accounts) -> None:
    document = accounts.client.get("/openapi.json").json()
    for path in ("agents", "squads", "phone-numbers", "knowledge-bases"):
        assert {"get", "post"} <= set(document["paths"][f"{PUBLIC}/{path}"])
        assert {"get", "patch", "delete"} <= set(document["paths"][f"{PUBLIC}/{path}/{{id}}"])
    schemas = document["components"]["schemas"]
    assert "tts" in schemas["AgentCreate"]["required"] and "id" not in schemas["AgentCreate"].get(
        "required", []
    )
    assert {"object", "version", "created_at", "updated_at"} <= set(
        schemas["AgentObject"]["properties"]
    )
    delete = document["paths"][f"{AGENTS}/{{id}}"]["delete"]
    assert {"200", "404", "409"} <= set(delete["responses"])


def test_concurrent_first_requests_seed_an_account_once(accounts: Accounts) -> None:
    with ThreadPoolExecutor(4) as pool:
        seeded = list(
            pool.map(lambda _: seed_if_new(accounts.database, "acct_race", SHIPPED), range(4))
        )
    assert seeded.count(True) == 1
    assert _versions(accounts.database) == sum(SHIPPED.summary().values())


def test_a_call_too_large_to_dispatch_is_refused_naming_the_workforce(accounts: Accounts) -> None:
    big = {**AGENT_BODY, "system_prompt": "\N{SLIGHTLY SMILING FACE}" * 32_000}  # 128 KB as UTF-8
    members = {f"m{i}": {"agent_id": accounts.a.create(AGENTS, big)["id"]} for i in range(3)}
    phone = accounts.a.create(f"{PUBLIC}/phone-numbers", PHONE_BODY)
    squad = accounts.a.create(
        f"{PUBLIC}/squads", {"name": "Big", "start_member": "m0", "members": members}
    )
    error = assert_error(
        accounts.a.call("POST", CALLS, phone_call(squad["id"], phone["id"])),
        422,
        "invalid_request",
        "squad_id",
    )
    assert f"over the {MAX_RAW_METADATA_BYTES}" in error["message"]
    assert accounts.gateway.dispatches == []
    del members["m2"]  # two of them fit (256 KiB)
    accounts.a.call("PATCH", f"{PUBLIC}/squads/{squad['id']}", {"members": members})
    ok = accounts.a.call("POST", CALLS, phone_call(squad["id"], phone["id"]))
    assert ok.status_code == 201, ok.text
