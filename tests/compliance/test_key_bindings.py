"""Recording in the vault which subject a leased key is bound to: a subject is bound one key, the
first binding recorded wins, and one that loses a race to another replica's binding leaves its
key unbound while the batch's other bindings are still recorded. Key ids go to statements in
chunks far below any engine's parameter limit."""

from __future__ import annotations

import threading
import time

import pytest

from compliance.key_bindings import Binding, bind, chunks, marks
from storage_backends import location

SINCE = "2026-01-01T00:00:00.000000Z"


def test_ids_go_to_statements_500_at_a_time_each_id_once():
    ids = [f"k{i}" for i in range(1001)]

    assert [len(c) for c in chunks(ids)] == [500, 500, 1]
    assert sum(chunks(ids), []) == ids
    assert chunks([]) == [] and chunks(["a", "b", "c"], size=2) == [["a", "b"], ["c"]]
    assert marks(["a", "b", "c"]) == "?, ?, ?"


def unbound_keys(vault, *key_ids: str) -> None:
    for key_id in key_ids:
        vault.execute("INSERT INTO subject_keys (key_id, user_id_hash, key_version, wrapped_key, created_at, "
                      "leased_to, lease_ends_at) VALUES (?, NULL, 1, ?, ?, 'a-lease', '2999-01-01T00:00:00.000000Z')",
                      (key_id, b"wrapped", SINCE))


def bound_to(vault, key_id: str) -> str | None:
    return vault.query_one("SELECT user_id_hash FROM subject_keys WHERE key_id = ?", (key_id,))[0]


@pytest.mark.postgresql_only("two transactions meeting at the unique subject: SQLite runs one writer at a time")
def test_a_binding_that_loses_a_race_leaves_its_key_unbound_and_the_others_are_recorded(runtime):
    import psycopg

    vault, alice, bob = runtime.vault_db, "a" * 64, "b" * 64
    unbound_keys(vault, "key-mine", "key-elsewhere", "key-bob")
    other = psycopg.connect(location(vault))  # another replica, binding alice first, not committed yet
    other.execute("UPDATE subject_keys SET user_id_hash = %s, leased_to = NULL, lease_ends_at = NULL "
                  "WHERE key_id = 'key-elsewhere'", (alice,))
    result: list[int] = []
    binding = threading.Thread(target=lambda: result.append(bind(vault, [
        Binding("key-mine", alice, SINCE), Binding("key-bob", bob, SINCE)])))
    binding.start()
    try:
        deadline = time.monotonic() + 120  # a safety stop on a loaded machine, not a timing check
        while binding.is_alive() and not other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'").fetchone()[0]:
            assert time.monotonic() < deadline, "our binding never waited for the other's"
            time.sleep(0.05)
        assert binding.is_alive(), f"our binding ended without waiting for the other's: {result}"
        other.commit()  # ours now breaks the unique subject: the batch is retried binding by binding
    finally:
        binding.join(30)
        other.close()

    assert result == [1]
    assert (bound_to(vault, "key-mine"), bound_to(vault, "key-elsewhere"), bound_to(vault, "key-bob")) == \
        (None, alice, bob)
