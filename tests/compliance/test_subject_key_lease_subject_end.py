"""The end of a subject whose profile holds a leased key: erasure and retention destroy the key
the profile names even before the vault recorded the binding, and a second key made for the
subject meanwhile never makes their data unreadable or outlives them. Real runtime, on both
backends."""

from __future__ import annotations

import pytest

from compliance.field_crypto import FieldCipher
from compliance.subject_key_lease import SubjectKeyLease
from compliance.subject_keys import READ_CACHE_SECONDS, SubjectCipher, SubjectKeyMissingError, SubjectKeyStore
from key_subjects import CountingVault
from leased_keys import ACTOR, create, key_rows, profile_key, readable


def test_erasure_destroys_the_leased_key_the_profile_names_before_the_vault_knew_it(runtime, quiet_lease):
    create(runtime, "erase-me")
    bystander = create(runtime, "stays")
    key_id = profile_key(runtime, "erase-me")

    receipt = runtime.dsr.erase(runtime.hasher.hash("erase-me"))

    assert receipt.subject_key_destroyed and receipt.counts["subject_keys"] == 1
    assert runtime.vault_db.query_one("SELECT 1 FROM subject_keys WHERE key_id = ?", (key_id,)) is None
    with pytest.raises(SubjectKeyMissingError):
        runtime.keys.writer(runtime.hasher.hash("erase-me"))
    assert readable(runtime, bystander) and len(key_rows(runtime)) == 63


def test_erasure_destroys_both_keys_of_a_subject_given_a_second_one_at_the_same_moment(
        runtime, quiet_lease, keyring):
    create(runtime, "twice")
    subject = runtime.hasher.hash("twice")
    leased = profile_key(runtime, "twice")
    # A key store without the profiles' bindings (another process's settings store) making the
    # subject a key before the lease recorded theirs: the one race that gives a subject two.
    SubjectKeyStore(runtime.vault_db, FieldCipher(keyring.field_keys, keyring.active_field_key)).writer(
        subject, create=True)

    receipt = runtime.dsr.erase(subject)

    assert receipt.counts["subject_keys"] == 2
    left = {r["key_id"] for r in key_rows(runtime)}
    assert leased not in left and subject not in left and len(left) == 63


def test_retention_destroys_the_leased_key_of_an_expired_profile_before_the_vault_knew_it(
        runtime, quiet_lease, clock):
    create(runtime, "expires", retention_days=1)
    stays = create(runtime, "stays")
    key_id = profile_key(runtime, "expires")
    clock.advance(days=2)

    report = runtime.retention.run()

    assert report.counts["learning_profiles"] == 1 and report.subject_keys_destroyed == 1
    assert runtime.vault_db.query_one("SELECT 1 FROM subject_keys WHERE key_id = ?", (key_id,)) is None
    assert not runtime.keys.has_key(runtime.hasher.hash("expires"))
    assert readable(runtime, stays)


def test_a_subject_back_after_erasure_keeps_the_new_profile_when_every_tombstone_is_reapplied(
        runtime, quiet_lease, clock):
    create(runtime, "back")
    runtime.dsr.erase(runtime.hasher.hash("back"))
    clock.advance(seconds=1)
    again = create(runtime, "back")  # a leased key, unbound in the vault: its profile binds it

    result = runtime.dsr.reapply_tombstones(ACTOR, every=True)

    assert result["subjects_reapplied"] == 0
    assert readable(runtime, again)


def test_the_dsr_export_finds_the_key_through_the_binding(runtime, quiet_lease):
    view = create(runtime, "exported")
    runtime.keys.forget(runtime.hasher.hash("exported"))

    doc = runtime.dsr.export(runtime.hasher.hash("exported"))

    assert [p["personal"] for p in doc["profiles"]] == [view["personal"]]


# -- a subject given a second key while their profile's leased key was not bound yet ----------


class KeyMadeMeanwhile(SubjectKeyLease):
    """A lease whose create is interleaved with another request of the same process making the
    subject a key by subject hash through the runtime's key store (their settings saved at that
    moment), between the lease handing the key out and the profile's commit."""

    made: SubjectCipher | None = None

    def for_new_subject(self, subject_hash: str):
        new = super().for_new_subject(subject_hash)
        self.made = self.keys.writer(subject_hash, create=True)
        return new


