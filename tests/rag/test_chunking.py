"""Splitting documents into ordered, overlapping chunks by words or characters."""

from __future__ import annotations

import random

import pytest

from twin.rag import Chunker, InvalidChunkingError, RagError, chunk_text


def texts(chunks):
    return [c.text for c in chunks]


class TestWords:
    def test_windows_of_size_words_advance_by_size_minus_overlap(self):
        chunks = Chunker(size=3, overlap=1).split("a b c d e f g")
        assert texts(chunks) == ["a b c", "c d e", "e f g"]

    def test_chunks_are_numbered_in_document_order(self):
        chunks = Chunker(size=2, overlap=0).split("one two three four five")
        assert [c.index for c in chunks] == [0, 1, 2]
        assert texts(chunks) == ["one two", "three four", "five"]

    def test_consecutive_chunks_share_exactly_overlap_words(self):
        words = [f"w{i}" for i in range(50)]
        chunks = Chunker(size=10, overlap=4).split(" ".join(words))
        for before, after in zip(chunks, chunks[1:]):
            assert before.text.split()[-4:] == after.text.split()[:4]

    def test_stops_once_a_window_reaches_the_end(self):
        # A third window "d" would be wholly inside "c d": it must not exist.
        assert texts(Chunker(size=3, overlap=1).split("a b c d")) == ["a b c", "c d"]
        assert texts(Chunker(size=2, overlap=0).split("a b c d")) == ["a b", "c d"]

    def test_text_shorter_than_one_chunk_is_one_chunk_without_outer_whitespace(self):
        chunks = Chunker(size=100, overlap=10).split("  \n short text here \n")
        assert texts(chunks) == ["short text here"]
        assert chunks[0].size == 3

    def test_chunk_text_is_the_exact_slice_of_the_document_with_its_line_breaks(self):
        text = "Title\n\nFirst line, with punctuation!\n  Second\tline."
        chunks = Chunker(size=4, overlap=1).split(text)
        assert chunks[0].text == "Title\n\nFirst line, with"
        for chunk in chunks:
            assert text[chunk.start:chunk.end] == chunk.text

    def test_every_word_is_in_some_chunk_and_sizes_never_exceed_the_limit(self):
        rng = random.Random(7)
        for _ in range(50):
            words = [rng.choice(["alpha", "beta", "gamma", "δέλτα", "x"]) + str(i)
                     for i in range(rng.randint(1, 300))]
            size = rng.randint(1, 40)
            overlap = rng.randint(0, size - 1)
            chunks = Chunker(size=size, overlap=overlap).split(" ".join(words))
            covered = [w for c in chunks for w in c.text.split()]
            assert set(covered) == set(words)
            assert all(c.size == len(c.text.split()) <= size for c in chunks)
            assert chunks[-1].text.split()[-1] == words[-1]


class TestChars:
    def test_windows_of_size_characters(self):
        assert texts(Chunker(size=4, overlap=2, unit="chars").split("abcdefghij")) == \
            ["abcd", "cdef", "efgh", "ghij"]
        assert texts(Chunker(size=4, overlap=1, unit="chars").split("abcdefghij")) == \
            ["abcd", "defg", "ghij"]

    def test_whitespace_counts_as_characters(self):
        chunks = Chunker(size=3, overlap=0, unit="chars").split("a b c")
        assert texts(chunks) == ["a b", " c"]
        assert [(c.start, c.end, c.size) for c in chunks] == [(0, 3, 3), (3, 5, 2)]


class TestValidation:
    @pytest.mark.parametrize("size, overlap", [(5, 5), (5, 6), (1, 1)])
    def test_overlap_must_be_smaller_than_size(self, size, overlap):
        with pytest.raises(InvalidChunkingError, match="smaller than size"):
            Chunker(size=size, overlap=overlap)

    @pytest.mark.parametrize("kwargs", [
        {"size": 0}, {"size": -3}, {"size": 2.5}, {"size": True},
        {"overlap": -1}, {"overlap": 1.0}, {"unit": "tokens"}, {"unit": "WORDS"},
    ])
    def test_rejects_impossible_settings(self, kwargs):
        with pytest.raises(InvalidChunkingError):
            Chunker(**{"size": 10, "overlap": 2, **kwargs})

    def test_chunking_errors_are_rag_errors_and_value_errors(self):
        with pytest.raises(RagError):
            chunk_text("x", size=2, overlap=2)
        with pytest.raises(ValueError):
            chunk_text("x", size=2, overlap=2)

    @pytest.mark.parametrize("text", ["", "   ", "\n\t \n"])
    def test_text_without_words_has_no_chunks(self, text):
        assert Chunker().split(text) == []
        assert Chunker(unit="chars").split(text) == []


def test_chunk_text_is_a_shortcut_for_a_chunker():
    text = "the quick brown fox jumps over the lazy dog"
    assert chunk_text(text, size=4, overlap=2) == Chunker(size=4, overlap=2).split(text)
    assert chunk_text(text, size=5, overlap=0, unit="chars") == \
        Chunker(size=5, overlap=0, unit="chars").split(text)
