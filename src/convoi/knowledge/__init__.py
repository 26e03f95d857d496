"""Knowledge bases the agent answers from: documents → chunks → one shared index → per-turn context.

- :mod:`.sources` reads a knowledge base's folder of Markdown / text files;
- :mod:`.chunking` cuts documents into chunks at headings and paragraphs (pure);
- :mod:`.index` builds one SQLite FTS5 file for all knowledge bases, named by content hash;
- :mod:`.search` opens it read-only and searches it with BM25 (:class:`KnowledgeIndex`);
- :mod:`.retrieval` runs a turn's search with a time bound and never raises;
- :mod:`.postgres` is the shared-index adapter for a fleet (PostgreSQL full-text search);
- :mod:`.bench` compares BM25, character n-gram TF-IDF, MiniLM embeddings and hybrids.
"""

from convoi.knowledge.chunking import chunk_document, split_spans
from convoi.knowledge.errors import KnowledgeError
from convoi.knowledge.index import IndexPlan, build_index, ensure_index, plan_index, write_index
from convoi.knowledge.models import Chunk, Document, Hit
from convoi.knowledge.retrieval import RETRIEVAL_EXTRA_KEY, Retrieval, Retriever, context_message
from convoi.knowledge.search import Fts5Index, KnowledgeIndex
from convoi.knowledge.settings import KnowledgeSettings
from convoi.knowledge.sources import SourceProblem, Sources, read_documents

__all__ = [
    "RETRIEVAL_EXTRA_KEY",
    "Chunk",
    "Document",
    "Fts5Index",
    "Hit",
    "IndexPlan",
    "KnowledgeError",
    "KnowledgeIndex",
    "KnowledgeSettings",
    "Retrieval",
    "Retriever",
    "SourceProblem",
    "Sources",
    "build_index",
    "chunk_document",
    "context_message",
    "ensure_index",
    "plan_index",
    "read_documents",
    "split_spans",
    "write_index",
]
