"""The rag_index schema: migrations, and the constraints the database enforces by itself."""

from __future__ import annotations

import os

import pytest

from twin.catalog import open_database
from twin.rag.schema import MIGRATIONS
from twin.storage import FileBacked, IntegrityError, Migrator

TABLES = ["chunks", "chunks_fts", "documents", "embedding_models", "embeddings",
          "embeddings_metadata", "rag_state", "schema_version"]
HASH = "a" * 64


def add_document(conn, document_id="d1", content_hash=HASH, metadata=None):
    conn.execute("INSERT INTO documents (document_id, content, content_hash, word_count, "
                 "created_at, updated_at, metadata) VALUES (?, 'x', ?, 1, 't', 't', ?)",
                 (document_id, content_hash, metadata))


def add_chunk(conn, chunk_id="c1", document_id="d1"):
    conn.execute("INSERT INTO chunks (chunk_id, document_id, chunk_index, content, start_offset, "
                 "end_offset, chunk_size, created_at) VALUES (?, ?, 0, 'x', 0, 1, 1, 't')",
                 (chunk_id, document_id))


def add_model(conn, dimension):
    conn.execute("INSERT INTO embedding_models (model, dimension, created_at) VALUES ('m', ?, 't')",
                 (dimension,))


def tables(db) -> list[str]:
    """The schema's tables: PostgreSQL keeps the keyword index in a column of chunks."""
    return TABLES if isinstance(db, FileBacked) else [t for t in TABLES if t != "chunks_fts"]


def leftovers(db) -> list:
    """Triggers (SQLite) or trigger functions (PostgreSQL) still in the schema."""
    if isinstance(db, FileBacked):
        return db.query("SELECT name FROM sqlite_master WHERE type = 'trigger'")
    return db.query("SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                    "WHERE n.nspname = current_schema()")


def test_migrating_creates_the_tables_and_rolling_back_removes_them(rag_db):
    assert rag_db.table_names() == tables(rag_db)
    migrator = Migrator(rag_db, MIGRATIONS)
    assert migrator.rollback(0) == [2, 1]
    assert rag_db.table_names() == ["schema_version"]
    assert leftovers(rag_db) == []
    assert migrator.migrate() == [1, 2]
    assert rag_db.table_names() == tables(rag_db)


@pytest.mark.sqlite_only("an encrypted file")
def test_the_catalog_opens_an_encrypted_migrated_rag_index(config, keyring):
    db = open_database("rag_index", config, keyring.database_keys)
    try:
        assert db.encrypted and db.path.name == "rag_index.db"
        assert Migrator(db, MIGRATIONS).status().up_to_date
    finally:
        db.close_all()


def test_the_same_content_hash_cannot_be_stored_twice(rag_db):
    with rag_db.transaction() as conn:
        add_document(conn, "d1")
    with pytest.raises(IntegrityError), rag_db.transaction() as conn:
        add_document(conn, "d2")


def test_metadata_must_be_a_json_object(rag_db):
    with pytest.raises(IntegrityError), rag_db.transaction() as conn:
        add_document(conn, metadata="[1, 2]")


def test_a_vector_must_have_its_models_dimension(rag_db):
    with rag_db.transaction() as conn:
        add_document(conn)
        add_chunk(conn)
        add_model(conn, dimension=4)
    with pytest.raises(IntegrityError), rag_db.transaction() as conn:   # 3 floats, dimension 4
        conn.execute("INSERT INTO embeddings VALUES ('c1', 'm', 4, ?, 't')", (bytes(12),))
    with pytest.raises(IntegrityError), rag_db.transaction() as conn:   # not the model's dimension
        conn.execute("INSERT INTO embeddings VALUES ('c1', 'm', 3, ?, 't')", (bytes(12),))
    with rag_db.transaction() as conn:
        conn.execute("INSERT INTO embeddings VALUES ('c1', 'm', 4, ?, 't')", (bytes(16),))


def test_every_vector_write_changes_the_model_revision(rag_db):
    def revision():
        return rag_db.query_one("SELECT revision FROM embedding_models")["revision"]

    with rag_db.transaction() as conn:
        add_document(conn)
        add_chunk(conn)
        add_model(conn, dimension=1)
    seen = [revision()]
    for statement, params in (("INSERT INTO embeddings VALUES ('c1', 'm', 1, ?, 't')", (bytes(4),)),
                              ("UPDATE embeddings SET vector = ?", (os.urandom(4),)),
                              ("DELETE FROM documents", ())):   # cascades to the vector
        with rag_db.transaction() as conn:
            conn.execute(statement, params)
        seen.append(revision())
    assert len(set(seen)) == 4


def test_chunks_get_a_statistics_row_and_cascade_with_their_document(rag_db):
    with rag_db.transaction() as conn:
        add_document(conn)
        add_chunk(conn)
    row = rag_db.query_one("SELECT query_count FROM embeddings_metadata WHERE chunk_id = 'c1'")
    assert row[0] == 0
    with rag_db.transaction() as conn:
        conn.execute("DELETE FROM documents")
    for table in ("chunks", "embeddings_metadata"):
        assert rag_db.query_one(f"SELECT count(*) FROM {table}")[0] == 0
