"""Thread contexts and user preferences are personal data: sealed on disk, owned by the keyed
hash of their user, exported and erased with them through the providers mechanism, and purged
by retention (a thread without a user only by its expiry). Real runtime, real vault, real files."""

from __future__ import annotations

import json

import pytest

from compliance.audit import Actor
from twin.settings_store import SettingsStore
from twin.storage import open_keyed

ADMIN = Actor("tok_test_admin", "admin")


@pytest.fixture
def store(runtime):
    return SettingsStore.from_keyring(runtime.settings_db, runtime.keyring, subject_keys=runtime.keys)


def rows(runtime, sql):
    conn = open_keyed(runtime.settings_db.path, runtime.keyring.database_key, read_only=True)
    try:
        return [dict(row) for row in conn.execute(sql)]
    finally:
        conn.close()


def file_bytes(runtime) -> bytes:
    """Every page of the settings database, decrypted (WAL checkpointed first)."""
    runtime.settings_db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn = open_keyed(runtime.settings_db.path, runtime.keyring.database_key, read_only=True)
    try:
        return b"".join(bytes(r[0]) if isinstance(r[0], bytes) else str(r[0]).encode()
                        for r in conn.execute("SELECT value FROM user_preferences UNION ALL "
                                              "SELECT messages FROM thread_contexts UNION ALL "
                                              "SELECT user_id_hash FROM thread_contexts"))
    finally:
        conn.close()


def test_values_are_sealed_and_rows_carry_the_keyed_user_hash_never_the_user_id(runtime, store):
    store.save_thread_context("C1:t1", "C1", "t1", ["User: my phone is 555-0101"], user_id="user-42")
    store.save_thread_context("C2:t2", "C2", "t2", ["User: anonymous hello"])
    store.set_user_preference("user-42", "theme", {"colour": "midnight-blue"})

    stored = file_bytes(runtime)
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


def test_per_user_calls_without_the_vault_are_refused_in_one_line(runtime):
    from twin.settings_store import SettingsError

    plain = SettingsStore.from_keyring(runtime.settings_db, runtime.keyring)
    plain.save_thread_context("C1:t", "C1", "t", ["fine without a user"])
    with pytest.raises(SettingsError, match="privacy vault"):
        plain.set_user_preference("user-1", "k", "v")
