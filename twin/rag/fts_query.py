"""Turn arbitrary user text into a safe FTS5 MATCH expression.

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

MAX_TERMS = 32   # bounds the work one query can ask of the index

_TERM = re.compile(r"\w+")


def _quote(text: str) -> str:
    return '"' + text.replace('"', '""') + '"'


def match_expression(text: str) -> str | None:
    """The MATCH expression for ``text``, or None when it holds no searchable word."""
    terms = _TERM.findall(text)[:MAX_TERMS]
    if not terms:
        return None
    distinct = list(dict.fromkeys(term.lower() for term in terms))
    parts = [_quote(term) for term in distinct]
    if len(terms) > 1:
        parts.insert(0, _quote(" ".join(terms)))
    return " OR ".join(parts)
