"""Seed 003's own usage examples, run as its users would write them (only the imports adapted:
``from database import X`` is ``from twin.ledger import X``), against real SQLCipher files
configured through the environment."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from twin.storage import StorageConfigError, open_keyed

SQLITE_HEADER = b"SQLite format 3\x00"


@pytest.fixture(autouse=True)
def deployment(seed_deployment):
    yield seed_deployment
    from twin.ledger import close_all_connections

    close_all_connections()


def ledger_file() -> Path:
    return Path("data") / "ledger.db"


def rows_on_disk(keyring, path: Path, sql: str) -> list[tuple]:
    conn = open_keyed(path, keyring.database_key, read_only=True)
    try:
        return [tuple(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def test_the_connection_pool_example_prints_the_seed_default(capsys):
    from twin.ledger import get_connection_pool

    # Get global connection pool
    pool = get_connection_pool()
    print(f"Pool max connections: {pool.config.max_connections}")

    assert capsys.readouterr().out == "Pool max connections: 10\n"
    assert pool.config.path == str(Path.cwd() / "data" / "ledger.db") or \
        Path(pool.config.path).resolve() == ledger_file().resolve()


def test_the_context_manager_example_counts_entries_in_the_configured_encrypted_file(capsys, deployment):
    from twin.ledger import DatabaseLedger, get_db_connection

    DatabaseLedger().append_entry({"timestamp": 1.0, "node_id": "Node_1", "features": [],
                                   "confidence": 0.5})
    # Safe database operations with context manager
    try:
        with get_db_connection() as conn:
            cursor = conn.execute("SELECT COUNT(*) FROM ledger")
            count = cursor.fetchone()[0]
            print(f"Ledger entries: {count}")
    except Exception as e:
        print(f"Database error: {e}")

    assert capsys.readouterr().out == "Ledger entries: 1\n"
    assert not ledger_file().read_bytes().startswith(SQLITE_HEADER)


def test_get_db_connection_rolls_back_when_the_block_raises_and_commits_when_it_ends(deployment):
    from twin.ledger import get_db_connection

    with get_db_connection() as conn:
        conn.execute("CREATE TABLE notes (n INTEGER)")
    with pytest.raises(RuntimeError):
        with get_db_connection() as conn:
            conn.execute("INSERT INTO notes VALUES (1)")
            raise RuntimeError("boom")
    with get_db_connection() as conn:
        conn.execute("INSERT INTO notes VALUES (2)")

    assert rows_on_disk(deployment, ledger_file(), "SELECT n FROM notes") == [(2,)]


def test_close_all_connections_closes_them_and_the_next_use_reopens(capsys):
    from twin.ledger import close_all_connections, get_connection_pool, get_db_connection

    pool = get_connection_pool()
    conn = pool.get_connection()
    # Clean shutdown
    close_all_connections()

    with pytest.raises(Exception, match="closed"):
        conn.execute("SELECT 1")
    with get_db_connection() as conn:
        assert conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == 0


def test_the_constructor_examples_open_the_configured_ledger_and_a_custom_file(deployment):
    from twin.ledger import DatabaseLedger

    # Create ledger with default configuration
    ledger = DatabaseLedger()

    # Create ledger with custom path
    custom_ledger = DatabaseLedger("custom_ledger.db")

    ledger.append_entry({"timestamp": 1.0, "node_id": "default", "features": [], "confidence": 0.1})
    custom_ledger.append_entry({"timestamp": 1.0, "node_id": "custom", "features": [], "confidence": 0.1})
    assert rows_on_disk(deployment, ledger_file(), "SELECT node_id FROM ledger") == [("default",)]
    assert rows_on_disk(deployment, Path("custom_ledger.db"), "SELECT node_id FROM ledger") == [("custom",)]
    assert not Path("custom_ledger.db").read_bytes().startswith(SQLITE_HEADER)


def test_the_append_example_prints_the_new_id_and_the_validation_example_catches_value_error(capsys):
    from twin.ledger import DatabaseLedger

    ledger = DatabaseLedger()
    # Append valid entry
    entry = {
        'timestamp': time.time(),
        'node_id': 'Node_1',
        'features': [{'packet_size': 500, 'source_ip': '192.168.1.100'}],
        'confidence': 0.85
    }

    entry_id = ledger.append_entry(entry)
    print(f"Appended entry with ID: {entry_id}")

    invalid_entry = {**entry, "confidence": 1.5}
    # Validation is called automatically by append_entry
    try:
        ledger.append_entry(invalid_entry)
    except ValueError as e:
        print(f"Validation error: {e}")

    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Appended entry with ID: 1"
    assert out[1].startswith("Validation error: invalid ledger entry: confidence")


def test_a_duplicate_entry_is_a_value_error_as_the_seed_handles_integrity_errors():
    from twin.ledger import DatabaseLedger, DuplicateEntryError

    ledger = DatabaseLedger()
    entry = {'timestamp': 5.0, 'node_id': 'Node_1', 'features': [], 'confidence': 0.5}
    ledger.append_entry(entry)

    with pytest.raises(ValueError, match="duplicate ledger entry") as raised:
        ledger.append_entry(entry)
    assert isinstance(raised.value, DuplicateEntryError)
    assert len(ledger.read_ledger()) == 1


def test_the_reading_examples_print_what_was_appended(capsys):
    from twin.ledger import DatabaseLedger

    ledger = DatabaseLedger()
    for i in range(130):
        ledger.append_entry({"timestamp": 1000.0 + i, "node_id": f"Node_{i % 2}",
                             "features": [{"i": i}], "confidence": 0.5})

    # Read all entries (uses cache if available)
    entries = ledger.read_ledger()
    print(f"Total entries: {len(entries)}")

    for entry in entries[-5:]:  # Show last 5 entries
        print(f"ID {entry['id']}: Node {entry['node_id']}, "
              f"Confidence: {entry['confidence']:.3f}")

    # Poll for new entries since last seen ID
    last_id = 100
    new_entries = ledger.get_new_entries(last_id)
    print(f"Found {len(new_entries)} new entries")

    for entry in new_entries:
        print(f"New entry {entry['id']}: {entry['node_id']}")

    # Retrieve specific entry
    entry = ledger.get_entry_by_id(123)
    if entry:
        print(f"Entry 123: Node {entry['node_id']}, "
              f"Features: {len(entry['features'])}")
    else:
        print("Entry 123 not found")

    # Get recent entries for specific node
    node_entries = ledger.get_entries_by_node("Node_1", limit=10)
    print(f"Recent entries for Node_1: {len(node_entries)}")

    # Get all entries for node (no limit)
    all_node_entries = ledger.get_entries_by_node("Node_1")

    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Total entries: 130"
    assert out[1:6] == [f"ID {i}: Node Node_{(i - 1) % 2}, Confidence: 0.500" for i in range(126, 131)]
    assert out[6] == "Found 30 new entries"
    assert out[7] == "New entry 101: Node_0" and out[36] == "New entry 130: Node_1"
    assert out[37] == "Entry 123: Node Node_0, Features: 1"
    assert out[38] == "Recent entries for Node_1: 10"
    assert len(all_node_entries) == 65


def test_the_cleanup_example_deletes_entries_older_than_thirty_days(capsys):
    from twin.ledger import DatabaseLedger

    ledger = DatabaseLedger()
    now = time.time()
    ledger.append_entry({"timestamp": now - 31 * 86400, "node_id": "old", "features": [], "confidence": 0.5})
    ledger.append_entry({"timestamp": now - 60, "node_id": "new", "features": [], "confidence": 0.5})

    # Clean up entries older than 30 days
    thirty_days = 30 * 24 * 60 * 60
    deleted_count = ledger.cleanup_old_entries(thirty_days)
    print(f"Deleted {deleted_count} old entries")

    assert capsys.readouterr().out == "Deleted 1 old entries\n"
    assert [e["node_id"] for e in ledger.read_ledger()] == ["new"]
    assert ledger.verify_chain()


def test_the_best_practice_patterns_and_a_subclass_work():
    from twin.ledger import DatabaseLedger, get_connection_pool, get_db_connection

    # Pattern 1: Context manager (recommended)
    with get_db_connection() as conn:
        # Safe concurrent operations
        pass

    # Pattern 2: Explicit pool management
    pool = get_connection_pool()
    conn = pool.get_connection()
    try:
        # Database operations
        pass
    finally:
        # Connection automatically managed by pool
        pass

    class CustomLedger(DatabaseLedger):
        def append_custom_entry(self, custom_data):
            # Validate and transform custom data
            entry = self._transform_custom_data(custom_data)
            return self.append_entry(entry)

        def _transform_custom_data(self, custom_data):
            return {"timestamp": custom_data["t"], "node_id": custom_data["n"], "features": [],
                    "confidence": 1.0}

    assert conn is pool.get_connection()
    assert CustomLedger().append_custom_entry({"t": 3.0, "n": "Node_9"}) == 1
    assert DatabaseLedger().get_entry_by_id(1)["node_id"] == "Node_9"


def test_a_thread_gets_its_own_connection_and_the_pool_refuses_more_threads_than_max_connections():
    from twin.ledger import ConnectionPool, DatabaseConfig, PoolExhaustedError

    pool = ConnectionPool(DatabaseConfig(path="pool.db", max_connections=1))
    mine = pool.get_connection()
    seen: list[object] = []
    release = threading.Event()
    held = threading.Event()

    def other_thread() -> None:
        try:
            pool.get_connection()
        except PoolExhaustedError as exc:
            seen.append(exc)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert isinstance(seen[0], PoolExhaustedError)

    pool.close_all()

    def holder() -> None:
        seen.append(pool.get_connection())
        held.set()
        release.wait()

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait()
    assert seen[1] is not mine
    release.set()
    thread.join()
    # The holder ended: its connection is closed and this thread may have one again.
    assert pool.get_connection() is not None
    pool.close_all()


def test_the_seed_configuration_values_are_checked():
    from twin.ledger import DatabaseConfig

    assert DatabaseConfig(timeout=60, cache_size=50000, max_connections=20).engine_settings().busy_timeout_ms == 60000
    with pytest.raises(ValueError, match="synchronous_mode must be NORMAL or FULL"):
        DatabaseConfig(max_connections=5, timeout=10, synchronous_mode="OFF")
    with pytest.raises(ValueError, match="journal_mode must be WAL"):
        DatabaseConfig(journal_mode="DELETE")


def test_on_postgresql_the_raw_connection_api_says_in_one_line_that_it_is_sqlcipher_only(monkeypatch):
    from twin.ledger import get_db_connection

    monkeypatch.setenv("LEDGER_STORAGE_BACKEND", "postgresql")
    with pytest.raises(StorageConfigError) as raised:
        with get_db_connection():
            pass
    assert "SQLCipher-only" in str(raised.value) and "\n" not in str(raised.value)