def subject_keys_left(runtime, subject: str, *key_ids: str) -> list:
    """The vault's rows of any key of the subject: bound to them, or among ``key_ids``."""
    marks = ", ".join("?" * len(key_ids))
    return runtime.vault_db.query(f"SELECT key_id FROM subject_keys WHERE user_id_hash = ? OR key_id IN ({marks})",
                                  (subject, *key_ids))


def end_subject(runtime, clock, subject: str, how: str) -> None:
    if how == "erasure":
        runtime.dsr.erase(subject)
    else:
        clock.advance(days=2)
        assert runtime.retention.run().counts["learning_profiles"] == 1


@pytest.mark.parametrize("how", ["erasure", "retention"])
def test_a_second_key_made_by_a_key_store_without_the_bindings_never_makes_the_profile_unreadable(
        timed_runtime, keyring, clock, how):
    runtime = timed_runtime
    view = create(runtime, "twice", retention_days=1)
    subject, leased = runtime.hasher.hash("twice"), profile_key(runtime, "twice")
    # Another process's settings store (DatabaseManager) before the lease recorded the binding.
    blind = SubjectKeyStore(runtime.vault_db, FieldCipher(keyring.field_keys, keyring.active_field_key))
    blind.writer(subject, create=True)
    assert runtime.profiles.ctx.lease.flush() == 0  # the vault binds them the other key already
    clock.advance(seconds=READ_CACHE_SECONDS + 1)

    assert readable(runtime, view)
    runtime.profiles.update(ACTOR, None, view["profile_id"], {"personal": {"name": "Twice"}}, None)
    clock.advance(seconds=READ_CACHE_SECONDS + 1)
    assert runtime.profiles.get(ACTOR, None, view["profile_id"])[0]["personal"] == {"name": "Twice"}
    assert [p["personal"] for p in runtime.dsr.export(subject)["profiles"]] == [{"name": "Twice"}]

    end_subject(runtime, clock, subject, how)
    assert subject_keys_left(runtime, subject, leased, subject) == []


@pytest.mark.parametrize("how", ["erasure", "retention"])
def test_a_key_the_runtime_made_the_subject_during_their_create_leaves_both_keys_values_readable(
        timed_runtime, clock, how):
    runtime = timed_runtime
    lease = runtime.profiles.ctx.lease = KeyMadeMeanwhile(runtime.keys, background=False,
                                                           monotonic=clock.monotonic)
    view = create(runtime, "raced", retention_days=1)
    subject, leased = runtime.hasher.hash("raced"), profile_key(runtime, "raced")
    setting = lease.made.seal("preferences", "value", "pref-1", {"theme": "dark"})
    assert lease.flush() == 0
    clock.advance(seconds=READ_CACHE_SECONDS + 1)

    assert readable(runtime, view)
    assert runtime.keys.reader(subject).open("preferences", "value", "pref-1", setting) == {"theme": "dark"}
    assert readable(runtime, view)

    end_subject(runtime, clock, subject, how)
    assert subject_keys_left(runtime, subject, leased, subject) == []


def test_an_update_of_a_profile_whose_subject_was_given_a_second_key_is_sealed_under_the_profiles_key(
        timed_runtime, keyring, clock):
    """The bytes on disk: the profile's data stays under the leased key its row names (the
    proof), not the key the vault binds them to since, which cannot open it."""
    from compliance import envelope
    from compliance.subject_keys import KeyProof

    runtime = timed_runtime
    view = create(runtime, "proven")
    subject, leased = runtime.hasher.hash("proven"), profile_key(runtime, "proven")
    blind = SubjectKeyStore(runtime.vault_db, FieldCipher(keyring.field_keys, keyring.active_field_key))
    blind.writer(subject, create=True)  # the vault now binds them another key
    clock.advance(seconds=READ_CACHE_SECONDS + 1)
    runtime.profiles.update(ACTOR, None, view["profile_id"], {"personal": {"name": "Proven"}}, None)

    def key(where: str, value: str) -> SubjectCipher:
        row = runtime.vault_db.query_one(f"SELECT key_id, wrapped_key FROM subject_keys WHERE {where} = ?", (value,))
        return SubjectCipher(envelope.unwrap(runtime.keys.field_keys, row["wrapped_key"],
                                             SubjectKeyStore.aad(row["key_id"])))

    [row] = runtime.twin_db.query("SELECT profile_id, encrypted_data FROM learning_profiles")
    stored = KeyProof("learning_profiles", "encrypted_data", row["profile_id"], bytes(row["encrypted_data"]))
    assert key("key_id", leased).open(*stored)["personal"] == {"name": "Proven"}
    assert not key("user_id_hash", subject).authenticates(stored)

    # A write that reads nothing of theirs first (a new session), with no key in memory: the
    # profile's row proves which key is theirs.
    clock.advance(seconds=READ_CACHE_SECONDS + 1)
    started, _ = runtime.sessions.start(ACTOR, None, view["profile_id"], {"session_type": "lesson"})
    [session] = runtime.twin_db.query("SELECT session_type FROM learning_sessions WHERE session_id = ?",
                                      (started["session_id"],))
    sealed = KeyProof("learning_sessions", "session_type", started["session_id"], bytes(session["session_type"]))
    assert key("key_id", leased).open(*sealed) == "lesson"
    assert not key("user_id_hash", subject).authenticates(sealed)

    # The key the row proved is remembered: the next write seals under it without a key lookup.
    counting = runtime.keys.vault = CountingVault(runtime.vault_db)
    again, _ = runtime.sessions.start(ACTOR, None, view["profile_id"], {"session_type": "review"})
    [session] = runtime.twin_db.query("SELECT session_type FROM learning_sessions WHERE session_id = ?",
                                      (again["session_id"],))
    assert key("key_id", leased).open("learning_sessions", "session_type", again["session_id"],
                                      bytes(session["session_type"])) == "review"
    assert counting.lookups == 0


