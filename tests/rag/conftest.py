"""Fixtures of the RAG tests: a real, migrated SQLCipher rag_index database under tmp_path."""

from __future__ import annotations

import pytest

from twin.rag.schema import MIGRATIONS
from twin.storage import Database, Migrator


@pytest.fixture
def rag_db(tmp_path, db_key):
    db = Database(tmp_path / "rag_index.db", db_key, name="rag_index")
    Migrator(db, MIGRATIONS).migrate()
    yield db
    db.close_all()
