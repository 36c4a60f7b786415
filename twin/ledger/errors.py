"""Named errors of the ledger.

Validation errors are ``ValueError`` subclasses, the seed's contract.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every ledger error."""


class InvalidEntryError(LedgerError, ValueError):
    """An entry failed validation.

    ``errors`` maps each offending field (``entry`` for the entry as a whole) to its messages,
    like a marshmallow ``ValidationError``, so an API can answer 422 field by field.
    """

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        details = "; ".join(f"{field}: {', '.join(messages)}" for field, messages in errors.items())
        super().__init__(f"invalid ledger entry: {details}")


class DuplicateEntryError(LedgerError, ValueError):
    """An entry with the same (timestamp, node_id) is already in the ledger.

    The seed let ``sqlite3.IntegrityError`` escape "handled as ValueError"; this names it.
    """

    def __init__(self, timestamp: float, node_id: str) -> None:
        self.timestamp = timestamp
        self.node_id = node_id
        super().__init__(f"duplicate ledger entry: node_id {node_id!r} already has an entry "
                         f"at timestamp {timestamp!r}")


class InvalidArgumentError(LedgerError, ValueError):
    """A query or maintenance argument is out of range (e.g. a negative ``last_seen_id``)."""
