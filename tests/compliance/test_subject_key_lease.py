"""Leased subject keys: a profile's create commits once, in the data database; the vault learns
the binding afterwards, off the request path; unbound keys are reclaimed only after their lease
ended plus the documented time, and never while a data row names them. Real runtime, real
vault and data databases, on both backends."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from compliance.audit import Actor
from compliance.field_crypto import FieldCipher, associated_data
from compliance.subject_key_lease import (LEASE_SECONDS, RECLAIM_AFTER_SECONDS, LeaseExpiredError,
                                          SubjectKeyLease, reclaim)
from compliance.subject_keys import READ_CACHE_SECONDS, SubjectCipher, SubjectKeyMissingError, SubjectKeyStore
from compliance.vault_schema import MIGRATIONS as VAULT_MIGRATIONS
from storage_backends import concurrently
from twin.storage import Migrator

ACTOR = Actor("tok_lease", "service")


@pytest.fixture
def quiet_lease(runtime):
    """The runtime's profiles on a lease that records bindings only when told (``flush``): the
    state a process killed right after its creates leaves behind."""
    lease = SubjectKeyLease(runtime.keys, background=False)
    runtime.profiles.ctx.lease = lease
    return lease


def create(runtime, user_id: str, **extra) -> dict:
    view, _ = runtime.profiles.create(ACTOR, None, {"user_id": user_id, "personal": {"name": user_id}, **extra})
    return view


def key_rows(runtime) -> list:
    return runtime.vault_db.query("SELECT key_id, user_id_hash, created_at, leased_to, lease_ends_at "
                                  "FROM subject_keys ORDER BY key_id")


def profile_key(runtime, user_id: str) -> str | None:
    return runtime.twin_db.query_one("SELECT subject_key_id FROM learning_profiles WHERE user_id_hash = ?",
                                     (runtime.hasher.hash(user_id),))[0]


def readable(runtime, view: dict) -> bool:
    return runtime.profiles.get(ACTOR, None, view["profile_id"])[0]["personal"] == view["personal"]


def test_a_create_commits_once_in_the_data_database_and_costs_the_vault_no_more_than_a_read(runtime):
    create(runtime, "warm-up")  # the first create waits for the lease: the only one that does
    for db in (runtime.twin_db, runtime.vault_db):
        db.enable_statement_counting()

    def on_this_thread(work):  # the request's thread: the lease's own thread is off its path
        before = [db.counter.this_thread() for db in (runtime.twin_db, runtime.vault_db)]
        result = work()
        return result, [db.counter.this_thread() - b for db, b in zip((runtime.twin_db, runtime.vault_db), before)]

    created, (data, vault) = on_this_thread(lambda: [create(runtime, f"learner-{i}") for i in range(10)])
    _, (_, vault_of_reads) = on_this_thread(
        lambda: [runtime.profiles.get(ACTOR, None, view["profile_id"]) for view in created])

    assert data.transactions == 10  # one commit per create
    # The vault: the audit trail's staging only (PostgreSQL stages events there; SQLCipher in
    # the journal files), what a read costs too: no subject key is written on the request path.
    assert vault.transactions == vault_of_reads.transactions
    assert all(readable(runtime, view) for view in created)


def test_leased_keys_are_durable_unbound_and_bound_afterwards_to_the_profile_that_took_one(runtime, quiet_lease):
    view = create(runtime, "ada")
    key_id = profile_key(runtime, "ada")

    rows = {r["key_id"]: r for r in key_rows(runtime)}
    assert len(rows) == 64 and key_id in rows
    assert all(r["user_id_hash"] is None and r["leased_to"] == quiet_lease.holder for r in rows.values())
    assert readable(runtime, view)  # found through the profile's row while the vault knows no one

    assert quiet_lease.flush() == 1
    bound = runtime.vault_db.query_one("SELECT * FROM subject_keys WHERE user_id_hash = ?",
                                       (runtime.hasher.hash("ada"),))
    assert (bound["key_id"], bound["leased_to"], bound["lease_ends_at"]) == (key_id, None, None)
    assert bound["created_at"] == view["created_at"]  # dated from the data that uses it
    runtime.keys.forget(runtime.hasher.hash("ada"))
    assert readable(runtime, view)


def test_a_leased_key_id_names_its_leases_hour_then_96_random_bits(runtime, clock):
    # README's lease paragraph: every batch leased within an hour (by any process) shares one
    # prefix, so it does not tell one lease's profiles apart; a later hour's ids sort after.
    hour = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    clock.offset = hour + timedelta(minutes=10) - datetime.now(timezone.utc)
    lease = SubjectKeyLease(runtime.keys, background=False)
    first, same_hour = lease.lease_batch(64), lease.lease_batch(64)
    clock.advance(minutes=55)
    next_hour = lease.lease_batch(64)

    ids = [k.key_id for k in first + same_hour + next_hour]
    assert all(re.fullmatch(r"sk_[0-9a-f]{14}[A-Za-z0-9_-]{16}", key_id) for key_id in ids)
    prefix = f"sk_{int(hour.timestamp()) * 1_000_000:014x}"
    assert {key_id[:17] for key_id in ids} == {prefix, f"sk_{int(hour.timestamp() + 3600) * 1_000_000:014x}"}
    assert {k.key_id[:17] for k in first + same_hour} == {prefix}
    assert min(k.key_id for k in next_hour) > max(k.key_id for k in first + same_hour)
    assert len(set(ids)) == 192 and set(ids) <= {r["key_id"] for r in key_rows(runtime)}


def test_reclaim_waits_the_documented_time_then_binds_referenced_keys_and_destroys_only_unused_ones(
        runtime, quiet_lease):
    views = [create(runtime, user) for user in ("ada", "bo")]
    leased_at = runtime.clock()
    just_before = leased_at + timedelta(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS - 60)

    assert reclaim(runtime.keys, now=just_before) == {"bound": 0, "destroyed": 0}
    assert len(key_rows(runtime)) == 64

    after = leased_at + timedelta(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS + 60)
    assert reclaim(runtime.keys, now=after) == {"bound": 2, "destroyed": 62}
    rows = key_rows(runtime)
    assert {r["user_id_hash"] for r in rows} == {runtime.hasher.hash("ada"), runtime.hasher.hash("bo")}
    assert {r["key_id"] for r in rows} == {profile_key(runtime, "ada"), profile_key(runtime, "bo")}
    for user in ("ada", "bo"):
        runtime.keys.forget(runtime.hasher.hash(user))
    assert all(readable(runtime, view) for view in views)
    assert reclaim(runtime.keys, now=after) == {"bound": 0, "destroyed": 0}


def test_without_the_data_owner_to_ask_nothing_is_reclaimed(runtime, quiet_lease, keyring):
    create(runtime, "ada")
    blind = SubjectKeyStore(runtime.vault_db, FieldCipher(keyring.field_keys, keyring.active_field_key))
    far = runtime.clock() + timedelta(days=30)

    assert reclaim(blind, now=far) == {"bound": 0, "destroyed": 0}
    assert len(key_rows(runtime)) == 64


def test_concurrent_creates_never_hand_one_key_to_two_subjects(runtime):
    def worker(n: int) -> tuple[list, list]:
        created, refused = [], []
        for i in range(12):
            user = f"shared-{i}" if i % 4 == 0 else f"t{n}-{i}"  # some users race each other
            try:
                created.append(create(runtime, user))
            except Exception as exc:  # the loser of a race on one user
                refused.append(type(exc).__name__)
        return created, refused

    results = concurrently(*(lambda n=n: worker(n) for n in range(6)))
    created = [view for made, _ in results for view in made]
    refused = {name for _, names in results for name in names}

    keys = [r[0] for r in runtime.twin_db.query("SELECT subject_key_id FROM learning_profiles")]
    assert len(created) == len(keys) == 6 * 9 + 3 and refused == {"DuplicateProfileError"}
    assert len(set(keys)) == len(keys) and None not in keys
    assert all(readable(runtime, view) for view in created)


def test_a_create_never_commits_a_key_whose_lease_ran_out_and_a_new_lease_is_taken(runtime):
    now = [0.0]
    lease = SubjectKeyLease(runtime.keys, background=False, monotonic=lambda: now[0])
    runtime.profiles.ctx.lease = lease
    new = lease.for_new_subject(runtime.hasher.hash("late"))
    now[0] += LEASE_SECONDS  # a request stalled past its key's lease (less the margin)

    with pytest.raises(LeaseExpiredError):
        new.check_usable()
    view = create(runtime, "late")  # the stale keys are dropped: a fresh lease is taken
    assert len(key_rows(runtime)) == 128 and readable(runtime, view)
    assert profile_key(runtime, "late") != new.key_id


def test_a_subject_with_a_key_already_keeps_it_and_takes_none_from_the_lease(runtime, quiet_lease):
    subject = runtime.hasher.hash("returning")
    runtime.keys.writer(subject, create=True)  # e.g. their preferences came first
    view = create(runtime, "returning")

    assert profile_key(runtime, "returning") is None
    assert runtime.vault_db.query_one("SELECT key_id FROM subject_keys WHERE user_id_hash = ?",
                                      (subject,))[0] == subject
    assert readable(runtime, view)


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


def test_vault_keys_made_before_v9_keep_unwrapping_after_it(config, keyring):
    from twin.catalog import open_database

    vault = open_database("privacy_vault", config, keyring.database_keys, migrate=False)
    try:
        migrator = Migrator(vault, VAULT_MIGRATIONS)
        if migrator.current_version() > 8:  # a server database made by an earlier fixture
            migrator.rollback(8)
        migrator.migrate(to=8)
        cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
        subject = "ab" * 32
        vault.execute("INSERT INTO subject_keys (user_id_hash, key_version, wrapped_key, created_at) "
                      "VALUES (?, ?, ?, ?)", (subject, cipher.active_key_id, cipher.encrypt(
                          b"k" * 32, associated_data("subject_keys", "wrapped_key", subject)),
                          "2030-01-01T00:00:00.000000Z"))
        sealed = SubjectCipher(b"k" * 32).seal("t", "c", "r", {"v": 1})

        migrator.migrate()

        assert tuple(vault.query_one("SELECT key_id, user_id_hash FROM subject_keys")) == (subject, subject)
        assert SubjectKeyStore(vault, cipher).writer(subject).open("t", "c", "r", sealed) == {"v": 1}
    finally:
        vault.close_all()


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


def test_a_start_reclaims_the_keys_a_stopped_process_left_once_their_lease_is_long_over(
        runtime, quiet_lease, config, keyring, clock):
    from twin.runtime import Runtime

    keyring.save(config.keyring_path)  # the deployment's keyring file, which a start loads
    view = create(runtime, "kept")
    runtime.close()  # its lease's other 63 keys were never used, and the binding never recorded
    clock.advance(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS + 60)

    started = Runtime.open(config, clock=clock)
    try:
        [row] = key_rows(started)
        assert (row["key_id"], row["user_id_hash"]) == (profile_key(started, "kept"), started.hasher.hash("kept"))
        assert readable(started, view)
    finally:
        started.close()


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


def test_settling_binds_the_leased_key_a_profile_names_and_leaves_no_stray(runtime, quiet_lease):
    create(runtime, "ada")
    subject, key_id = runtime.hasher.hash("ada"), profile_key(runtime, "ada")

    assert runtime.keys.settle([]) == []
    assert runtime.keys.settle([runtime.hasher.hash("never-stored")]) == []
    assert runtime.keys.settle([subject]) == []

    (row,) = [r for r in key_rows(runtime) if r["key_id"] == key_id]
    assert (row["user_id_hash"], row["leased_to"], row["lease_ends_at"]) == (subject, None, None)
    assert runtime.keys.settle([subject]) == []  # bound already


def test_a_store_without_key_bindings_settles_nothing(runtime):
    store = SubjectKeyStore(runtime.vault_db, runtime.field_keys)

    assert store.settle([runtime.hasher.hash("ada")]) == []


def test_a_subject_with_a_key_in_the_vault_is_given_that_key_not_a_leased_one(runtime, quiet_lease):
    """Another process made ALICE's key (or this one forgot it): a new profile of hers must use
    it, or her data would sit under two keys and erasing one would leave the other."""
    subject = runtime.hasher.hash("alice")
    other_process = SubjectKeyStore(runtime.vault_db, runtime.field_keys)
    sealed = other_process.writer(subject, create=True).seal("t", "c", "r", "hers")
    runtime.keys.forget(subject)

    existing = runtime.keys.existing(subject)

    assert existing is not None and existing.open("t", "c", "r", sealed) == "hers"
    assert runtime.keys.existing(subject).open("t", "c", "r", sealed) == "hers"  # now remembered
    assert runtime.keys.existing(runtime.hasher.hash("bob")) is None  # a new subject: a leased key


@pytest.mark.sqlite_only("the vault holds no audit staging on SQLCipher, so a read costs it nothing")
def test_a_key_taken_from_the_lease_is_remembered_so_reading_the_new_profile_reads_no_vault(runtime):
    view = create(runtime, "ada")
    runtime.vault_db.enable_statement_counting()

    before = runtime.vault_db.counter.this_thread().statements
    assert readable(runtime, view)

    assert runtime.vault_db.counter.this_thread().statements == before


# -- a subject given a second key while their profile's leased key was not bound yet ----------

@pytest.fixture
def timed_runtime(config, keyring, clock):
    """A runtime whose memory of keys and lease follow the test's clock: ``clock.advance`` lets
    a remembered key expire as the read cache's time passing would."""
    from twin.runtime import Runtime

    rt = Runtime(config, keyring, clock=clock, monotonic=clock.monotonic)
    rt.profiles.ctx.lease = SubjectKeyLease(rt.keys, background=False, monotonic=clock.monotonic)
    yield rt
    rt.close()


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


