"""The shared PostgreSQL index: published once per content hash, searched with full-text search.

Needs a throwaway server: ``export CONVOI_TEST_POSTGRES_URL="$(scripts/postgres start)"``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from convoi.definitions.models import Definitions
from convoi.knowledge import KnowledgeError, Retriever, chunk_document, plan_index
from convoi.knowledge.postgres import PgIndex, libpq_url, publish
from convoi.knowledge.settings import KnowledgeSettings
from convoi.knowledge.startup import open_retriever, prepare_index, shared_key
from tests.helpers import AGENTS_CONFIG

pytestmark = pytest.mark.postgres

HELP = "kb_3a1c9e2b7d4f4a0b8c6e1f2a3b4c5d6e"
BILLING = "kb_7e4d2c1b0a9f48e6b5d3c2a1f0e9d8c7"


@pytest.fixture
def database() -> Iterator[str]:
    server = os.environ.get("CONVOI_TEST_POSTGRES_URL")
    if not server:
        pytest.skip("CONVOI_TEST_POSTGRES_URL is not set: `scripts/postgres start`")
    name = f"convoi_kb_{uuid.uuid4().hex[:12]}"
    admin = libpq_url(server)
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    yield admin.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin, autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_published_once_and_searched_per_knowledge_base(
    database: str, defs: Definitions, tmp_path: Path
) -> None:
    plan = plan_index(defs, AGENTS_CONFIG, tmp_path)
    chunks = [c for doc in plan.documents for c in chunk_document(doc)]
    key = shared_key(plan.path)
    assert publish(database, key, chunks) is True
    assert publish(database, key, chunks) is False  # another worker: already there
    index = PgIndex(database, key)
    hits = index.search("What happens if my card payment fails?", [BILLING], 3)
    assert hits[0].chunk.id == "invoices#failed-payments"
    assert all(h.chunk.kb_id == BILLING for h in hits)
    top3 = [h.chunk for h in index.search("How long do you keep call transcripts?", [HELP], 3)]
    assert "account#data-retention-and-privacy" in [c.id for c in top3]
    assert any("90 days" in c.text for c in top3)
    assert index.search("the and of", [BILLING]) == []
    with psycopg.connect(database) as db:
        count = db.execute("SELECT count(*) FROM convoi_knowledge_chunks").fetchone()
        plan_row = db.execute(
            "EXPLAIN SELECT 1 FROM convoi_knowledge_chunks WHERE tsv @@ to_tsquery('english', 'x')"
        ).fetchall()
    assert count == (len(chunks),)
    assert plan_row  # the GIN index exists (small tables may still be scanned sequentially)
    index.close()


async def test_workers_share_it_through_the_settings(
    database: str, defs: Definitions, tmp_path: Path
) -> None:
    settings = KnowledgeSettings(
        CONVOI_KNOWLEDGE_DIR=tmp_path, CONVOI_KNOWLEDGE_DATABASE_URL=database
    )
    plan, _ = prepare_index(defs, AGENTS_CONFIG, settings)
    retriever = open_retriever(defs, AGENTS_CONFIG, settings, plan.path)
    assert isinstance(retriever.index, PgIndex)
    found = await retriever.retrieve([BILLING], "How much is the platform fee per minute?")
    assert found.error is None and found.hits[0].chunk.id == "pricing#platform-fee"


async def test_an_unreachable_database_is_a_reported_failure() -> None:
    down = PgIndex("postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=2", "x")
    found = await Retriever(down, timeout=10).retrieve([BILLING], "refund")
    assert found.hits == () and found.error is not None
    with pytest.raises(KnowledgeError):
        down.search("refund", [BILLING])
