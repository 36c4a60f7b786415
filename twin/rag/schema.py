"""Migrations of ``rag_index.db`` (SQLCipher) and the ``rag_index`` schema (PostgreSQL, in
``schema_postgresql``): one ordered list, each step in both dialects.

v1 starts from the seed's ``documents``, ``chunks`` and ``embeddings_metadata`` and changes:

- Dedupe: ``documents.content_hash`` (SHA-256 hex of the UTF-8 content; the seed's optional
  ``file_hash``) is NOT NULL and UNIQUE, so the same content can only be stored once, even
  by two writers racing; ``metadata`` must be a JSON object.
- Cascades: every child row references its parent ``ON DELETE CASCADE`` (documents ->
  chunks -> vectors and query statistics), so deleting a document cannot leave orphans.
- Vectors move out of ``chunks`` into ``embeddings`` keyed by (chunk, model): a chunk can
  carry vectors of several models, and re-embedding replaces one model's vector without
  rewriting chunk text. Vectors are little-endian float32 blobs; a composite foreign key to
  ``embedding_models (model, dimension)`` plus a length CHECK means the database itself
  refuses a vector whose dimension differs from its model's. It is a rowid table on purpose:
  in a WITHOUT ROWID table a 1.5 KiB vector spills into overflow pages, which doubled the
  file and made loading 10k vectors several times slower.
- ``embedding_models.revision`` is changed by triggers on every vector insert, update and
  delete (a random token, so a rolled-back write can never reproduce a cached value). The
  index keeps an in-memory matrix of each model's vectors and reloads it only when the
  revision differs: writes from any connection or process invalidate it.
- Keyword search: ``chunks_fts`` is an FTS5 index over chunk text (Porter stemming over
  unicode61, diacritics folded). It is an external-content table (the text is stored once,
  in ``chunks``) kept in sync by triggers, so cascaded deletes also remove index entries.
  This replaces the seed's external BM25 index and ``bm25_doc_id``.
- ``embeddings_metadata`` keeps per-chunk retrieval statistics (``query_count``,
  ``last_queried``); a trigger creates its row with the chunk, so counting a retrieval is
  one UPDATE. The seed's ``faiss_index_id`` and ``bm25_doc_id`` (external indexes we no
  longer use), ``similarity_scores`` (a cache that goes stale with every new vector) and
  ``vector_dimension`` (now in ``embedding_models``) are gone.
- Chunks record their character offsets in the document (for citations/highlighting) and
  the settings that produced them; ``UNIQUE (document_id, chunk_index)`` doubles as the
  seed's ``idx_chunks_document``/``idx_chunks_index`` for ordered chunk reads.
- Timestamps are ISO-8601 UTC text written by the application (``twin.storage.timestamps``).
"""

from twin.storage import Migration

from . import schema_postgresql as postgresql

V1_UP = """
CREATE TABLE documents (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id   TEXT UNIQUE NOT NULL,
    title         TEXT,
    content       TEXT NOT NULL,
    document_type TEXT NOT NULL DEFAULT 'text',
    source_path   TEXT,
    source_url    TEXT,
    content_hash  TEXT NOT NULL UNIQUE CHECK (length(content_hash) = 64),
    word_count    INTEGER NOT NULL CHECK (word_count >= 0),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    metadata      TEXT CHECK (metadata IS NULL OR json_type(metadata) = 'object')
);
CREATE INDEX idx_documents_type ON documents (document_type);

CREATE TABLE chunks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    chunk_id      TEXT UNIQUE NOT NULL,
    document_id   TEXT NOT NULL REFERENCES documents (document_id) ON DELETE CASCADE,
    chunk_index   INTEGER NOT NULL CHECK (chunk_index >= 0),
    content       TEXT NOT NULL,
    start_offset  INTEGER NOT NULL CHECK (start_offset >= 0),
    end_offset    INTEGER NOT NULL CHECK (end_offset >= start_offset),
    chunk_size    INTEGER NOT NULL CHECK (chunk_size > 0),
    overlap_size  INTEGER NOT NULL DEFAULT 0 CHECK (overlap_size >= 0),
    chunk_unit    TEXT NOT NULL DEFAULT 'words' CHECK (chunk_unit IN ('words', 'chars')),
    created_at    TEXT NOT NULL,
    UNIQUE (document_id, chunk_index)
);

CREATE TABLE embedding_models (
    model      TEXT PRIMARY KEY,
    dimension  INTEGER NOT NULL CHECK (dimension > 0),
    revision   TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    UNIQUE (model, dimension)
);

CREATE TABLE embeddings (
    chunk_id   TEXT NOT NULL REFERENCES chunks (chunk_id) ON DELETE CASCADE,
    model      TEXT NOT NULL,
    dimension  INTEGER NOT NULL,
    vector     BLOB NOT NULL CHECK (typeof(vector) = 'blob' AND length(vector) = 4 * dimension),
    created_at TEXT NOT NULL,
    PRIMARY KEY (chunk_id, model),
    FOREIGN KEY (model, dimension) REFERENCES embedding_models (model, dimension)
);
CREATE INDEX idx_embeddings_model ON embeddings (model, dimension);

CREATE TABLE embeddings_metadata (
    chunk_id     TEXT PRIMARY KEY REFERENCES chunks (chunk_id) ON DELETE CASCADE,
    query_count  INTEGER NOT NULL DEFAULT 0 CHECK (query_count >= 0),
    last_queried TEXT,
    created_at   TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX idx_embeddings_queries ON embeddings_metadata (query_count);

CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    content,
    content = 'chunks',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER chunks_after_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, content) VALUES (new.id, new.content);
    INSERT INTO embeddings_metadata (chunk_id, created_at) VALUES (new.chunk_id, new.created_at);
END;

CREATE TRIGGER chunks_after_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;

CREATE TRIGGER chunks_after_update AFTER UPDATE OF content ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, content) VALUES ('delete', old.id, old.content);
    INSERT INTO chunks_fts (rowid, content) VALUES (new.id, new.content);
END;

CREATE TRIGGER embeddings_after_insert AFTER INSERT ON embeddings BEGIN
    UPDATE embedding_models SET revision = lower(hex(randomblob(8))) WHERE model = new.model;
END;

CREATE TRIGGER embeddings_after_update AFTER UPDATE ON embeddings BEGIN
    UPDATE embedding_models SET revision = lower(hex(randomblob(8)))
     WHERE model IN (old.model, new.model);
END;

CREATE TRIGGER embeddings_after_delete AFTER DELETE ON embeddings BEGIN
    UPDATE embedding_models SET revision = lower(hex(randomblob(8))) WHERE model = old.model;
END;
"""

