"""Leased subject keys, leasing and taking: a profile's create commits once, in the data
database, with a key taken from its process's lease; the vault learns the binding afterwards,
off the request path. Real runtime, real vault and data databases, on both backends. Reclaim:
test_subject_key_lease_reclaim.py; erasure and retention: test_subject_key_lease_subject_end.py;
what a stopped process leaves: test_subject_key_lease_crashes.py."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from compliance.field_crypto import FieldCipher, associated_data
from compliance.subject_key_lease import LEASE_SECONDS, LeaseExpiredError, NewSubjectKey, SubjectKeyLease
from compliance.subject_keys import SubjectCipher, SubjectKeyStore
from compliance.vault_schema import MIGRATIONS as VAULT_MIGRATIONS
from leased_keys import ACTOR, create, key_rows, profile_key, readable
from storage_backends import concurrently
from twin.storage import Migrator


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


def test_a_subject_whose_only_key_is_their_profiles_leased_one_has_no_existing_key(runtime, quiet_lease):
    """``existing`` asks the vault alone: the leased key a profile names is found through the
    profile (a second profile of theirs is refused anyway), never handed out as theirs here."""
    create(runtime, "leased-only")
    subject = runtime.hasher.hash("leased-only")
    assert profile_key(runtime, "leased-only") is not None
    runtime.keys.forget(subject)

    assert runtime.keys.existing(subject) is None
    assert runtime.keys.has_key(subject)  # through the profile's binding


@pytest.mark.sqlite_only("the vault holds no audit staging on SQLCipher, so a read costs it nothing")
def test_a_key_taken_from_the_lease_is_remembered_so_reading_the_new_profile_reads_no_vault(runtime):
    view = create(runtime, "ada")
    runtime.vault_db.enable_statement_counting()

    before = runtime.vault_db.counter.this_thread().statements
    assert readable(runtime, view)

    assert runtime.vault_db.counter.this_thread().statements == before


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


# -- a lease's size and times, and the order keys are taken in ------------------------------

def test_a_lease_is_64_keys_wrapped_under_the_active_field_key_each_under_its_own_id_for_15_minutes(
        runtime, quiet_lease):
    from compliance import envelope
    from compliance.errors import DecryptionError
    from compliance.field_crypto import key_id_of
    from twin.storage.timestamps import from_db

    before = runtime.clock()
    view = create(runtime, "ada")
    rows = key_rows(runtime)

    assert len(rows) == 64 and len({r["key_id"] for r in rows}) == 64
    [created] = {r["created_at"] for r in rows}  # one lease, one transaction
    assert before <= from_db(created) <= runtime.clock()
    assert {from_db(r["lease_ends_at"]) - from_db(r["created_at"]) for r in rows} == {timedelta(seconds=900)}
    active = runtime.field_keys.cipher.active_key_id
    stored = runtime.vault_db.query("SELECT key_id, key_version, wrapped_key FROM subject_keys")
    assert {(r["key_version"], key_id_of(bytes(r["wrapped_key"]))) for r in stored} == {(active, active)}
    # Each wrapped key opens only under its own id: a row's wrapped key moved to another id does not.
    data_keys = {r["key_id"]: envelope.unwrap(runtime.field_keys, bytes(r["wrapped_key"]),
                                              SubjectKeyStore.aad(r["key_id"])) for r in stored}
    assert len(set(data_keys.values())) == 64 and {len(k) for k in data_keys.values()} == {32}
    first, second = stored[0], stored[1]
    with pytest.raises(DecryptionError):
        envelope.unwrap(runtime.field_keys, bytes(first["wrapped_key"]), SubjectKeyStore.aad(second["key_id"]))
    [row] = runtime.twin_db.query("SELECT profile_id, encrypted_data FROM learning_profiles")
    assert SubjectCipher(data_keys[profile_key(runtime, "ada")]).open(
        "learning_profiles", "encrypted_data", row["profile_id"], bytes(row["encrypted_data"]))["personal"] \
        == view["personal"]


def test_a_key_is_taken_only_while_five_minutes_of_its_lease_remain(runtime):
    now = [1000.0]
    lease = SubjectKeyLease(runtime.keys, background=False, monotonic=lambda: now[0])
    lease.refill()
    first_lease = {r["key_id"] for r in key_rows(runtime)}

    now[0] = 1000.0 + 600 - 0.5  # half a second before the margin
    early = lease.take()
    assert early.key_id in first_lease and early.usable()
    now[0] = 1000.0 + 600  # exactly 15 minutes less 5
    assert not early.usable()
    with pytest.raises(LeaseExpiredError, match="^the leased subject key's lease ended before the create committed$"):
        NewSubjectKey(early.cipher, early.key_id, early).check_usable()

    late = lease.take()  # the rest of the first lease is dropped: a second lease is taken
    assert late.key_id not in first_lease and len(key_rows(runtime)) == 128 and late.usable()


def test_keys_are_taken_oldest_lease_first_and_a_lease_is_added_only_below_the_low_water(runtime):
    now = [0.0]
    lease = SubjectKeyLease(runtime.keys, batch=4, low_water=2, background=False, monotonic=lambda: now[0])
    lease.refill()
    first = {r["key_id"] for r in key_rows(runtime)}
    taken = [lease.take().key_id, lease.take().key_id]  # 2 left: not below the low water

    lease.refill()
    assert {r["key_id"] for r in key_rows(runtime)} == first
    taken.append(lease.take().key_id)  # 1 left
    now[0] += 60
    lease.refill()
    second = {r["key_id"] for r in key_rows(runtime)} - first
    assert len(second) == 4
    taken += [lease.take().key_id for _ in range(5)]

    assert set(taken[:4]) == first and set(taken[4:]) == second  # the older lease first
    assert len(key_rows(runtime)) == 8  # the second lease is 4 usable keys yet: not low


def test_after_a_field_key_rotation_the_lease_holds_and_hands_out_keys_under_the_new_version(
        runtime, config, keyring, quiet_lease):
    from compliance.field_crypto import key_id_of

    keyring.save(config.keyring_path)  # the running service's keyring file
    create(runtime, "before")
    rotated = keyring.with_new_field_key()
    rotated.save(config.keyring_path)  # scripts/rotate_keys.py --new-field-key, elsewhere
    runtime.field_keys.refresh()  # what the next take or create does first (one stat)

    quiet_lease.refill()  # 63 keys left, all under the old version: a new lease is taken
    versions = [r["key_version"] for r in runtime.vault_db.query("SELECT key_version FROM subject_keys")]
    assert sorted(versions) == [keyring.active_field_key] * 64 + [rotated.active_field_key] * 64
    view = create(runtime, "after")
    row = runtime.vault_db.query_one("SELECT key_version, wrapped_key FROM subject_keys WHERE key_id = ?",
                                     (profile_key(runtime, "after"),))
    assert row["key_version"] == key_id_of(bytes(row["wrapped_key"])) == rotated.active_field_key
    assert len(key_rows(runtime)) == 128 and readable(runtime, view)


def test_a_create_after_a_rotation_drops_the_keys_under_the_old_version_for_a_new_lease(
        runtime, config, keyring, quiet_lease):
    keyring.save(config.keyring_path)
    create(runtime, "before")
    keyring.with_new_field_key().save(config.keyring_path)

    view = create(runtime, "after")  # its take finds the new keyring: no old-version key is used

    row = runtime.vault_db.query_one("SELECT key_version FROM subject_keys WHERE key_id = ?",
                                     (profile_key(runtime, "after"),))
    assert row["key_version"] == runtime.field_keys.cipher.active_key_id != keyring.active_field_key
    assert len(key_rows(runtime)) == 128 and readable(runtime, view)


def test_what_a_lease_and_its_keys_print_names_no_key_material(runtime, quiet_lease):
    key = quiet_lease.take()
    other = SubjectKeyLease(runtime.keys, background=False)

    assert repr(key) == f"LeasedKey({key.key_id!r}, <key hidden>)"
    assert repr(quiet_lease) == f"SubjectKeyLease(holder={quiet_lease.holder!r}, free=63)"
    # host and pid for the operator, and a random part: a restarted process never holds its
    # predecessor's lease, even under the same pid
    assert re.fullmatch(r"[^:]+:\d+:[0-9a-f]{8}", quiet_lease.holder) and other.holder != quiet_lease.holder


@pytest.mark.parametrize("sizes, refused", [
    ({"batch": 0}, "^a subject key lease's batch must be at least 1 key, not 0$"),
    ({"batch": -3}, "^a subject key lease's batch must be at least 1 key, not -3$"),
    ({"low_water": 0}, "^a subject key lease's low water must be at least 1 key, not 0$"),
    ({"low_water": -1}, "^a subject key lease's low water must be at least 1 key, not -1$"),
    ({"lease_seconds": 300.0}, "^a subject key lease of 300.0 s must be longer than its use margin of 300.0 s$"),
    ({"lease_seconds": 60.0, "use_margin_seconds": 90.0},
     "^a subject key lease of 60.0 s must be longer than its use margin of 90.0 s$"),
    # a key usable after its lease ended: reclaim could destroy it under a create committing it
    ({"use_margin_seconds": -1.0}, "^a subject key lease's use margin must be at least 0 s, not -1.0 s$"),
])
def test_a_lease_no_take_could_ever_get_a_key_from_is_refused_when_built(runtime, sizes, refused):
    # Each of these made every take loop forever: a refill never saw the lease as low, leased
    # no key, or leased keys already past their use margin.
    with pytest.raises(ValueError, match=refused):
        SubjectKeyLease(runtime.keys, background=False, **sizes)

    assert key_rows(runtime) == []


@pytest.mark.parametrize("sizes, leased", [({"batch": 1, "low_water": 1}, 3),
                                           ({"batch": 1, "low_water": 2}, 3),
                                           ({"batch": 2, "lease_seconds": 300.5}, 4),
                                           ({"batch": 1, "use_margin_seconds": 0.0}, 3)])
def test_the_smallest_lease_sizes_and_a_low_water_above_the_batch_still_hand_out_keys(runtime, sizes, leased):
    # Without the background refill a lease is leased only when empty: a batch per take here.
    now = [0.0]
    lease = SubjectKeyLease(runtime.keys, background=False, monotonic=lambda: now[0], **sizes)

    taken = [lease.take() for _ in range(3)]

    assert len({key.key_id for key in taken}) == 3 and all(key.usable() for key in taken)
    assert len(key_rows(runtime)) == leased
