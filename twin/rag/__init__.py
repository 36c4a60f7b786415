"""The RAG index (``rag_index.db``): documents deduplicated by content hash, ordered chunks,
embedding vectors per model, and keyword (FTS5/BM25), vector (cosine) and hybrid (reciprocal
rank fusion) retrieval. Embeddings are supplied by the caller.

    >>> db = open_database("rag_index", config, keyring.database_keys)
    >>> index = RagIndex(db, embedding_model="paraphrase-MiniLM-L3-v2", dimension=384)
"""

from .chunking import Chunker, TextChunk, chunk_text
from .errors import (ChunkNotFoundError, DimensionMismatchError, DocumentNotFoundError,
                     EmbeddingCountError, InvalidChunkingError, InvalidDocumentError,
                     InvalidVectorError, ModelMismatchError, RagError)
from .fusion import reciprocal_rank_fusion
from .index import (DEFAULT_DIMENSION, DEFAULT_MODEL, ChunkInfo, Document, DocumentRef,
                    IndexStats, RagIndex, SearchResult, configured_dimension, content_hash)
from .query_cache import RagQueryCache

__all__ = [
    "DEFAULT_DIMENSION", "DEFAULT_MODEL", "ChunkInfo", "ChunkNotFoundError", "Chunker",
    "DimensionMismatchError", "Document", "DocumentNotFoundError", "DocumentRef",
    "EmbeddingCountError", "IndexStats", "InvalidChunkingError", "InvalidDocumentError",
    "InvalidVectorError", "ModelMismatchError", "RagError", "RagIndex", "RagQueryCache",
    "SearchResult", "TextChunk", "chunk_text", "configured_dimension", "content_hash", "reciprocal_rank_fusion",
]
