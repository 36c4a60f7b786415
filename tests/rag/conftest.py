"""Fixtures of the RAG tests: a real, migrated rag_index database on each backend (an SQLCipher
file under tmp_path, a fresh PostgreSQL database)."""

from __future__ import annotations

import pytest

from twin.rag.schema import MIGRATIONS
from twin.storage import Migrator


@pytest.fixture
def rag_db(databases):
    db = databases.new("rag_index")
    Migrator(db, MIGRATIONS).migrate()
    return db
