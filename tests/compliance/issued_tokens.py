"""Helpers of the API-token tests (test_token*.py; their fixtures ``tokens`` and ``monotonic``
are in conftest.py): two learner subjects, a stored column of a token, a hand-moved clock."""

from __future__ import annotations

SUBJECT = "5" * 64
OTHER_SUBJECT = "6" * 64


def stored(vault, token_id: str, column: str):
    """One column of a token's row, as the vault holds it."""
    return vault.query_one(f"SELECT {column} FROM api_tokens WHERE token_id = ?", (token_id,))[0]


class FakeMonotonic:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
