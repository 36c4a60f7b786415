"""Turn arbitrary user text into safe FTS5 MATCH expressions.

FTS5 query syntax gives meaning to quotes, parentheses, ``AND``/``OR``/``NOT``/``NEAR``,
``*``, ``^``, ``:`` and ``-``, so raw user input can raise a syntax error or search a
column. We keep only word characters, quote every term (a quoted string is always a plain
phrase), and OR the terms together so a chunk needs only some of them; BM25 then ranks
chunks with more, rarer terms higher. For a multi-word query the whole query is added as a
quoted phrase too, which gives chunks containing it verbatim an extra BM25 contribution:
the exact match ranks first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TERMS = 32   # bounds the work one query can ask of the index

_TERM = re.compile(r"\w+")


def quote(text: str) -> str:
    """``text`` as an FTS5 string: a phrase, whatever characters it holds."""
    return '"' + text.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class KeywordQuery:
    """The quoted parts of a query: the whole phrase (multi-word queries) and each term."""

    phrase: str | None
    terms: tuple[str, ...]

    @property
    def parts(self) -> tuple[str, ...]:
        return (self.phrase, *self.terms) if self.phrase else self.terms

    def expression(self, parts: tuple[str, ...] | list[str] | None = None) -> str:
        """``parts`` (default: all of them) ORed into one MATCH expression."""
        return " OR ".join(self.parts if parts is None else parts)


def parse_query(text: str) -> KeywordQuery | None:
    """The searchable parts of ``text``, or None when it holds no word at all."""
    terms = _TERM.findall(text)[:MAX_TERMS]
    if not terms:
        return None
    distinct = tuple(quote(term) for term in dict.fromkeys(term.lower() for term in terms))
    phrase = quote(" ".join(terms)) if len(terms) > 1 else None
    return KeywordQuery(phrase, distinct)


def match_expression(text: str) -> str | None:
    """The full MATCH expression for ``text``, or None when it holds no searchable word."""
    parsed = parse_query(text)
    return None if parsed is None else parsed.expression()
