"""Thread contexts and user preferences are personal data: sealed in the database, owned by the
keyed hash of their user, exported and erased with them through the providers mechanism, and
purged by retention (a thread without a user only by its expiry). Real runtime, real vault, the
settings store on each backend (a real SQLCipher file, or the settings schema of a real
PostgreSQL database)."""

from __future__ import annotations

import json

import pytest

from compliance.audit import Actor
from storage_backends import raw_connection
from twin.settings_store import SettingsStore
from twin.storage import FileBacked

ADMIN = Actor("tok_test_admin", "admin")


@pytest.fixture
def config(store_config):
    return store_config


@pytest.fixture
def store(runtime):
    return SettingsStore.from_keyring(runtime.settings_db, runtime.keyring, subject_keys=runtime.keys)


def rows(runtime, sql):
    """Rows as the database holds them, read outside the service (a connection of its own)."""
    conn = raw_connection(runtime.settings_db, runtime.keyring.database_key)
    try:
        return [dict(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def stored_bytes(runtime) -> bytes:
    """Every stored value of the personal tables, as the database holds them (on SQLCipher the
    WAL checkpointed first, so the file itself is read)."""
    if isinstance(runtime.settings_db, FileBacked):
        runtime.settings_db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    values = [r["v"] for sql in ("SELECT value AS v FROM user_preferences",
                                 "SELECT messages AS v FROM thread_contexts",
                                 "SELECT user_id_hash AS v FROM thread_contexts")
              for r in rows(runtime, sql)]
    return b"".join(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode() for v in values)


def test_values_are_sealed_and_rows_carry_the_keyed_user_hash_never_the_user_id(runtime, store):
    store.save_thread_context("C1:t1", "C1", "t1", ["User: my phone is 555-0101"], user_id="user-42")
    store.save_thread_context("C2:t2", "C2", "t2", ["User: anonymous hello"])
    store.set_user_preference("user-42", "theme", {"colour": "midnight-blue"})

    stored = stored_bytes(runtime)
    for plaintext in (b"555-0101", b"anonymous hello", b"midnight-blue", b"user-42"):
        assert plaintext not in stored
    owners = {r["thread_key"]: r["user_id_hash"] for r in rows(runtime, "SELECT * FROM thread_contexts")}
    assert owners == {"C1:t1": runtime.hasher.hash("user-42"), "C2:t2": None}
    assert rows(runtime, "SELECT user_id_hash FROM user_preferences") == [
        {"user_id_hash": runtime.hasher.hash("user-42")}]
    assert store.get_thread_context("C1:t1")["messages"] == ["User: my phone is 555-0101"]
    assert store.get_user_preference("user-42", "theme") == {"colour": "midnight-blue"}


def test_a_sealed_value_moved_to_another_row_does_not_open(runtime, store):
    store.set_user_preference("user-1", "a", "alpha")
    store.set_user_preference("user-1", "b", "beta")
    with runtime.settings_db.transaction() as conn:
        conn.execute("UPDATE user_preferences SET value = (SELECT value FROM user_preferences "
                     "WHERE preference_key = 'a') WHERE preference_key = 'b'")

    with pytest.raises(Exception, match="(?i)decrypt|authentic|invalid"):
        store.get_user_preferences("user-1")


def test_the_export_holds_the_users_threads_and_preferences_and_nothing_of_anyone_else(
        runtime, store, make_subject):
    subject = make_subject("user-7")
    store.save_thread_context("C1:t1", "C1", "t1", ["User: hi", "Bot: hello"], user_id="user-7")
    store.save_thread_context("C1:t2", "C1", "t2", ["User: not theirs"], user_id="someone-else")
    store.save_thread_context("C1:t3", "C1", "t3", ["User: nobody's"])
    store.set_user_preference("user-7", "language", "fr")
    store.set_user_preference("user-7", "digest", {"weekly": True})

    doc = json.loads("".join(runtime.subject_requests.export(ADMIN, "req-1", subject.user_id)))

    [thread] = doc["thread_contexts"]
    assert (thread["thread_key"], thread["channel_id"], thread["messages"]) == \
        ("C1:t1", "C1", ["User: hi", "Bot: hello"])
    assert [(p["preference_key"], p["value"]) for p in doc["user_preferences"]] == \
        [("digest", {"weekly": True}), ("language", "fr")]
    (event,) = runtime.audit.query(subject_hash=subject.subject_hash, action="export")
    assert (event.details["thread_contexts"], event.details["user_preferences"]) == (1, 2)


def test_erasure_deletes_the_users_rows_and_leaves_threads_of_no_one(runtime, store, make_subject):
    subject = make_subject("user-9")
    store.save_thread_context("C1:mine", "C1", "mine", ["User: erase me"], user_id="user-9")
    store.save_thread_context("C1:nobody", "C1", "nobody", ["User: stays until it expires"])
    store.set_user_preference("user-9", "language", "de")

    receipt = runtime.subject_requests.erase(ADMIN, None, user_id=subject.user_id)

    assert (receipt.counts["thread_contexts"], receipt.counts["user_preferences"]) == (1, 1)
    assert [r["thread_key"] for r in rows(runtime, "SELECT thread_key FROM thread_contexts")] == ["C1:nobody"]
    assert rows(runtime, "SELECT * FROM user_preferences") == []
    assert store.get_thread_context("C1:mine") is None
    assert store.get_thread_context("C1:nobody")["messages"] == ["User: stays until it expires"]


def test_retention_purges_expired_threads_even_ownerless_under_a_hold_and_old_preferences(
        runtime, store, make_subject, clock):
    held = make_subject("held-user")
    runtime.holds.place(held.subject_hash, "litigation", None, "legal")
    store.save_thread_context("C1:owned", "C1", "owned", ["x"], user_id="user-3", ttl_hours=1)
    store.save_thread_context("C1:nobody", "C1", "nobody", ["y"], ttl_hours=1)
    store.save_thread_context("C1:held", "C1", "held", ["z"], user_id="held-user", ttl_hours=1)
    store.save_thread_context("C1:fresh", "C1", "fresh", ["w"], ttl_hours=24 * 5000)
    store.set_user_preference("user-3", "language", "nl")

    clock.advance(hours=2)
    first = runtime.retention.run()
    clock.advance(days=runtime.config.preference_retention_days + 1)
    second = runtime.retention.run()

    assert first.counts["thread_contexts"] == 2 and first.counts["user_preferences"] == 0
    assert second.counts["user_preferences"] == 1
    assert sorted(r["thread_key"] for r in rows(runtime, "SELECT thread_key FROM thread_contexts")) == \
        ["C1:fresh", "C1:held"]


def test_a_thread_changing_hands_starts_over_as_its_new_owners_and_leaves_the_old_ones_export(
        runtime, store, make_subject):
    first, second = make_subject("user-a"), make_subject("user-b")
    started = store.save_thread_context("C1:t", "C1", "t", ["User: a's words"], user_id="user-a")["created_at"]
    created = store.save_thread_context("C1:t", "C1", "t", ["User: b's words"], user_id="user-b")["created_at"]
    store.save_thread_context("C1:t", "C1", "t", ["User: b again"], user_id="user-b")

    assert created > started
    [row] = rows(runtime, "SELECT user_id_hash, created_at FROM thread_contexts")
    assert row == {"user_id_hash": runtime.hasher.hash("user-b"), "created_at": created}
    exported = {s.user_id: json.loads("".join(runtime.subject_requests.export(ADMIN, f"req-{s.user_id}",
                                                                              s.user_id)))
                for s in (first, second)}
    assert exported["user-a"]["thread_contexts"] == []
    assert [t["messages"] for t in exported["user-b"]["thread_contexts"]] == [["User: b again"]]

    store.save_thread_context("C1:t", "C1", "t", ["User: nobody's now"])
    assert rows(runtime, "SELECT user_id_hash FROM thread_contexts") == [{"user_id_hash": None}]


def test_per_user_calls_without_the_vault_are_refused_in_one_line(runtime):
    from twin.settings_store import SettingsError

    plain = SettingsStore.from_keyring(runtime.settings_db, runtime.keyring)
    plain.save_thread_context("C1:t", "C1", "t", ["fine without a user"])
    with pytest.raises(SettingsError, match="privacy vault"):
        plain.set_user_preference("user-1", "k", "v")
