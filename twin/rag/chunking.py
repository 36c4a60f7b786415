"""Split a document into ordered, overlapping chunks.

Two units are supported:

- ``"words"`` (default): a word is a run of non-whitespace characters. A chunk holds up to
  ``size`` words and the next chunk starts ``size - overlap`` words later. The chunk text is
  the exact slice of the document from its first word to its last, so line breaks and
  punctuation survive and ``start``/``end`` point back into the document.
- ``"chars"``: a chunk is the exact slice of ``size`` characters (whitespace included) and
  the next one starts ``size - overlap`` characters later.

The last chunk may be shorter than ``size``; no chunk is ever entirely contained in the
previous one (splitting stops once a window reaches the end of the text).

    >>> [c.text for c in Chunker(size=3, overlap=1).split("a b c d e f")]
    ['a b c', 'c d e', 'e f']
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import InvalidChunkingError

UNITS = ("words", "chars")

_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class TextChunk:
    """One chunk: its position, text, and where it lies in the document."""

    index: int
    text: str
    start: int    # character offset of the chunk's first character in the document
    end: int      # character offset just past its last character
    size: int     # number of units (words or characters) in the chunk


@dataclass(frozen=True, slots=True)
class Chunker:
    """Chunking settings, validated on construction.

    The defaults suit the seed's embedding model (paraphrase-MiniLM-L3-v2), which truncates
    its input at 128 word pieces: about 100 English words.
    """

    size: int = 100
    overlap: int = 20
    unit: str = "words"

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise InvalidChunkingError(f"unit must be one of {UNITS}, not {self.unit!r}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise InvalidChunkingError(f"size must be a positive integer, not {self.size!r}")
        if isinstance(self.overlap, bool) or not isinstance(self.overlap, int) or self.overlap < 0:
            raise InvalidChunkingError(
                f"overlap must be a non-negative integer, not {self.overlap!r}")
        if self.overlap >= self.size:
            # Otherwise the window would never advance.
            raise InvalidChunkingError(
                f"overlap ({self.overlap}) must be smaller than size ({self.size})")

    @property
    def step(self) -> int:
        return self.size - self.overlap

    def split(self, text: str) -> list[TextChunk]:
        """The chunks of ``text`` in order; empty for text without any non-whitespace."""
        if not text.strip():
            return []
        if self.unit == "words":
            return self._split_words(text)
        return self._split_chars(text)

    def _split_words(self, text: str) -> list[TextChunk]:
        spans = [m.span() for m in _WORD.finditer(text)]
        chunks = []
        for first in range(0, len(spans), self.step):
            last = min(first + self.size, len(spans)) - 1
            start, end = spans[first][0], spans[last][1]
            chunks.append(TextChunk(len(chunks), text[start:end], start, end, last - first + 1))
            if last == len(spans) - 1:
                break
        return chunks

    def _split_chars(self, text: str) -> list[TextChunk]:
        chunks = []
        for start in range(0, len(text), self.step):
            end = min(start + self.size, len(text))
            chunks.append(TextChunk(len(chunks), text[start:end], start, end, end - start))
            if end == len(text):
                break
        return chunks


def chunk_text(text: str, *, size: int = 100, overlap: int = 20,
               unit: str = "words") -> list[TextChunk]:
    """Split ``text`` into ordered chunks (see the module docstring for the units)."""
    return Chunker(size=size, overlap=overlap, unit=unit).split(text)