V1_DOWN = """
DROP TRIGGER embeddings_after_delete;
DROP TRIGGER embeddings_after_update;
DROP TRIGGER embeddings_after_insert;
DROP TRIGGER chunks_after_update;
DROP TRIGGER chunks_after_delete;
DROP TRIGGER chunks_after_insert;
DROP TABLE chunks_fts;
DROP TABLE embeddings_metadata;
DROP TABLE embeddings;
DROP TABLE embedding_models;
DROP TABLE chunks;
DROP TABLE documents;
"""

# v2: a generation number that every document insert, update or delete moves on (triggers, so
# any connection or process counts), for query-result caches: a key holding the generation
# (and the model's vector revision) can never serve what preceded a write, even one made while
# the cache was unreachable.
V2_UP = """
CREATE TABLE rag_state (
    singleton  INTEGER PRIMARY KEY CHECK (singleton = 1),
    generation INTEGER NOT NULL CHECK (generation >= 0)
);
INSERT INTO rag_state (singleton, generation) VALUES (1, 0);
CREATE TRIGGER documents_generation_insert AFTER INSERT ON documents BEGIN
    UPDATE rag_state SET generation = generation + 1 WHERE singleton = 1;
END;
CREATE TRIGGER documents_generation_update AFTER UPDATE ON documents BEGIN
    UPDATE rag_state SET generation = generation + 1 WHERE singleton = 1;
END;
CREATE TRIGGER documents_generation_delete AFTER DELETE ON documents BEGIN
    UPDATE rag_state SET generation = generation + 1 WHERE singleton = 1;
END;
"""

V2_DOWN = """
DROP TRIGGER documents_generation_delete;
DROP TRIGGER documents_generation_update;
DROP TRIGGER documents_generation_insert;
DROP TABLE rag_state;
"""

MIGRATIONS = [
    Migration(1, "rag_index", {"sqlite": V1_UP, "postgresql": postgresql.V1_UP},
              {"sqlite": V1_DOWN, "postgresql": postgresql.V1_DOWN},
              "documents (content-hash dedupe), chunks, vectors per model, query statistics, "
              "FTS5 index over chunk text (PostgreSQL: a tsvector column with a GIN index)"),
    Migration(2, "rag generation", {"sqlite": V2_UP, "postgresql": postgresql.V2_UP},
              {"sqlite": V2_DOWN, "postgresql": postgresql.V2_DOWN},
              "a generation number moved by every document write, for query caches"),
]

# Personal-data declaration (see compliance.registry): the RAG index holds curriculum and
# reference documents for retrieval. Learner records must never be ingested into it.
NO_PERSONAL_DATA = {
    "schema_version": "migration bookkeeping",
    "documents": "reference/curriculum documents (learner data is never ingested)",
    "chunks": "chunks of those documents",
    "embedding_models": "embedding model names, dimensions and cache revisions",
    "embeddings": "embedding vectors of chunks",
    "embeddings_metadata": "retrieval statistics per chunk (counts, last time)",
    "chunks_fts": "FTS5 keyword index over chunks",
    "rag_state": "the index's write generation (a counter)",
}