def test_reclaim_goes_past_expired_keys_it_cannot_bind_to_the_unused_ones_after_them(runtime, keyring, clock):
    lease = runtime.profiles.ctx.lease = SubjectKeyLease(runtime.keys, batch=2, low_water=1, background=False)
    blind = SubjectKeyStore(runtime.vault_db, FieldCipher(keyring.field_keys, keyring.active_field_key))
    for user in ("first", "second"):  # the oldest lease: both keys named, both subjects bound another
        create(runtime, user)
        blind.writer(runtime.hasher.hash(user), create=True)
    clock.advance(seconds=60)
    lease.lease_batch(5)  # a later lease, never used

    after = clock() + timedelta(seconds=LEASE_SECONDS + RECLAIM_AFTER_SECONDS + 60)
    assert reclaim(runtime.keys, batch=2, now=after) == {"bound": 0, "destroyed": 5}
    assert {r["key_id"] for r in key_rows(runtime) if r["user_id_hash"] is None} == \
        {profile_key(runtime, "first"), profile_key(runtime, "second")}


def test_a_subject_whose_only_key_is_their_profiles_leased_one_has_no_existing_key(runtime, quiet_lease):
    """``existing`` asks the vault alone: the leased key a profile names is found through the
    profile (a second profile of theirs is refused anyway), never handed out as theirs here."""
    create(runtime, "leased-only")
    subject = runtime.hasher.hash("leased-only")
    assert profile_key(runtime, "leased-only") is not None
    runtime.keys.forget(subject)

    assert runtime.keys.existing(subject) is None
    assert runtime.keys.has_key(subject)  # through the profile's binding


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
