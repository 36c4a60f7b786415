"""What the RAG index returns: references, search results, chunks, documents, statistics."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """The id of a stored document; ``created`` is False when identical content existed."""

    document_id: str
    created: bool


@dataclass(frozen=True, slots=True)
class SearchResult:
    """One retrieved chunk, its document, and its score (higher is better)."""

    chunk_id: str
    document_id: str
    chunk_index: int
    content: str
    title: str | None
    score: float


@dataclass(frozen=True, slots=True)
class ChunkInfo:
    """A stored chunk with its retrieval statistics."""

    chunk_id: str
    chunk_index: int
    content: str
    start_offset: int
    end_offset: int
    has_embedding: bool      # a vector of the index's model is stored
    query_count: int
    last_queried: str | None


@dataclass(frozen=True, slots=True)
class Document:
    """A stored document and its chunks in order."""

    document_id: str
    title: str | None
    content: str
    document_type: str
    source_path: str | None
    source_url: str | None
    content_hash: str
    word_count: int
    metadata: dict[str, Any]
    created_at: str
    updated_at: str
    chunks: tuple[ChunkInfo, ...]


@dataclass(frozen=True, slots=True)
class IndexStats:
    """Counts over the whole database; ``embedded_chunks`` counts this index's model only."""

    documents: int
    chunks: int
    embedded_chunks: int
    models: dict[str, int]    # every registered embedding model and its dimension
    total_queries: int        # retrievals counted over all chunks


def content_hash(content: str) -> str:
    """The dedupe key of a document: SHA-256 of its UTF-8 content, hex."""
    return hashlib.sha256(content.encode("utf-8")).hexdigest()
