"""Turning user text into FTS5 MATCH expressions (safety is tested end to end in test_index)."""

from __future__ import annotations

from twin.rag.fts_query import MAX_TERMS, match_expression, parse_query, quote


def test_a_single_word_is_one_quoted_term():
    assert match_expression("photosynthesis") == '"photosynthesis"'


def test_several_words_are_the_exact_phrase_or_any_term():
    assert match_expression("Rate of learning") == \
        '"Rate of learning" OR "rate" OR "of" OR "learning"'


def test_operators_and_punctuation_lose_their_meaning():
    assert match_expression('NOT "a" AND (b* OR c:d) NEAR(e)') == \
        '"NOT a AND b OR c d NEAR e" OR "not" OR "a" OR "and" OR "b" OR "or" OR "c" OR "d" ' \
        'OR "near" OR "e"'


def test_repeated_terms_appear_once_case_insensitively():
    assert parse_query("Cell cell CELL").terms == ('"cell"',)


def test_text_without_words_gives_nothing():
    assert match_expression("") is None
    assert match_expression(" ?!* () \"' ") is None


def test_at_most_max_terms_are_used():
    parsed = parse_query(" ".join(f"w{i}" for i in range(MAX_TERMS + 10)))
    assert len(parsed.terms) == MAX_TERMS


def test_quote_doubles_embedded_quotes():
    assert quote('say "hi"') == '"say ""hi"""'