@pytest.mark.sqlite_only("file backups, and the SQLCipher files' pages read back")
def test_a_restore_from_before_the_erasure_brings_back_an_unbound_leased_key_and_the_reapply_destroys_it(
        runtime, quiet_lease, config, keyring, clock, tmp_path):
    """The backup was taken while the erased subject's profile named a leased key the vault had
    not bound yet: restored, it is unbound again, dated from its lease. Re-applying the carried
    tombstone binds it from the profile's row (dated from the profile, before the erasure): the
    subject did not come back, so the key and the rows go at once, not at the lease's reclaim."""
    from sqlcipher_pages import file_holds
    from twin.learners.errors import NotFoundError
    from twin.operations.backups import carried_tombstones, plan_restore, restore_set, take_backup
    from twin.runtime import Runtime

    keyring.save(config.keyring_path)  # the deployment's keyring file, which a restore loads
    erased, kept = create(runtime, "erased"), create(runtime, "kept")
    subject, key_id = runtime.hasher.hash("erased"), profile_key(runtime, "erased")
    held = {(user, what): bytes(value) for user in ("erased", "kept") for what, value in (
        ("wrapped_key", runtime.vault_db.query_one("SELECT wrapped_key FROM subject_keys WHERE key_id = ?",
                                                   (profile_key(runtime, user),))[0]),
        ("profile", runtime.twin_db.query_one("SELECT encrypted_data FROM learning_profiles WHERE user_id_hash = ?",
                                              (runtime.hasher.hash(user),))[0]))}
    [leased] = [r for r in key_rows(runtime) if r["key_id"] == key_id]
    assert (leased["user_id_hash"], leased["leased_to"]) == (None, quiet_lease.holder)  # unbound in the backup
    backup = tmp_path / "backup"
    take_backup(config, keyring, ["privacy_vault", "digital_twin"], backup)
    assert runtime.dsr.erase(subject).verified  # moments after the backup
    runtime.close()

    entries = plan_restore(backup, ["privacy_vault", "digital_twin"], config, keyring, allow_half_pair=False)
    restore_set(backup, entries, config, keyring, tombstones=carried_tombstones(config, keyring))

    vault, data = (database_path(name, config) for name in ("privacy_vault", "digital_twin"))
    found = {(user, what): file_holds(vault if what == "wrapped_key" else data, keyring.database_key, needle)
             for (user, what), needle in held.items()}  # booleans: a failure prints no key material
    assert found == {("erased", "wrapped_key"): False, ("erased", "profile"): False,
                     ("kept", "wrapped_key"): True, ("kept", "profile"): True}
    restarted = Runtime.open(config, clock=clock)
    try:
        assert restarted.vault_db.query_one("SELECT 1 FROM subject_keys WHERE key_id = ? OR user_id_hash = ?",
                                            (key_id, subject)) is None
        assert not restarted.keys.has_key(subject) and set(restarted.dsr.counts(subject).values()) == {0}
        with pytest.raises(NotFoundError):
            restarted.profiles.get(ACTOR, None, erased["profile_id"])
        assert readable(restarted, kept)
    finally:
        restarted.close()


def database_path(name: str, config):
    from twin.catalog import database_path as path_of, spec_for

    return path_of(spec_for(name), config)
