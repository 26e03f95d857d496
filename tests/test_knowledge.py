"""Knowledge bases: chunking, documents, the shared index, retrieval and its failures.

Unit tests only (no server): the index is a real SQLite FTS5 file in a temporary folder.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convoi.definitions.loader import load_definitions
from convoi.definitions.models import Definitions
from convoi.knowledge import (
    Document,
    Fts5Index,
    KnowledgeError,
    Retriever,
    chunk_document,
    ensure_index,
    read_documents,
    split_spans,
)
from convoi.knowledge.check import document_issues
from convoi.knowledge.query import fts_query
from convoi.knowledge.settings import KnowledgeSettings
from convoi.knowledge.startup import open_retriever
from convoi.worker import cli
from tests.helpers import AGENTS_CONFIG

HELP = "kb_3a1c9e2b7d4f4a0b8c6e1f2a3b4c5d6e"
BILLING = "kb_7e4d2c1b0a9f48e6b5d3c2a1f0e9d8c7"

_markdownish = st.lists(
    st.one_of(
        st.text(alphabet=st.characters(codec="utf-8"), max_size=300),
        st.sampled_from(["\n# Title\n", "\n## Section two\n", "\n\n", "\n### \n", "#", " "]),
        st.text(alphabet="ab \n", max_size=2000),
    ),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=_markdownish, max_chars=st.integers(min_value=1, max_value=400))
def test_spans_cover_the_text_exactly_and_respect_the_bound(text: str, max_chars: int) -> None:
    spans = split_spans(text, max_chars)
    assert "".join(text[s:e] for s, e, _ in spans) == text  # nothing lost, nothing repeated
    assert all(0 < e - s <= max_chars for s, e, _ in spans)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))  # in order


@settings(max_examples=200, deadline=None)
@given(text=_markdownish, max_chars=st.integers(min_value=20, max_value=400))
def test_chunks_keep_every_visible_character_with_exact_bounds(text: str, max_chars: int) -> None:
    doc = Document("kb_test0001", "doc.md", text)
    chunks = chunk_document(doc, max_chars)
    assert all(c.text == text[c.start : c.end] and len(c.text) <= max_chars for c in chunks)
    visible = "".join(text.split())
    assert "".join("".join(c.text.split()) for c in chunks) == visible
    assert len({c.id for c in chunks}) == len(chunks)


def test_sections_become_chunks_named_after_their_heading() -> None:
    text = "# Pricing\n\n## Platform fee\nTwo cents a minute.\n\n## Refunds\nWithin 30 days.\n"
    chunks = chunk_document(Document("kb_test0001", "billing/pricing.md", text))
    assert [(c.id, c.title) for c in chunks] == [
        ("billing/pricing#platform-fee", "Platform fee"),  # the bare title joins its first section
        ("billing/pricing#refunds", "Refunds"),
    ]
    assert chunks[0].text.startswith("# Pricing")


def test_read_documents_names_every_problem(tmp_path: Path) -> None:
    folder = tmp_path / "kb"
    folder.mkdir()
    (folder / "good.md").write_text("# Hi\nText.\n")
    (folder / "empty.md").write_text("  \n")
    (folder / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (folder / "manual.pdf").write_bytes(b"%PDF-1.4")
    (folder / ".hidden.md").write_text("ignored")
    found = read_documents("kb_test0001", folder, "kb")
    assert [d.source for d in found.documents] == ["good.md"]
    assert {(p.path, p.problem) for p in found.problems} == {
        ("kb/empty.md", "is empty"),
        ("kb/latin1.txt", "is not UTF-8 text"),
        ("kb/manual.pdf", "unsupported file type .pdf: use Markdown or text"),
    }
    assert read_documents("kb_x0001", tmp_path / "nope", "nope").problems[0].problem == (
        "folder does not exist"
    )
    (tmp_path / "void").mkdir()
    assert "holds no documents" in read_documents("kb_x0001", tmp_path / "void").problems[0].problem


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A copy of the shipped definitions to break."""
    return Path(shutil.copytree(AGENTS_CONFIG, tmp_path / "agents_config"))


