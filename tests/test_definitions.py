"""Definitions in agents_config/: the shipped set loads, and each kind of mistake is reported.

Every broken case works on a copy of the shipped folder with exactly one thing broken, and checks
that :func:`load_definitions` raises :class:`ConfigError` with a ``file: field: problem`` line a
person can act on.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from convoi.definitions.loader import ConfigError, ConfigIssue, LoadResult, load_definitions
from tests.helpers import AGENTS_CONFIG as SHIPPED
from tests.helpers import SQUAD, SUPPORT

# --- the shipped definitions ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> LoadResult:
    return load_definitions(SHIPPED)


def test_shipped_config_has_at_least_three_agents_with_distinct_voices(shipped: LoadResult) -> None:
    agents = shipped.definitions.agents
    assert len(agents) >= 3
    voices = [a.tts.voice_id for a in agents.values()]
    assert len(set(voices)) == len(voices), f"two agents share a voice: {voices}"
    assert SUPPORT in agents, "the seed's agent id must exist"


def test_shipped_squad_starts_with_a_member_that_hands_off_to_billing_and_support(
    shipped: LoadResult,
) -> None:
    defs = shipped.definitions
    assert list(defs.squads) == [SQUAD]
    squad = defs.squads[SQUAD]
    start = squad.members[squad.start_member]
    assert {h.to for h in start.handoffs} == {"billing", "support"}
    assert all(h.description.strip() for h in start.handoffs)
    for key, member in squad.members.items():
        assert member.agent_id in defs.agents, key


def test_shipped_phone_numbers_have_sip_settings(shipped: LoadResult) -> None:
    numbers = shipped.definitions.phone_numbers
    assert set(numbers) == {
        "phn_c38155f043624745a66d2e28c185xxxx",
        "phn_9b2c4e6a8d0f42b1a3c5e7f9b1d3f5a7",
    }
    for number in numbers.values():
        assert number.number.startswith("+")
        assert number.sip.address
        assert number.sip.transport in {"udp", "tcp", "tls"}
    uae = numbers["phn_9b2c4e6a8d0f42b1a3c5e7f9b1d3f5a7"]
    # a trunk password is referenced by environment variable name, never written in the file
    assert uae.sip.auth_password_env == "CONVOI_TRUNK_UAE_PASSWORD"


def test_shipped_price_list_prices_every_model_the_agents_use(shipped: LoadResult) -> None:
    prices = shipped.definitions.prices
    assert prices.currency == "USD"
    assert prices.llm["openai"]["gpt-4o-mini"].input_per_1m == Decimal("0.15")
    assert prices.telephony.per_minute == Decimal("0.013")
    for agent in shipped.definitions.agents.values():
        assert prices.has_llm(agent.llm.provider, agent.llm.model), agent.id
        assert prices.has_stt(agent.stt.provider, agent.stt.model), agent.id
        assert prices.has_tts(agent.tts.provider, agent.tts.model), agent.id


def test_shipped_config_loads_without_warnings_and_knows_where_each_id_came_from(
    shipped: LoadResult,
) -> None:
    assert shipped.warnings == []
    assert shipped.sources[SUPPORT] == "agents_config/agents/support.yaml"
    assert shipped.sources[SQUAD] == "agents_config/squads/customer_care.yaml"
    assert shipped.sources["prices"] == "agents_config/prices.yaml"


# --- a broken copy -------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def edit_yaml(path: Path, change: Callable[[Any], None]) -> None:
    """Load ``path``, let ``change`` modify the data in place, write it back."""
    data = load_yaml(path)
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def copy_config(tmp_path: Path) -> Path:
    """A fresh copy of the shipped definitions at ``tmp_path/agents_config``."""
    return Path(shutil.copytree(SHIPPED, tmp_path / "agents_config"))


def config_issues(config: Path) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load_definitions(config)
    assert info.value.issues, "ConfigError without issues"
    return info.value.issues


@dataclass(frozen=True)
class Breakage:
    """One thing broken in the copy, and the ``file: field: problem`` line that must result."""

    breaks: Callable[[Path], None]
    expected: str


def _set(file: str, *path: str | int, value: Any) -> Callable[[Path], None]:
    def breaks(config: Path) -> None:
        def change(data: Any) -> None:
            node = data
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value

        edit_yaml(config / file, change)

    return breaks


def _delete(file: str, *path: str | int) -> Callable[[Path], None]:
    def breaks(config: Path) -> None:
        def change(data: Any) -> None:
            node = data
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]

        edit_yaml(config / file, change)

    return breaks


def _write(file: str, text: str) -> Callable[[Path], None]:
    def breaks(config: Path) -> None:
        (config / file).write_text(text, encoding="utf-8")

    return breaks


def _copy(src: str, dst: str) -> Callable[[Path], None]:
    def breaks(config: Path) -> None:
        shutil.copy(config / src, config / dst)

    return breaks


def _remove(file: str) -> Callable[[Path], None]:
    def breaks(config: Path) -> None:
        target = config / file
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()

    return breaks


def _case(case_id: str, breaks: Callable[[Path], None], expected: str, **kw: Any) -> Any:
    return pytest.param(Breakage(breaks, expected), id=case_id, **kw)


BREAKAGES = [
    _case(
        "unknown_key_in_agent",
        _set("agents/support.yaml", "voice", value="rachel"),
        "agents_config/agents/support.yaml: voice: unknown key; allowed here: id, name,",
    ),
    _case(
        "agent_id_bad_prefix",
        _set("agents/sales.yaml", "id", value="agent_0a9b8c7d6e5f40312a3b4c5d6e7f8a9b"),
        "agents_config/agents/sales.yaml: id: must be an agent id: 'agt_' followed by",
    ),
    _case(
        "agent_id_uppercase",
        _set("agents/sales.yaml", "id", value="agt_0A9B8C7D"),
        "agents_config/agents/sales.yaml: id: must be an agent id",
    ),
    _case(
        "unknown_llm_provider",
        _set("agents/support.yaml", "llm", "provider", value="anthropic"),
        "agents_config/agents/support.yaml: llm.provider: unknown llm provider 'anthropic'; "
        "supported: openai",
    ),
    _case(
        "unknown_tts_option",
        _set("agents/support.yaml", "tts", "pitch", value=1.2),
        "agents_config/agents/support.yaml: tts.pitch: unknown key; allowed here: voice_id,",
    ),
    _case(
        "missing_tts_voice_id",
        _delete("agents/support.yaml", "tts", "voice_id"),
        "agents_config/agents/support.yaml: tts.voice_id: required",
    ),
    _case(
        "temperature_out_of_range",
        _set("agents/triage.yaml", "llm", "temperature", value=2.5),
        "agents_config/agents/triage.yaml: llm.temperature: Input should be less than or equal to 2",
    ),
    _case(
        "duplicate_agent_id_across_files",
        _copy("agents/support.yaml", "agents/support_copy.yaml"),
        "agents_config/agents/support_copy.yaml: id: duplicate id "
        f"{SUPPORT} (also in agents_config/agents/support.yaml)",
    ),
    _case(
        "first_message_unknown_placeholder",
        _set("agents/triage.yaml", "first_message", value="Hi {foo}, this is Convoi."),
        "agents_config/agents/triage.yaml: first_message: unknown placeholder {foo}",
    ),
    _case(
        "agent_unknown_knowledge_base",
        _set("agents/billing.yaml", "knowledge_base_ids", value=["kb_00000000"]),
        "agents_config/agents/billing.yaml: knowledge_base_ids[0]: unknown knowledge base "
        "kb_00000000",
    ),
    _case(
        "agent_file_empty",
        _write("agents/sales.yaml", ""),
        "agents_config/agents/sales.yaml: must be a mapping of keys",
    ),
    _case(
        "invalid_yaml",
        _write("agents/sales.yaml", "id: agt_0a9b8c7d\nname: [unclosed\n"),
        "agents_config/agents/sales.yaml: line ",
    ),
    _case(
        "squad_start_member_not_a_member",
        _set("squads/customer_care.yaml", "start_member", value="reception"),
        "agents_config/squads/customer_care.yaml: start_member: 'reception' is not a member",
    ),
    _case(
        "squad_handoff_to_non_member",
        _set("squads/customer_care.yaml", "members", "triage", "handoffs", 0, "to", value="sales"),
        "agents_config/squads/customer_care.yaml: members.triage.handoffs[0].to: destination 'sales' "
        "is not a member",
    ),
    _case(
        "squad_handoff_to_itself",
        _set(
            "squads/customer_care.yaml", "members", "billing", "handoffs", 0, "to", value="billing"
        ),
        "agents_config/squads/customer_care.yaml: members.billing.handoffs[0].to: a member cannot "
        "hand off to itself",
    ),
    _case(
        "squad_member_unknown_agent",
        _set("squads/customer_care.yaml", "members", "billing", "agent_id", value="agt_00000000"),
        "agents_config/squads/customer_care.yaml: members.billing.agent_id: unknown agent "
        "agt_00000000",
    ),
    _case(
        "squad_member_override_bad_value",
        _set(
            "squads/customer_care.yaml",
            "members",
            "support",
            "overrides",
            "tts",
            value={"speed": 3},
        ),
        "agents_config/squads/customer_care.yaml: members.support.overrides.tts.speed: "
        "Input should be less than or equal to 1.2",
    ),
    _case(
        "squad_member_override_unknown_key",
        _set(
            "squads/customer_care.yaml", "members", "support", "overrides", "greeting", value="Hi"
        ),
        "agents_config/squads/customer_care.yaml: members.support.overrides.greeting: unknown key",
    ),
    _case(
        "squad_member_override_unknown_placeholder",
        _set(
            "squads/customer_care.yaml",
            "members",
            "billing",
            "overrides",
            "first_message",
            value="Hi {customer}",
        ),
        "agents_config/squads/customer_care.yaml: members.billing.overrides.first_message: "
        "unknown placeholder {customer}",
    ),
    _case(
        "squad_member_override_unknown_knowledge_base",
        _set(
            "squads/customer_care.yaml",
            "members",
            "billing",
            "overrides",
            "knowledge_base_ids",
            value=["kb_00000000"],
        ),
        "agents_config/squads/customer_care.yaml: "
        "members.billing.overrides.knowledge_base_ids[0]: unknown knowledge base kb_00000000",
    ),
    _case(
        "negative_price",
        _set("prices.yaml", "llm", "openai", "gpt-4o", "output_per_1m", value="-1.00"),
        "agents_config/prices.yaml: llm.openai.gpt-4o.output_per_1m: Input should be greater "
        "than or equal to 0",
    ),
    _case(
        "missing_price_field",
        _delete("prices.yaml", "stt", "deepgram", "nova-3", "per_minute"),
        "agents_config/prices.yaml: stt.deepgram.nova-3.per_minute: required",
    ),
    _case(
        "missing_telephony_price",
        _delete("prices.yaml", "telephony"),
        "agents_config/prices.yaml: telephony: required",
    ),
    _case(
        "price_not_a_number",
        _set("prices.yaml", "telephony", "per_minute", value="cheap"),
        "agents_config/prices.yaml: telephony.per_minute: ",
    ),
    _case(
        "missing_prices_yaml",
        _remove("prices.yaml"),
        "agents_config/prices.yaml: file is missing",
    ),
    _case(
        "phone_number_not_e164",
        _set("phone_numbers.yaml", "phone_numbers", 1, "number", value="0800 000 002"),
        "agents_config/phone_numbers.yaml: phone_numbers[1].number: must be an E.164 number",
    ),
    _case(
        "phone_number_missing_sip",
        _delete("phone_numbers.yaml", "phone_numbers", 0, "sip"),
        "agents_config/phone_numbers.yaml: phone_numbers[0].sip: required",
    ),
    _case(
        "phone_numbers_not_a_list",
        _write("phone_numbers.yaml", "phone_numbers: {id: phn_12345678}\n"),
        "agents_config/phone_numbers.yaml: phone_numbers: must be a mapping with one key "
        "'phone_numbers' holding a list",
    ),
    _case(
        "missing_agents_folder",
        _remove("agents"),
        "agents_config/agents: folder is missing",
    ),
]


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_broken_copy_is_rejected_with_file_field_problem(
    tmp_path: Path, breakage: Breakage
) -> None:
    config = copy_config(tmp_path)
    load_definitions(config)  # the untouched copy is valid
    breakage.breaks(config)
    issues = [str(issue) for issue in config_issues(config)]
    assert any(breakage.expected in line for line in issues), "\n".join(issues)


def test_squad_start_member_error_names_its_field(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    _set("squads/customer_care.yaml", "start_member", value="reception")(config)
    (issue,) = config_issues(config)
    assert (issue.file, issue.field) == ("agents_config/squads/customer_care.yaml", "start_member")


def test_an_invalid_agent_is_not_also_reported_as_unknown(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    _set("agents/support.yaml", "tts", "pitch", value=1.2)(config)
    issues = [str(issue) for issue in config_issues(config)]
    assert any("support.yaml: tts.pitch: unknown key" in line for line in issues)
    assert not any(f"unknown agent {SUPPORT}" in line for line in issues), issues


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    _set("agents/support.yaml", "llm", "temperature", value=9)(config)
    _set("agents/sales.yaml", "tts", "speed", value=9)(config)
    _set("phone_numbers.yaml", "phone_numbers", 0, "number", value="12345")(config)
    issues = {(i.file, i.field) for i in config_issues(config)}
    assert issues >= {
        ("agents_config/agents/support.yaml", "llm.temperature"),
        ("agents_config/agents/sales.yaml", "tts.speed"),
        ("agents_config/phone_numbers.yaml", "phone_numbers[0].number"),
    }


def test_missing_config_folder_is_an_error(tmp_path: Path) -> None:
    issues = config_issues(tmp_path / "nowhere")
    assert "config folder does not exist" in str(issues[0])


# --- warnings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "model", "expected"),
    [
        pytest.param(
            "llm",
            "gpt-4.1",
            "llm.model: openai/gpt-4.1 has no price in the price list; priced openai llm models:"
            " gpt-4.1-mini, gpt-4o, gpt-4o-mini",
            id="llm",
        ),
        pytest.param("stt", "nova-2-phonecall", "stt.model: deepgram/nova-2-phonecall", id="stt"),
        pytest.param(
            "tts",
            "eleven_multilingual_v2",
            "tts.model: elevenlabs/eleven_multilingual_v2 has no price",
            id="tts",
        ),
    ],
)
def test_unpriced_model_is_refused(tmp_path: Path, block: str, model: str, expected: str) -> None:
    config = copy_config(tmp_path)
    _set("agents/support.yaml", block, "model", value=model)(config)
    issues = [str(i) for i in config_issues(config)]
    assert len(issues) == 1, issues
    assert issues[0].startswith(f"agents_config/agents/support.yaml: {expected}"), issues


def test_unpriced_model_in_a_squad_members_overrides_is_refused(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    path = config / "squads" / "customer_care.yaml"
    data = yaml.safe_load(path.read_text())
    member = next(iter(data["members"]))
    data["members"][member]["overrides"] = {"llm": {"model": "gpt-9-ultra"}}
    path.write_text(yaml.safe_dump(data))
    issues = [str(i) for i in config_issues(config)]
    assert issues == [
        f"agents_config/squads/customer_care.yaml: members.{member}.overrides.llm.model: "
        "openai/gpt-9-ultra has no price in the price list; priced openai llm models: "
        "gpt-4.1-mini, gpt-4o, gpt-4o-mini"
    ]


@pytest.mark.parametrize("voice", ["rachael", "voice_1", "21m00Tcm4TlvDq8ikWA"])
def test_a_voice_that_does_not_resolve_is_refused(tmp_path: Path, voice: str) -> None:
    config = copy_config(tmp_path)
    _set("agents/support.yaml", "tts", "voice_id", value=voice)(config)
    (issue,) = [str(i) for i in config_issues(config)]
    assert issue.startswith(
        f"agents_config/agents/support.yaml: tts.voice_id: unknown voice {voice!r}"
    )
    assert "rachel" in issue


@pytest.mark.parametrize("voice", ["Rachel", "21m00Tcm4TlvDq8ikWAM"])
def test_aliases_and_voice_ids_resolve(tmp_path: Path, voice: str) -> None:
    config = copy_config(tmp_path)
    _set("agents/support.yaml", "tts", "voice_id", value=voice)(config)
    assert load_definitions(config).definitions.agents[SUPPORT].tts.voice_id == voice


def test_unknown_placeholder_in_system_prompt_is_a_warning_not_an_error(tmp_path: Path) -> None:
    config = copy_config(tmp_path)
    _set("agents/support.yaml", "system_prompt", value="Fill {slot} for {name}.")(config)
    result = load_definitions(config)
    assert [str(w) for w in result.warnings] == [
        "agents_config/agents/support.yaml: system_prompt: {slot} is not a placeholder and is "
        "kept as written"
    ]
