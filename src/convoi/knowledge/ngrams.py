"""Character n-gram TF-IDF over chunks, in memory (a benchmark baseline and hybrid partner).

Each text becomes the counts of its character 3- to 5-grams inside word boundaries (``" refu"``,
``"fund "``), weighted by smoothed IDF and L2-normalised; a query's score for a chunk is the
cosine. It matches word forms BM25's stemmer misses (``charged``/``charges``) and misspellings.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from convoi.knowledge.models import Chunk, Hit

__all__ = ["NgramIndex", "ngrams"]

_WORD = re.compile(r"[a-z0-9]+")


def ngrams(text: str, low: int = 3, high: int = 5) -> Counter[str]:
    """Counts of the character n-grams (``low``..``high``) of each word of ``text``, padded."""
    out: Counter[str] = Counter()
    for word in _WORD.findall(text.lower()):
        padded = f" {word} "
        for n in range(low, high + 1):
            out.update(padded[i : i + n] for i in range(len(padded) - n + 1))
    return out


class NgramIndex:
    """Cosine over character n-gram TF-IDF vectors of ``chunks`` (heading + text)."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = list(chunks)
        counts = [ngrams(f"{c.title} {c.text}") for c in self.chunks]
        df: Counter[str] = Counter(g for c in counts for g in c)
        total = len(self.chunks)
        self.idf = {g: math.log((1 + total) / (1 + n)) + 1 for g, n in df.items()}
        self.vectors = [self._weigh(c) for c in counts]

    def _weigh(self, counts: Counter[str]) -> dict[str, float]:
        vec = {g: (1 + math.log(n)) * self.idf[g] for g, n in counts.items() if g in self.idf}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {g: v / norm for g, v in vec.items()}

    def search(self, query: str, kb_ids: Sequence[str], k: int = 3) -> list[Hit]:
        """The ``k`` chunks of ``kb_ids`` most similar to ``query``."""
        q = self._weigh(ngrams(query))
        scored = [
            (sum(w * vec.get(g, 0.0) for g, w in q.items()), i)
            for i, vec in enumerate(self.vectors)
            if self.chunks[i].kb_id in kb_ids
        ]
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [Hit(self.chunks[i], score) for score, i in scored[:k] if score > 0]
