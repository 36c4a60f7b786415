"""The hash-chained anomaly ledger (``ledger.db``): the seed's ``DatabaseLedger`` API."""

from .chain import GENESIS_HASH, ChainVerification, entry_hash
from .errors import DuplicateEntryError, InvalidArgumentError, InvalidEntryError, LedgerError
from .ledger import DatabaseLedger

__all__ = [
    "GENESIS_HASH", "ChainVerification", "DatabaseLedger", "DuplicateEntryError",
    "InvalidArgumentError", "InvalidEntryError", "LedgerError", "entry_hash",
]
