"""The hash-chained anomaly ledger (``ledger.db``): the seed's ``DatabaseLedger`` API."""

from .chain import GENESIS_HASH, ChainVerification, entry_hash
from .connections import (ConnectionPool, DatabaseConfig, PoolExhaustedError, close_all_connections,
                          get_connection_pool, get_db_connection)
from .errors import DuplicateEntryError, InvalidArgumentError, InvalidEntryError, LedgerError
from .ledger import DatabaseLedger

__all__ = [
    "GENESIS_HASH", "ChainVerification", "ConnectionPool", "DatabaseConfig", "DatabaseLedger",
    "DuplicateEntryError", "InvalidArgumentError", "InvalidEntryError", "LedgerError",
    "PoolExhaustedError", "close_all_connections", "entry_hash", "get_connection_pool",
    "get_db_connection",
]
