"""RAG_VECTOR_DIM (seed 004): the index's dimension when none is given, checked on insert."""

from __future__ import annotations

import pytest

from twin.rag import DimensionMismatchError, RagIndex, configured_dimension


def test_the_dimension_defaults_to_rag_vector_dim_and_vectors_of_another_length_are_refused(
        rag_db, monkeypatch):
    monkeypatch.setenv("RAG_VECTOR_DIM", "4")
    index = RagIndex(rag_db, embedding_model="m")

    assert index.dimension == 4
    index.add_document("four numbers", embeddings=[[1.0, 0.0, 0.0, 0.0]])
    with pytest.raises(DimensionMismatchError):
        index.add_document("three numbers", embeddings=[[1.0, 0.0, 0.0]])
    assert rag_db.query_one("SELECT count(*) FROM documents")[0] == 1


def test_without_the_variable_the_seed_default_384_holds_and_a_bad_value_is_a_clear_error():
    assert configured_dimension({}) == 384
    with pytest.raises(ValueError, match="RAG_VECTOR_DIM must be a positive integer"):
        configured_dimension({"RAG_VECTOR_DIM": "many"})