def test_check_config_reports_file_field_problem_for_bad_documents(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (config / "knowledge" / "billing" / "empty.md").write_text("")
    shutil.rmtree(config / "knowledge" / "help_centre")
    assert cli.main(["check-config", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert (
        "agents_config/knowledge_bases.yaml: knowledge_bases[0].documents: "
        "knowledge/help_centre folder does not exist"
    ) in err
    assert (
        "agents_config/knowledge_bases.yaml: knowledge_bases[1].documents: "
        "knowledge/billing/empty.md is empty"
    ) in err


def test_check_config_and_index_on_the_shipped_knowledge_bases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert document_issues(load_definitions(AGENTS_CONFIG), AGENTS_CONFIG) == []
    monkeypatch.setenv("CONVOI_KNOWLEDGE_DIR", str(tmp_path))
    assert cli.main(["index", "--config", str(AGENTS_CONFIG)]) == 0
    assert cli.main(["index", "--config", str(AGENTS_CONFIG)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("knowledge index built: ") and "(6 documents)" in out[0]
    assert out[1].startswith("knowledge index up to date: ")
    assert len(list(tmp_path.glob("knowledge-*.sqlite"))) == 1


def test_the_index_is_keyed_by_content_and_built_once(config: Path, tmp_path: Path) -> None:
    defs = load_definitions(config).definitions
    plan, built = ensure_index(defs, config, tmp_path / "cache")
    again, rebuilt = ensure_index(defs, config, tmp_path / "cache")
    assert built and not rebuilt and again.path == plan.path
    (config / "knowledge" / "billing" / "pricing.md").write_text("# Pricing\nAll free.\n")
    changed, built_again = ensure_index(defs, config, tmp_path / "cache")
    assert built_again and changed.path != plan.path


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, defs: Definitions) -> Fts5Index:
    plan, _ = ensure_index(defs, AGENTS_CONFIG, tmp_path_factory.mktemp("kb"))
    return Fts5Index.open(plan.path)


def test_search_finds_the_answer_only_in_the_knowledge_bases_asked(index: Fts5Index) -> None:
    question = "What happens if my card payment fails?"
    hits = index.search(question, [BILLING], 3)
    assert hits[0].chunk.id == "invoices#failed-payments"
    assert all(h.chunk.kb_id == BILLING for h in hits)
    assert all(h.chunk.kb_id == HELP for h in index.search(question, [HELP], 3))
    assert index.search("the and of", [BILLING]) == []  # nothing but stopwords


def test_the_query_never_passes_caller_words_as_fts_syntax() -> None:
    assert fts_query('refund" OR kb_id:* NEAR(') == '"refund" OR "kb" OR "id" OR "near"'
    assert fts_query("um, okay") is None


def test_the_index_is_opened_read_only(index: Fts5Index) -> None:
    import sqlite3

    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        index._db.execute("DELETE FROM meta")


async def test_a_corrupt_or_missing_index_is_a_reported_failure_not_an_exception(
    tmp_path: Path, defs: Definitions
) -> None:
    plan, _ = ensure_index(defs, AGENTS_CONFIG, tmp_path)
    opened = Fts5Index.open(plan.path)
    size = plan.path.stat().st_size
    with plan.path.open("r+b") as f:  # overwrite in place: the open connection reads garbage
        f.write(b"\xff" * size)
    found = await Retriever(opened).retrieve([BILLING], "refund policy")
    assert found.hits == () and found.error and "knowledge search failed" in found.error
    with pytest.raises(KnowledgeError, match="unreadable"):
        Fts5Index.open(plan.path)
    settings_ = KnowledgeSettings(CONVOI_KNOWLEDGE_DIR=tmp_path / "empty")
    missing = await open_retriever(defs, AGENTS_CONFIG, settings_).retrieve([BILLING], "refund")
    assert missing.hits == () and missing.error is not None and "is missing" in missing.error
    assert missing.report()["retrieval_error"] == missing.error


async def test_a_slow_search_times_out_into_a_failure() -> None:
    import threading

    release = threading.Event()

    class Stuck:
        def search(self, query: str, kb_ids: object, k: int = 3) -> list[object]:
            release.wait(10)
            return []

    found = await Retriever(Stuck(), timeout=0.05).retrieve([BILLING], "refund")  # type: ignore[arg-type]
    release.set()
    assert found.error == "knowledge search took longer than 0.05 s"


def test_the_llm_emulator_matches_what_this_turn_added() -> None:
    from convoi.devstack.emulators.llm_script import choose_answer
    from convoi.devstack.emulators.scenario import Scenario

    scenario = Scenario.model_validate(
        {
            "llm": [{"when": {"context_contains": ["90 days", "transcripts"]}, "say": "Ninety."}],
            "default_reply": "No idea.",
        }
    )
    old_turn = [
        {"role": "system", "content": "You are support."},
        {"role": "system", "content": "Excerpt: transcripts are kept for 90 days."},
        {"role": "user", "content": "How long are transcripts kept?"},
        {"role": "assistant", "content": "Ninety."},
    ]
    new_turn = {"role": "user", "content": "And recordings?"}
    with_excerpt = [*old_turn, {"role": "system", "content": "Transcripts: 90 days."}, new_turn]
    assert choose_answer(scenario, old_turn[:3], {}).text == "Ninety."
    assert choose_answer(scenario, [*old_turn, new_turn], {}).text == "No idea."  # earlier turn's
    assert choose_answer(scenario, with_excerpt, {}).text == "Ninety."
