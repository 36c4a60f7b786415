"""The RAG index: ingestion with dedupe, vectors, deletion, and keyword/vector/hybrid retrieval."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from datetime import datetime, timezone

import numpy as np
import pytest

from twin.rag import (Chunker, ChunkNotFoundError, DimensionMismatchError, DocumentNotFoundError,
                      EmbeddingCountError, InvalidDocumentError, InvalidVectorError,
                      ModelMismatchError, RagIndex, content_hash)
from storage_backends import held_elsewhere, same_database
from twin.storage import FileBacked

DIM = 8


def axis(i: int, dim: int = DIM) -> list[float]:
    vector = [0.0] * dim
    vector[i] = 1.0
    return vector


@pytest.fixture
def index(rag_db) -> RagIndex:
    return RagIndex(rag_db, embedding_model="test-model", dimension=DIM,
                    chunker=Chunker(size=8, overlap=2))


def chunk_ids(results):
    return [r.chunk_id for r in results]


def keyword_terms(db) -> set[str]:
    """Every term of the keyword index, as the database holds it (checked for integrity)."""
    if isinstance(db, FileBacked):
        conn = db.connection()
        conn.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('integrity-check')")
        conn.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, chunks_fts, row)")
        return {row[0] for row in conn.execute("SELECT term FROM temp.vocab")}
    return {row[0] for row in db.query("SELECT word FROM ts_stat('SELECT content_tsv FROM chunks')")}


def row_count(db, table: str) -> int:
    return db.query_one(f"SELECT count(*) FROM {table}")[0]


# -- ingestion --------------------------------------------------------------------------------


class TestAddDocument:
    def test_stores_the_document_and_its_ordered_chunks(self, index):
        text = "one two three four five six seven eight nine ten eleven twelve thirteen"
        ref = index.add_document(text, title="Numbers", metadata={"lang": "en"},
                                 document_type="note", source_url="https://example.org/n")
        assert ref.created
        doc = index.get_document(ref.document_id)
        assert (doc.title, doc.content, doc.document_type, doc.source_url) == \
            ("Numbers", text, "note", "https://example.org/n")
        assert doc.metadata == {"lang": "en"}
        assert doc.word_count == 13
        assert doc.content_hash == content_hash(text)
        assert [c.content for c in doc.chunks] == [
            "one two three four five six seven eight",
            "seven eight nine ten eleven twelve thirteen"]
        assert [c.chunk_index for c in doc.chunks] == [0, 1]
        assert all(text[c.start_offset:c.end_offset] == c.content for c in doc.chunks)
        assert not any(c.has_embedding for c in doc.chunks)

    def test_the_same_content_is_stored_once(self, index):
        first = index.add_document("Mitochondria make ATP.", title="Biology")
        again = index.add_document("Mitochondria make ATP.", title="Another title")
        assert again.document_id == first.document_id
        assert (first.created, again.created) == (True, False)
        assert index.get_document(first.document_id).title == "Biology"
        assert index.stats().documents == 1 and index.stats().chunks == 1

    def test_content_differing_only_in_whitespace_is_a_different_document(self, index):
        assert index.add_document("a b").document_id != index.add_document("a  b").document_id

    def test_embeddings_are_not_computed_for_known_content(self, index):
        calls = []

        def embed(texts):
            calls.append(texts)
            return [axis(0)] * len(texts)

        index.add_document("Known content.", embeddings=embed)
        index.add_document("Known content.", embeddings=embed)
        assert len(calls) == 1

    def test_a_callable_gets_the_chunk_texts_in_order_and_its_vectors_are_stored(self, index):
        seen = []

        def embed(texts):
            seen.extend(texts)
            return np.eye(DIM, dtype=np.float32)[:len(texts)]

        ref = index.add_document("a b c d e f g h i j k l", embeddings=embed)
        assert seen == ["a b c d e f g h", "g h i j k l"]
        assert all(c.has_embedding for c in index.get_document(ref.document_id).chunks)
        assert index.stats().embedded_chunks == 2

    @pytest.mark.parametrize("content", ["", "   \n", None, b"bytes"])
    def test_empty_or_non_text_content_is_refused(self, index, content):
        with pytest.raises(InvalidDocumentError):
            index.add_document(content)

    @pytest.mark.parametrize("metadata", [["a"], {"when": datetime(2026, 1, 1)},
                                          {"x": float("nan")}])
    def test_metadata_must_be_a_json_object(self, index, metadata):
        with pytest.raises(InvalidDocumentError):
            index.add_document("text", metadata=metadata)

    @pytest.mark.parametrize("embeddings, error", [
        ([axis(0)], EmbeddingCountError),                       # two chunks, one vector
        ([axis(0), axis(1), axis(2)], EmbeddingCountError),
        ([axis(0), [1.0, 2.0]], DimensionMismatchError),
        ([axis(0), [0.0] * DIM], InvalidVectorError),
        (lambda texts: None, EmbeddingCountError),
    ])
    def test_bad_embeddings_store_nothing(self, index, rag_db, embeddings, error):
        with pytest.raises(error):
            index.add_document("a b c d e f g h i j k l", embeddings=embeddings)
        assert row_count(rag_db, "documents") == row_count(rag_db, "chunks") == 0

    def test_vectors_from_another_model_are_refused(self, index, rag_db):
        with pytest.raises(ModelMismatchError):
            index.add_document("text", embeddings=[axis(0)], embedding_model="other-model")
        index.add_document("text", embeddings=[axis(0)], embedding_model="test-model")
        assert row_count(rag_db, "embeddings") == 1


class TestAddEmbeddings:
    def test_stores_a_vector_for_an_existing_chunk(self, index):
        ref = index.add_document("lonely chunk")
        chunk = index.get_document(ref.document_id).chunks[0]
        index.add_embeddings(chunk.chunk_id, axis(3))
        assert index.get_document(ref.document_id).chunks[0].has_embedding
        assert chunk_ids(index.vector_search(axis(3), k=1)) == [chunk.chunk_id]

    def test_replaces_the_previous_vector(self, index):
        ref = index.add_document("moving target", embeddings=[axis(0)])
        chunk_id = index.get_document(ref.document_id).chunks[0].chunk_id
        assert index.vector_search(axis(0), k=1)[0].score == pytest.approx(1.0)
        index.add_embeddings(chunk_id, axis(5))
        assert index.vector_search(axis(0), k=1)[0].score == pytest.approx(0.0)
        assert index.vector_search(axis(5), k=1)[0].score == pytest.approx(1.0)
        assert index.stats().embedded_chunks == 1

    def test_unknown_chunk(self, index):
        with pytest.raises(ChunkNotFoundError):
            index.add_embeddings("doc_nope:0", axis(0))

    def test_dimension_and_model_are_checked(self, index):
        chunk_id = index.get_document(index.add_document("x").document_id).chunks[0].chunk_id
        with pytest.raises(DimensionMismatchError):
            index.add_embeddings(chunk_id, [1.0] * (DIM + 1))
        with pytest.raises(ModelMismatchError):
            index.add_embeddings(chunk_id, axis(0), embedding_model="other-model")
        with pytest.raises(InvalidVectorError):
            index.add_embeddings(chunk_id, [float("nan")] * DIM)
        assert index.stats().embedded_chunks == 0


class TestModels:
    def test_an_index_cannot_reopen_a_model_with_another_dimension(self, index, rag_db):
        index.add_document("x", embeddings=[axis(0)])
        with pytest.raises(DimensionMismatchError, match="dimension 8"):
            RagIndex(rag_db, embedding_model="test-model", dimension=DIM * 2)

    def test_models_keep_separate_vectors_in_one_database(self, index, rag_db):
        other = RagIndex(rag_db, embedding_model="other-model", dimension=3)
        ref = index.add_document("shared chunk", embeddings=[axis(0)])
        chunk_id = index.get_document(ref.document_id).chunks[0].chunk_id
        assert other.vector_search([1.0, 0.0, 0.0], k=5) == []
        other.add_embeddings(chunk_id, [0.0, 1.0, 0.0])
        assert chunk_ids(other.vector_search([0.0, 1.0, 0.0], k=5)) == [chunk_id]
        assert index.vector_search(axis(0), k=5)[0].score == pytest.approx(1.0)
        assert index.stats().models == {"other-model": 3, "test-model": DIM}


@pytest.mark.postgresql_only("round trips to a database server")
def test_an_ingest_on_postgresql_takes_four_round_trips_with_vectors_three_without(index, rag_db):
    index.add_document("warm up the pool", embeddings=[axis(0)])

    def trips(call) -> int:
        before = rag_db.counter.this_thread()
        call()
        return (rag_db.counter.this_thread() - before).round_trips

    # The dedupe lookup; BEGIN, the content lock and its re-check; the document's and chunk's
    # rows with the model's registration and its check; the vectors with the COMMIT.
    assert trips(lambda: index.add_document("one short note", embeddings=[axis(1)])) == 4
    assert trips(lambda: index.add_document("another short note")) == 3
    assert trips(lambda: index.add_document("another short note")) == 1  # a duplicate: the lookup
    assert index.stats().documents == 3 and index.stats().embedded_chunks == 2
    assert index.vector_search(axis(1), k=1)[0].score == pytest.approx(1.0)


# -- deletion ---------------------------------------------------------------------------------


class TestDeleteDocument:
    def test_removes_chunks_vectors_statistics_and_index_entries(self, index, rag_db):
        keep = index.add_document("ordinary photosynthesis notes", embeddings=[axis(1)])
        gone = index.add_document("zygomorphic flowers and more zygomorphic petals here",
                                  embeddings=lambda texts: [axis(0)] * len(texts))
        assert index.keyword_search("zygomorphic")   # also warms the cached vector matrix
        assert index.vector_search(axis(0), k=1)[0].document_id == gone.document_id

        assert index.delete_document(gone.document_id) == 1

        with pytest.raises(DocumentNotFoundError):
            index.get_document(gone.document_id)
        assert index.keyword_search("zygomorphic") == []
        assert {r.document_id for r in index.vector_search(axis(0), k=10)} == {keep.document_id}
        for table in ("documents", "chunks", "embeddings", "embeddings_metadata"):
            assert row_count(rag_db, table) == 1, table
        assert keyword_terms(rag_db) == {"ordinari", "photosynthesi", "note"}   # the stems

    def test_unknown_document(self, index):
        with pytest.raises(DocumentNotFoundError):
            index.delete_document("doc_nope")

    def test_deleted_content_can_be_added_again(self, index):
        first = index.add_document("ephemeral")
        index.delete_document(first.document_id)
        again = index.add_document("ephemeral")
        assert again.created and again.document_id != first.document_id


# -- keyword search ---------------------------------------------------------------------------


FILLER = [
    "Volcanoes erupt when magma pressure builds beneath the crust.",
    "The treaty ended the war and redrew several borders.",
    "Sonnets have fourteen lines and a strict rhyme scheme.",
    "Glaciers carve valleys over thousands of years.",
    "Prime numbers have exactly two divisors.",
]


class TestKeywordSearch:
    def test_the_chunk_with_the_exact_phrase_ranks_first(self, index, rag_db):
        for text in FILLER:
            index.add_document(text)
        decoy = index.add_document(
            "Learning of learning: rate the learning of others and rate your own.")
        exact = index.add_document("Motivation changes the rate of learning in teenagers.")
        # The trap is real: by the words alone (no phrase) the decoy wins.
        words_only = rag_db.query_one(
            "SELECT c.document_id FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
            "WHERE chunks_fts MATCH '\"rate\" OR \"of\" OR \"learning\"' ORDER BY rank LIMIT 1"
            if isinstance(rag_db, FileBacked) else
            "SELECT document_id FROM chunks, websearch_to_tsquery('english', 'rate or of or learning') q "
            "WHERE content_tsv @@ q ORDER BY ts_rank_cd(content_tsv, q) DESC LIMIT 1")
        assert words_only["document_id"] == decoy.document_id

        results = index.keyword_search("rate of learning", k=3)
        assert [r.document_id for r in results[:2]] == [exact.document_id, decoy.document_id]

    def test_a_rare_word_finds_its_chunk_first(self, index):
        for text in FILLER:
            index.add_document(text)
        target = index.add_document("Axolotls regrow limbs, and the axolotl heart heals too.")
        results = index.keyword_search("axolotl divisors")
        assert results[0].document_id == target.document_id
        assert results[0].score > results[1].score > 0

    def test_results_carry_chunk_and_document_fields(self, index):
        ref = index.add_document("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda",
                                 title="Greek")
        [result] = index.keyword_search("lambda")
        assert (result.document_id, result.chunk_index, result.title) == \
            (ref.document_id, 1, "Greek")
        assert result.chunk_id == index.get_document(ref.document_id).chunks[1].chunk_id
        assert result.content == "eta theta iota kappa lambda"

    def test_stemming_matches_other_forms_of_a_word(self, index):
        ref = index.add_document("She was running quickly.")
        assert [r.document_id for r in index.keyword_search("runs")] == [ref.document_id]

    def test_k_limits_the_results(self, index):
        for i in range(6):
            index.add_document(f"common word number {i}")
        assert len(index.keyword_search("common", k=4)) == 4
        with pytest.raises(ValueError):
            index.keyword_search("common", k=0)

    @pytest.mark.parametrize("query", [
        "", "   ", '"', '""', "'", "AND", "OR OR", "NOT", "NEAR(a b", "a*", "^a", "*", "content:a",
        "{content}: a", "a + b", "(a OR", "-a", "a\x00b", "日本語", "Ω≈ç√", "🙂 emoji", "___",
        "a' OR 1=1 --", "NEAR/3", "a NEAR b", "content", "chunks_fts", "rank", "\\",
    ])
    def test_any_text_is_a_valid_query(self, index, query):
        index.add_document("content and a rank of NEAR words 日本語 here")
        assert isinstance(index.keyword_search(query), list)

    def test_random_text_never_raises(self, index):
        index.add_document("some searchable words")
        rng = random.Random(1)
        alphabet = 'ab "\'*^:()-+{}[],.;!?\\/\t\n\x00ÅÆ日本🙂_' + "ANDORNOTNEAR"
        for _ in range(200):
            query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
            index.keyword_search(query)

    @pytest.mark.sqlite_only("pruning follows BM25's IDF; ts_rank_cd has none")
    def test_terms_in_half_the_chunks_are_pruned_without_changing_the_ranking(self, rag_db):
        pruning = RagIndex(rag_db, embedding_model="m", dimension=DIM, prune_common_terms_from=4)
        complete = RagIndex(rag_db, embedding_model="m", dimension=DIM,
                            prune_common_terms_from=None)
        for i in range(8):
            subject = "fractions" if i in (2, 5) else "maps"
            pruning.add_document(f"the lesson {i} covers {subject}")
        full = complete.keyword_search("the fractions lesson", k=10)
        pruned = pruning.keyword_search("the fractions lesson", k=10)
        assert len(full) == 8
        assert chunk_ids(pruned) == chunk_ids(full)[:2]
        assert all("fractions" in r.content for r in pruned)
        # A query made only of common terms is not pruned to nothing.
        assert len(pruning.keyword_search("the lesson", k=10)) == 8


# -- vector search ----------------------------------------------------------------------------


class TestVectorSearch:
    def test_returns_the_nearest_chunks_by_cosine_similarity(self, index):
        north = index.add_document("north", embeddings=[[1, 0, 0, 0, 0, 0, 0, 0]])
        northeast = index.add_document("northeast", embeddings=[[1, 1, 0, 0, 0, 0, 0, 0]])
        index.add_document("east", embeddings=[[0, 5, 0, 0, 0, 0, 0, 0]])
        index.add_document("south", embeddings=[[-1, 0, 0, 0, 0, 0, 0, 0]])
        results = index.vector_search([2, 0, 0, 0, 0, 0, 0, 0], k=2)
        assert [r.document_id for r in results] == [north.document_id, northeast.document_id]
        assert [r.score for r in results] == pytest.approx([1.0, 2 ** -0.5], abs=1e-6)
        assert results[0].content == "north"

    def test_chunks_without_vectors_are_not_found(self, index):
        index.add_document("no vector here")
        assert index.vector_search(axis(0)) == []

    def test_the_query_vector_is_checked(self, index):
        index.add_document("v", embeddings=[axis(0)])
        with pytest.raises(DimensionMismatchError):
            index.vector_search([1.0, 0.0])
        with pytest.raises(InvalidVectorError):
            index.vector_search([0.0] * DIM)

    def test_sees_vectors_written_through_another_connection(self, index, rag_db, db_key):
        index.add_document("first", embeddings=[axis(0)])
        assert len(index.vector_search(axis(1), k=10)) == 1    # matrix now cached
        other_db = same_database(rag_db, db_key)
        try:
            other = RagIndex(other_db, embedding_model="test-model", dimension=DIM)
            ref = other.add_document("second", embeddings=[axis(1)])
        finally:
            other_db.close_all()
        assert index.vector_search(axis(1), k=1)[0].document_id == ref.document_id


    def test_concurrent_searches_during_ingestion_all_succeed(self, index):
        index.add_document("seed document", embeddings=[axis(0)])
        errors: list[BaseException] = []

        def search() -> None:
            try:
                for i in range(20):
                    assert index.hybrid_search("document", axis(i % DIM), k=3)
            except BaseException as exc:   # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=search) for _ in range(4)]
        for thread in threads:
            thread.start()
        for i in range(20):
            index.add_document(f"document number {i}", embeddings=[axis(i % DIM)])
        for thread in threads:
            thread.join()
        index.db.close_all()
        assert errors == []
        assert len(index.vector_search(axis(0), k=100)) == 21


# -- hybrid search ----------------------------------------------------------------------------

# Four queries. For each, the relevant chunk is second by keywords (a decoy repeats the
# query words in another sense) and second by vectors (a paraphrase without the query words
# is nearer); each decoy is found by one method only.
# Vectors use three axes per query: its topic, the keyword decoy's topic, and a side topic.
HYBRID_CORPUS = [
    {"query": "jaguar speed",
     "relevant": "A jaguar stalks prey along rivers and bursts into speed for a short ambush.",
     "keyword_decoy": "Jaguar speed records: the Jaguar sports car set a speed record at "
                      "speed trials.",
     "vector_decoy": "Cheetahs are the fastest land animals, sprinting after gazelles."},
    {"query": "python memory management",
     "relevant": "Python frees memory with reference counting plus a cycle detector; "
                 "management is automatic.",
     "keyword_decoy": "Python memory game for kids: match python pictures from memory, python "
                      "memory cards, python memory management tips for parents.",
     "vector_decoy": "CPython's garbage collector reclaims unreachable objects and breaks "
                     "reference cycles."},
    {"query": "apple harvest",
     "relevant": "Farmers harvest each apple by hand when orchards ripen in autumn.",
     "keyword_decoy": "Apple stock analysts harvest apple revenue data; apple investors await "
                      "the harvest of apple profits.",
     "vector_decoy": "Pickers gather ripe pears and plums from the orchard in September."},
    {"query": "mercury temperature",
     "relevant": "The planet Mercury has the widest surface temperature swing, scorching by day.",
     "keyword_decoy": "Mercury thermometers show temperature: mercury expands as temperature "
                      "rises and mercury is toxic.",
     "vector_decoy": "Venus is the hottest planet because its thick atmosphere traps heat."},
]


def _hybrid_vectors(i: int) -> dict[str, list[float]]:
    topic, decoy_topic, side = 3 * i, 3 * i + 1, 3 * i + 2
    dim = 3 * len(HYBRID_CORPUS)

    def mix(*parts):
        vector = [0.0] * dim
        for position, weight in parts:
            vector[position] = weight
        return vector

    return {"query": mix((topic, 1.0)),
            "vector_decoy": mix((topic, 0.95), (side, 0.31)),     # cosine 0.95
            "relevant": mix((topic, 0.85), (side, 0.53)),         # cosine 0.85
            "keyword_decoy": mix((topic, -0.2), (decoy_topic, 0.98))}   # cosine -0.2


def _mrr(rankings: list[list[str]], relevant: list[str]) -> float:
    return sum(1 / (ranking.index(r) + 1) if r in ranking else 0.0
               for ranking, r in zip(rankings, relevant)) / len(relevant)


class TestHybridSearch:
    @pytest.fixture
    def corpus_index(self, rag_db):
        index = RagIndex(rag_db, embedding_model="toy", dimension=3 * len(HYBRID_CORPUS))
        relevant = []
        for i, case in enumerate(HYBRID_CORPUS):
            vectors = _hybrid_vectors(i)
            for role in ("relevant", "keyword_decoy", "vector_decoy"):
                ref = index.add_document(case[role], title=f"{case['query']} / {role}",
                                         embeddings=[vectors[role]])
                if role == "relevant":
                    relevant.append(ref.document_id)
        return index, relevant

    def test_fusion_beats_keyword_and_vector_search_alone(self, corpus_index):
        index, relevant = corpus_index
        keyword, vector, hybrid = [], [], []
        for i, case in enumerate(HYBRID_CORPUS):
            query_vector = _hybrid_vectors(i)["query"]
            keyword.append([r.document_id for r in index.keyword_search(case["query"], k=5)])
            vector.append([r.document_id for r in index.vector_search(query_vector, k=5)])
            fused = index.hybrid_search(case["query"], query_vector, k=5)
            hybrid.append([r.document_id for r in fused])
        # The corpus disagrees as designed: each method alone puts a decoy first.
        assert all(ranking[0] != r for ranking, r in zip(keyword + vector, relevant * 2))
        assert _mrr(keyword, relevant) == pytest.approx(0.5)
        assert _mrr(vector, relevant) == pytest.approx(0.5)
        assert _mrr(hybrid, relevant) == pytest.approx(1.0)

    def test_scores_are_reciprocal_rank_fusion_scores(self, corpus_index):
        index, _ = corpus_index
        results = index.hybrid_search("jaguar speed", _hybrid_vectors(0)["query"], k=3, rrf_k=60)
        assert [r.score for r in results] == pytest.approx([2 / 62, 1 / 61 + 1 / 72, 1 / 61])
        assert [r.title for r in results] == [
            "jaguar speed / relevant", "jaguar speed / keyword_decoy",
            "jaguar speed / vector_decoy"]

    def test_works_when_the_text_has_no_searchable_word(self, corpus_index):
        index, relevant = corpus_index
        results = index.hybrid_search("?!", _hybrid_vectors(2)["query"], k=2)
        assert [r.title for r in results] == \
            ["apple harvest / vector_decoy", "apple harvest / relevant"]

    def test_arguments_are_checked(self, corpus_index):
        index, _ = corpus_index
        with pytest.raises(DimensionMismatchError):
            index.hybrid_search("apple", [1.0, 0.0], k=2)
        with pytest.raises(ValueError):
            index.hybrid_search("apple", _hybrid_vectors(0)["query"], k=0)


# -- query statistics and stats ---------------------------------------------------------------

MOMENT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)


class TestQueryStatistics:
    def test_returned_chunks_are_counted_with_the_time_of_the_query(self, rag_db):
        index = RagIndex(rag_db, embedding_model="m", dimension=DIM, clock=lambda: MOMENT)
        hit = index.add_document("quantum tunnelling", embeddings=[axis(0)])
        miss = index.add_document("classical mechanics", embeddings=[axis(1)])
        index.keyword_search("quantum")
        index.vector_search(axis(0), k=1)
        index.hybrid_search("quantum", axis(0), k=1)
        [hit_chunk] = index.get_document(hit.document_id).chunks
        [miss_chunk] = index.get_document(miss.document_id).chunks
        assert (hit_chunk.query_count, hit_chunk.last_queried) == (3, "2026-03-04T05:06:07.000000Z")
        assert (miss_chunk.query_count, miss_chunk.last_queried) == (0, None)
        assert index.stats().total_queries == 3

    def test_can_be_switched_off(self, rag_db):
        index = RagIndex(rag_db, embedding_model="m", dimension=DIM, track_queries=False)
        ref = index.add_document("quantum", embeddings=[axis(0)])
        index.hybrid_search("quantum", axis(0))
        assert index.get_document(ref.document_id).chunks[0].query_count == 0

    @pytest.mark.sqlite_only("a writer holding SQLite's write lock")
    def test_a_search_does_not_wait_for_a_busy_writer(self, index, rag_db):
        ref = index.add_document("quantum")
        writer = rag_db.connect_new()
        try:
            writer.execute("BEGIN IMMEDIATE")
            started = time.monotonic()
            assert len(index.keyword_search("quantum")) == 1
            assert time.monotonic() - started < 3.0    # busy_timeout is 5 s
            writer.execute("ROLLBACK")
        finally:
            writer.close()
        assert index.get_document(ref.document_id).chunks[0].query_count == 0
        index.keyword_search("quantum")
        assert index.get_document(ref.document_id).chunks[0].query_count == 1


    @pytest.mark.postgresql_only
    def test_a_search_does_not_wait_for_a_writer_holding_its_statistics(self, index, rag_db):
        ref = index.add_document("quantum")

        def holding_the_row():
            transaction = rag_db.transaction()
            conn = transaction.__enter__()
            conn.execute("UPDATE embeddings_metadata SET query_count = query_count")
            return contextlib.closing(_Ending(transaction))

        with held_elsewhere(holding_the_row):
            started = time.monotonic()
            assert len(index.keyword_search("quantum")) == 1
            assert time.monotonic() - started < 3.0
        assert index.get_document(ref.document_id).chunks[0].query_count == 0
        index.keyword_search("quantum")
        assert index.get_document(ref.document_id).chunks[0].query_count == 1


class _Ending:
    """Ends a transaction entered by hand (rolled back: the holder only held the row)."""

    def __init__(self, transaction) -> None:
        self.transaction = transaction

    def close(self) -> None:
        try:
            self.transaction.__exit__(RuntimeError, RuntimeError("released"), None)
        except RuntimeError:
            pass


def test_stats_count_documents_chunks_vectors_and_models(index):
    assert index.stats().documents == 0 and index.stats().models == {}
    index.add_document("a b c d e f g h i j k l", embeddings=[axis(0), axis(1)])
    index.add_document("no vectors")
    stats = index.stats()
    assert (stats.documents, stats.chunks, stats.embedded_chunks, stats.total_queries) == \
        (2, 3, 2, 0)
    assert stats.models == {"test-model": DIM}
