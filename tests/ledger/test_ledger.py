"""DatabaseLedger: the seed's API on each backend (a real SQLCipher file, the ledger schema of a
real PostgreSQL database), hash-chained, cached, concurrent across threads and processes."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from storage_backends import location, raw_connection
from twin.catalog import open_database
from twin.ledger import (GENESIS_HASH, DatabaseLedger, DuplicateEntryError, InvalidArgumentError,
                         InvalidEntryError, entry_hash)
from twin.ledger.ledger import CHAIN_LOCK
from twin.ledger.schema import MIGRATIONS
from twin.storage import Database, IntegrityError, Migrator

REPO_ROOT = Path(__file__).resolve().parents[2]


def entry(i: int = 0, node: str = "Node_1", **overrides):
    base = {"timestamp": 1_700_000_000.0 + i, "node_id": node,
            "features": [{"packet_size": 500 + i, "source_ip": "192.168.1.100"}],
            "confidence": 0.85}
    base.update(overrides)
    return base


@pytest.fixture
def config(store_config):
    return store_config


@pytest.fixture
def db(open_catalog_db):
    return open_catalog_db("ledger")


@pytest.fixture
def ledger(db):
    return DatabaseLedger(db)


def fill(ledger, count: int, node: str = "Node_1", start: int = 0) -> list[int]:
    return [ledger.append_entry(entry(start + i, node)) for i in range(count)]


def tamper(db, key: bytes, sql: str, params=()) -> None:
    """Edit the database directly, as someone holding its key or credentials could (without
    the immutability trigger)."""
    conn = raw_connection(db, key, without_triggers=("ledger_entries_are_immutable",))
    try:
        conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


# -- appending and reading -------------------------------------------------------------------

def test_append_entry_returns_increasing_ids_and_read_ledger_returns_them_in_order(ledger):
    ids = fill(ledger, 3)
    entries = ledger.read_ledger()
    assert ids == [1, 2, 3]
    assert [e["id"] for e in entries] == ids
    assert entries[0]["node_id"] == "Node_1"
    assert entries[0]["features"] == [{"packet_size": 500, "source_ip": "192.168.1.100"}]
    assert entries[0]["confidence"] == 0.85
    assert entries[0]["timestamp"] == 1_700_000_000.0


def test_entries_keep_dict_features_and_carry_an_iso_utc_creation_time(ledger):
    ledger.append_entry(entry(features={"b": [1, 2.5, None], "a": {"nested": "é"}}))
    stored = ledger.get_entry_by_id(1)
    assert stored["features"] == {"b": [1, 2.5, None], "a": {"nested": "é"}}
    assert stored["created_at"].endswith("Z") and stored["created_at"][10] == "T"


def test_an_integer_timestamp_is_accepted_and_read_back_as_a_float(ledger):
    ledger.append_entry(entry(timestamp=1_700_000_000))
    assert ledger.get_entry_by_id(1)["timestamp"] == 1_700_000_000.0
    assert isinstance(ledger.get_entry_by_id(1)["timestamp"], float)


def test_each_entry_is_chained_to_the_previous_one_starting_from_genesis(ledger):
    fill(ledger, 3)
    first, second, third = ledger.read_ledger()
    assert first["prev_hash"] == GENESIS_HASH == "0" * 64
    assert second["prev_hash"] == first["entry_hash"]
    assert third["prev_hash"] == second["entry_hash"]
    assert first["entry_hash"] == entry_hash(1, first["timestamp"], "Node_1", first["features"],
                                             0.85, GENESIS_HASH)
    assert ledger.head() == {"head_id": 3, "head_hash": third["entry_hash"]}


def test_append_entries_appends_a_batch_atomically(ledger):
    ids = ledger.append_entries([entry(i) for i in range(5)])
    assert ids == [1, 2, 3, 4, 5]
    assert ledger.verify_chain()


# -- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad, field, words", [
    ({"timestamp": "yesterday"}, "timestamp", "must be a float"),
    ({"timestamp": math.inf}, "timestamp", "finite"),
    ({"timestamp": -1.0}, "timestamp", "negative"),
    ({"node_id": ""}, "node_id", "must not be empty"),
    ({"node_id": "   "}, "node_id", "must not be empty"),
    ({"node_id": 7}, "node_id", "must be a string"),
    ({"node_id": "n" * 257}, "node_id", "at most 256"),
    ({"features": "packet_size=500"}, "features", "list or a dict"),
    ({"features": (1, 2)}, "features", "list or a dict"),
    ({"features": [{1, 2}]}, "features", "JSON-serialisable"),
    ({"features": [math.nan]}, "features", "JSON-serialisable"),
    ({"confidence": 1.5}, "confidence", "between 0.0 and 1.0"),
    ({"confidence": -0.1}, "confidence", "between 0.0 and 1.0"),
    ({"confidence": math.nan}, "confidence", "between 0.0 and 1.0"),
    ({"confidence": True}, "confidence", "got bool"),
    ({"confidence": "high"}, "confidence", "got str"),
    ({"extra": 1}, "entry", "unknown keys: extra"),
])
def test_invalid_entries_are_refused_with_a_value_error_naming_the_field(ledger, bad, field, words):
    with pytest.raises(InvalidEntryError) as caught:
        ledger.append_entry(entry(**bad))
    assert isinstance(caught.value, ValueError)
    assert field in caught.value.errors
    assert words in str(caught.value)
    assert ledger.read_ledger() == []


def test_an_entry_that_is_not_a_dict_is_refused(ledger):
    with pytest.raises(ValueError, match="must be a dict, got list"):
        ledger.append_entry([1700000000.0, "Node_1", [], 0.5])


def test_every_missing_key_is_reported_at_once(ledger):
    with pytest.raises(InvalidEntryError) as caught:
        ledger.append_entry({"node_id": "Node_1"})
    assert set(caught.value.errors) == {"timestamp", "features", "confidence"}
    assert "timestamp: is required" in str(caught.value)


def test_confidence_bounds_are_inclusive(ledger):
    ledger.append_entry(entry(0, confidence=0.0))
    ledger.append_entry(entry(1, confidence=1))
    assert [e["confidence"] for e in ledger.read_ledger()] == [0.0, 1.0]


def test_a_batch_with_an_invalid_entry_names_its_position_and_writes_nothing(ledger):
    with pytest.raises(InvalidEntryError, match=r"\[1\]\.confidence"):
        ledger.append_entries([entry(0), entry(1, confidence=2.0)])
    assert ledger.read_ledger() == []


# -- duplicates ---------------------------------------------------------------------------------

def test_a_duplicate_timestamp_and_node_is_a_named_value_error_and_changes_nothing(ledger):
    ledger.append_entry(entry(0))
    head = ledger.head()
    with pytest.raises(DuplicateEntryError) as caught:
        ledger.append_entry(entry(0, confidence=0.1))
    assert isinstance(caught.value, ValueError)
    assert "Node_1" in str(caught.value) and "1700000000.0" in str(caught.value)
    assert ledger.head() == head
    assert len(ledger.read_ledger()) == 1
    assert ledger.append_entry(entry(1)) == 2  # no id was burnt
    assert ledger.verify_chain()


def test_the_same_timestamp_on_another_node_is_not_a_duplicate(ledger):
    ledger.append_entry(entry(0, "Node_1"))
    ledger.append_entry(entry(0, "Node_2"))
    assert len(ledger.read_ledger()) == 2


def test_a_batch_with_a_duplicate_is_rolled_back_and_names_the_duplicate(ledger):
    ledger.append_entry(entry(5))
    with pytest.raises(DuplicateEntryError) as caught:
        ledger.append_entries([entry(1), entry(2), entry(5)])
    assert caught.value.timestamp == entry(5)["timestamp"]
    assert [e["id"] for e in ledger.read_ledger()] == [1]



def test_a_duplicate_in_the_callers_transaction_is_named_and_leaves_its_other_appends(ledger, db):
    ledger.append_entry(entry(0))
    with db.transaction():
        assert ledger.append_entry(entry(1)) == 2
        with pytest.raises(DuplicateEntryError):
            ledger.append_entry(entry(0))
    assert [e["id"] for e in ledger.read_ledger()] == [1, 2]  # the caller's commit kept id 2
    assert ledger.verify_chain()

# -- queries ------------------------------------------------------------------------------------

def test_get_new_entries_returns_entries_after_the_last_seen_id(ledger):
    fill(ledger, 5)
    assert [e["id"] for e in ledger.get_new_entries(0)] == [1, 2, 3, 4, 5]
    assert [e["id"] for e in ledger.get_new_entries(3)] == [4, 5]
    assert ledger.get_new_entries(5) == []
    assert [e["id"] for e in ledger.get_new_entries(1, limit=2)] == [2, 3]


@pytest.mark.parametrize("call", [
    lambda l: l.get_new_entries(-1),
    lambda l: l.get_new_entries("3"),
    lambda l: l.get_new_entries(0, limit=0),
    lambda l: l.get_entry_by_id(0),
    lambda l: l.get_entry_by_id(-5),
    lambda l: l.get_entry_by_id(True),
    lambda l: l.get_entries_by_node(""),
    lambda l: l.get_entries_by_node(None),
    lambda l: l.get_entries_by_node("Node_1", limit=-1),
    lambda l: l.cleanup_old_entries(-1),
    lambda l: l.cleanup_old_entries(math.nan),
])
def test_out_of_range_arguments_are_value_errors(ledger, call):
    with pytest.raises(InvalidArgumentError) as caught:
        call(ledger)
    assert isinstance(caught.value, ValueError)


def test_get_entry_by_id_returns_the_entry_or_none(ledger):
    fill(ledger, 2)
    assert ledger.get_entry_by_id(2)["id"] == 2
    assert ledger.get_entry_by_id(3) is None


def test_get_entries_by_node_returns_that_nodes_entries_newest_first(ledger):
    ledger.append_entry(entry(1, "Node_1"))
    ledger.append_entry(entry(3, "Node_1"))
    ledger.append_entry(entry(2, "Node_1"))
    ledger.append_entry(entry(9, "Node_2"))
    newest_first = [e["timestamp"] - 1_700_000_000 for e in ledger.get_entries_by_node("Node_1")]
    assert newest_first == [3, 2, 1]
    assert [e["id"] for e in ledger.get_entries_by_node("Node_1", limit=1)] == [2]
    assert ledger.get_entries_by_node("Node_3") == []


# -- caching ------------------------------------------------------------------------------------

def test_a_repeated_read_is_served_from_the_cache(ledger):
    fill(ledger, 3)
    ledger.read_ledger()
    hits = ledger.cache_stats()["hits"]
    ledger.read_ledger()
    ledger.get_entry_by_id(1)
    ledger.get_entry_by_id(1)
    assert ledger.cache_stats()["hits"] == hits + 2


def test_a_read_after_a_write_always_sees_the_write(ledger):
    fill(ledger, 2)
    assert len(ledger.read_ledger()) == 2
    assert len(ledger.get_entries_by_node("Node_1")) == 2
    ledger.append_entry(entry(10))
    assert [e["id"] for e in ledger.read_ledger()] == [1, 2, 3]
    assert len(ledger.get_entries_by_node("Node_1")) == 3
    assert ledger.cleanup_old_entries(0, now=1_700_000_005.0) == 2
    assert [e["id"] for e in ledger.read_ledger()] == [3]
    assert ledger.get_entry_by_id(1) is None


def test_mutating_a_returned_entry_does_not_change_what_the_next_reader_sees(ledger):
    ledger.append_entry(entry(0))
    ledger.read_ledger()[0]["features"][0]["packet_size"] = -1
    ledger.get_entry_by_id(1)["features"].append("junk")
    ledger.get_entries_by_node("Node_1")[0]["confidence"] = 0.0
    again = ledger.get_entry_by_id(1)
    assert again["features"] == [{"packet_size": 500, "source_ip": "192.168.1.100"}]
    assert ledger.read_ledger() == ledger.get_entries_by_node("Node_1") == [again]
    assert again["confidence"] == 0.85


def test_the_cache_sees_writes_made_through_another_connection(config, keyring, ledger):
    other_db = open_database("ledger", config, keyring.database_keys)
    other = DatabaseLedger(other_db)
    try:
        ledger.append_entry(entry(0))
        assert len(ledger.read_ledger()) == 1
        assert ledger.get_entry_by_id(1) is not None
        assert len(ledger.get_entries_by_node("Node_1")) == 1
        other.append_entry(entry(1))
        assert len(ledger.read_ledger()) == 2
        assert len(ledger.get_entries_by_node("Node_1")) == 2
        other.cleanup_old_entries(0, now=1_700_000_000.5)
        assert ledger.get_entry_by_id(1) is None
        assert [e["id"] for e in ledger.read_ledger()] == [2]
    finally:
        other_db.close_all()


def test_the_cache_sees_an_append_made_by_another_process(db, db_key, ledger):
    ledger.append_entry(entry(0))
    assert len(ledger.read_ledger()) == 1
    subprocess.run(appender(db, db_key, "other-process", 1), check=True, cwd=REPO_ROOT, timeout=60)
    assert [e["node_id"] for e in ledger.read_ledger()] == ["Node_1", "other-process"]
    assert ledger.get_entries_by_node("other-process")[0]["id"] == 2


def appender(db, key: bytes, node: str, count: int) -> list[str]:
    """The command line of another process appending ``count`` entries of ``node``."""
    return [sys.executable, str(Path(__file__).with_name("appender.py")), location(db), key.hex(),
            node, str(count)]


# -- cleanup ------------------------------------------------------------------------------------

def test_cleanup_deletes_entries_older_than_the_max_age_and_the_chain_still_verifies(ledger):
    fill(ledger, 10)
    deleted = ledger.cleanup_old_entries(5, now=1_700_000_010.0)
    assert deleted == 5
    assert [e["id"] for e in ledger.read_ledger()] == [6, 7, 8, 9, 10]
    assert ledger.verify_chain()
    ledger.append_entry(entry(20))
    assert ledger.verify_chain()


def test_cleanup_defaults_to_the_current_time(ledger):
    ledger.append_entry(entry(0))
    assert ledger.cleanup_old_entries(3600) == 1
    assert ledger.read_ledger() == []


def test_cleanup_of_runs_in_the_middle_keeps_the_chain_verifiable(ledger):
    # Timestamps out of id order: old entries are scattered between new ones.
    ages = [0, 100, 100, 0, 100, 0, 0, 100, 100, 100]
    for i, age in enumerate(ages):
        ledger.append_entry(entry(i, timestamp=10_000.0 - age + i / 100))
    deleted = ledger.cleanup_old_entries(50, now=10_000.0, batch_size=2)
    assert deleted == 6
    assert [e["id"] for e in ledger.read_ledger()] == [1, 4, 6, 7]
    assert ledger.verify_chain()
    ledger.append_entry(entry(99, timestamp=10_001.0))
    assert ledger.verify_chain()


def test_cleanup_of_everything_keeps_ids_increasing_and_the_chain_verifiable(ledger):
    fill(ledger, 4)
    assert ledger.cleanup_old_entries(0, now=1_800_000_000.0) == 4
    assert ledger.read_ledger() == []
    assert ledger.verify_chain()
    assert ledger.append_entry(entry(0)) == 5
    assert ledger.verify_chain()
    assert ledger.cleanup_old_entries(0, now=1_800_000_000.0) == 1
    assert ledger.verify_chain()


# -- chain verification ---------------------------------------------------------------------

def test_entries_cannot_be_updated_through_sql(db, ledger):
    ledger.append_entry(entry(0))
    with pytest.raises(IntegrityError, match="immutable"):
        db.execute("UPDATE ledger SET confidence = 0.1 WHERE id = 1")


def test_verify_chain_names_an_altered_entry(db, db_key, ledger):
    fill(ledger, 10)
    tamper(db, db_key, "UPDATE ledger SET confidence = 0.99 WHERE id = 5")
    result = ledger.verify_chain()
    assert not result
    assert result.first_bad == 5
    assert "altered" in result.reason
    assert result.checked == 4


def test_verify_chain_names_the_entry_after_a_removed_one(db, db_key, ledger):
    fill(ledger, 10)
    tamper(db, db_key, "DELETE FROM ledger WHERE id = 5")
    result = ledger.verify_chain()
    assert (result.ok, result.first_bad) == (False, 6)


def test_verify_chain_detects_a_rehashed_entry_by_its_successor(db, db_key, ledger):
    fill(ledger, 10)
    previous = ledger.get_entry_by_id(4)["entry_hash"]
    forged = entry_hash(5, 1_700_000_004.0, "Node_1", [], 0.85, previous)
    tamper(db, db_key, "UPDATE ledger SET features = '[]', entry_hash = ? WHERE id = 5", (forged,))
    assert ledger.verify_chain().first_bad == 6


def test_verify_chain_detects_a_truncated_tail(db, db_key, ledger):
    fill(ledger, 10)
    tamper(db, db_key, "DELETE FROM ledger WHERE id > 8")
    result = ledger.verify_chain()
    assert (result.ok, result.first_bad) == (False, 9)
    assert "truncated" in result.reason


def test_verify_chain_of_an_empty_ledger_passes(ledger):
    assert ledger.verify_chain().to_dict() == {"ok": True, "checked": 0,
                                               "first_bad": None, "reason": None}


# -- concurrency --------------------------------------------------------------------------------

def test_eight_threads_appending_a_thousand_entries_each_lose_and_duplicate_nothing(ledger):
    returned: list[list[int]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def append_many(worker: int) -> None:
        try:
            for i in range(1000):
                returned[worker].append(ledger.append_entry(
                    {"timestamp": 1_700_000_000.0 + i, "node_id": f"node-{worker}",
                     "features": {"i": i}, "confidence": 0.5}))
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=append_many, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    all_ids = sorted(i for ids in returned for i in ids)
    assert all_ids == list(range(1, 8001))
    entries = ledger.read_ledger()
    assert len(entries) == 8000
    assert {(e["node_id"], e["features"]["i"]) for e in entries} == \
        {(f"node-{w}", i) for w in range(8) for i in range(1000)}
    assert ledger.verify_chain().checked == 8000


def test_appends_queued_together_share_a_commit_and_a_duplicate_among_them_fails_alone(db, ledger):
    ledger.append_entry(entry(9, "Node_D"))
    outcome: dict[str, object] = {}

    def append(name: str, item: dict) -> None:
        try:
            outcome[name] = ledger.append_entry(item)
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcome[name] = exc

    items = {"a": entry(0, "Node_A"), "b": entry(1, "Node_B"), "dup": entry(9, "Node_D"),
             "c": entry(2, "Node_C")}
    with db.transaction(lock=CHAIN_LOCK) as conn:  # the chain is busy: appenders queue
        conn.execute("SELECT head_id FROM ledger_state")
        threads = [threading.Thread(target=append, args=(name, item)) for name, item in items.items()]
        threads[0].start()
        for _ in range(3000):  # bounded: a appends (it leads, waiting on the lock) ...
            if ledger._appends._leader_active:
                break
            threading.Event().wait(0.01)
        for thread in threads[1:]:
            thread.start()
        for _ in range(3000):  # ... and the others queue behind it as one batch
            if len(ledger._appends._pending) == 3:
                break
            threading.Event().wait(0.01)
        assert len(ledger._appends._pending) == 3
    for thread in threads:
        thread.join()

    assert isinstance(outcome["dup"], DuplicateEntryError)
    assert outcome["a"] == 2 and sorted([outcome["b"], outcome["c"]]) == [3, 4]
    assert [e["node_id"] for e in ledger.read_ledger()] == \
        ["Node_D", "Node_A"] + [items[n]["node_id"] for n in sorted(("b", "c"), key=outcome.get)]
    assert ledger.verify_chain().checked == 4


def _round_trips(db, call) -> int:
    before = db.counter.this_thread()
    call()
    return (db.counter.this_thread() - before).round_trips


@pytest.mark.postgresql_only("round trips to a database server")
def test_an_append_on_postgresql_takes_two_round_trips_and_a_batch_of_500_three(db, ledger):
    ledger.append_entry(entry(0))  # warm: the pool's connection

    # BEGIN, the chain lock and the head's read in one; the INSERT and the head's UPDATE
    # with the COMMIT in the other.
    assert _round_trips(db, lambda: ledger.append_entry(entry(1))) == 2
    assert _round_trips(db, lambda: ledger.append_entries([entry(2), entry(3), entry(4)])) == 2
    # A COPY cannot go with the COMMIT: one round trip of its own.
    assert _round_trips(db, lambda: ledger.append_entries([entry(5 + i) for i in range(500)])) == 3

    entries = ledger.read_ledger()
    assert [e["id"] for e in entries] == list(range(1, 506))
    assert ledger.head() == {"head_id": 505, "head_hash": entries[-1]["entry_hash"]}
    assert ledger.verify_chain().checked == 505


def test_four_processes_appending_at_once_make_one_chain(db, db_key, ledger):
    processes = [subprocess.Popen(appender(db, db_key, f"process-{p}", 150), cwd=REPO_ROOT,
                                  stdout=subprocess.PIPE, text=True) for p in range(4)]
    returned = [[int(line) for line in process.communicate(timeout=120)[0].split()] for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0, 0]

    assert sorted(i for ids in returned for i in ids) == list(range(1, 601))  # no gap, nothing twice
    entries = ledger.read_ledger()
    assert [e["id"] for e in entries] == list(range(1, 601))
    assert all(e["prev_hash"] == p["entry_hash"] for p, e in zip(entries, entries[1:]))
    assert {e["node_id"] for e in entries} == {f"process-{p}" for p in range(4)}
    verification = ledger.verify_chain()
    assert verification.ok and verification.checked == 600
    assert ledger.head() == {"head_id": 600, "head_hash": entries[-1]["entry_hash"]}


# -- schema and construction --------------------------------------------------------------------

def test_the_schema_migrates_down_and_up_again(db):
    migrator = Migrator(db, MIGRATIONS)
    migrator.rollback(0)
    assert "ledger" not in db.table_names()
    migrator.migrate()
    assert {"ledger", "ledger_checkpoints", "ledger_state"} <= set(db.table_names())


@pytest.mark.sqlite_only("a ledger at a file path")
def test_open_creates_an_encrypted_ledger_at_a_path(tmp_path, config, keyring):
    path = tmp_path / "elsewhere" / "ledger.db"
    path.parent.mkdir()
    ledger = DatabaseLedger.open(path, config, keyring)
    try:
        ledger.append_entry(entry(0))
    finally:
        ledger.close()
    assert not path.read_bytes().startswith(b"SQLite format 3")
    reopened = DatabaseLedger(Database(path, keyring.database_key))
    assert reopened.get_entry_by_id(1)["node_id"] == "Node_1"
    reopened.db.close_all()


def test_verify_chain_reports_in_the_ledgers_own_words(ledger):
    ledger.append_entry(entry(0))

    assert ledger.verify_chain().summary == "ledger OK: 1 entries verified"
