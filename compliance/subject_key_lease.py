"""Leases of fresh subject keys: creating a subject's profile commits once, in the data database.

A process leases a batch of new data keys from the vault in one transaction: each wrapped under
the field key (``compliance.envelope``, its associated data naming its key id), durable, bound
to no one (``user_id_hash`` NULL), leased to this process (``leased_to``, ``lease_ends_at``).
Creating a profile takes one key from the lease; the profile's row records its key id, so that
row is the binding and the create's one commit is the data database's. The lease then records
the binding in the vault off the request path (``flush``, a second after the first binding it
has not recorded, all of them in one commit), which only saves later lookups a step: the data
row is what counts.

The rules that keep every acknowledged profile's key alive and no key bound to two subjects:

- a key is taken once: it leaves the in-memory lease when taken, and a new process never
  inherits a dead one's lease (its holder id is new), so a key reaches at most one data row;
- a key is used only while at least ``USE_MARGIN_SECONDS`` of its lease remain, checked again
  inside the create's transaction (``LeasedKey.usable``), so no create can commit a key after
  its lease ended;
- unbound keys are reclaimed only ``RECLAIM_AFTER_SECONDS`` after their lease ended, and only
  after the data database was asked which of them its rows name: those are bound (to the
  subject the row names), never destroyed; the others were never used, and are deleted.

A key taken by a create that then failed is dropped from the lease (never offered again) and is
reclaimed like any other. Refilling runs on a background thread when the lease runs low; a
request waits only when it is empty.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

from twin.storage.timestamps import to_db

from . import envelope
from .job_lock import holder_id
from .key_bindings import Binding, bind
from .keyring_watcher import FixedKeys
from .subject_keys import FieldSealer, SubjectCipher, SubjectKeyStore

log = logging.getLogger(__name__)

LEASE_SECONDS = 900.0            # a batch is leased for 15 minutes...
USE_MARGIN_SECONDS = 300.0       # ...and a key taken only while 5 of them remain
RECLAIM_AFTER_SECONDS = 3600.0   # unbound keys go an hour after their lease ended (clock skew, pauses)
BATCH = 64
LOW_WATER = 16                   # refill (in the background) below this many keys
RECLAIM_EVERY_SECONDS = 600.0    # a refill also reclaims, at most this often
RECLAIM_BATCH = 500
FLUSH_DELAY_SECONDS = 1.0        # bindings made meanwhile share one vault commit
KEY_ID_HOUR_SECONDS = 3600       # a leased key id names the hour of its lease, no finer
CLOSE_WAIT_SECONDS = 10.0        # a shutdown waits at most this long for each of the lease's threads


def leased_key_id(leased_at: datetime) -> str:
    """A new leased key id: ``sk_``, the lease's hour (its start in microseconds since the
    epoch, 14 hex digits: the width ids had when they named the microsecond), 96 random bits
    (16 url-safe characters, what makes it unique).

    The hour, not the lease's time: ids sort by hour, so a batch's inserts and the creates' go
    to the few last pages of each key-id index (pages a commit encrypts and authenticates
    whole, and reads back first when not cached), while every batch any process leases within
    the hour shares the prefix: it does not link the profiles one process created under one
    lease, and says less than a profile's own ``created_at``. What takes and reclaims keys
    depends on no order of ids (``take`` is oldest lease first from memory)."""
    hour = int(leased_at.timestamp()) // KEY_ID_HOUR_SECONDS * KEY_ID_HOUR_SECONDS
    return f"sk_{hour * 1_000_000:014x}{secrets.token_urlsafe(12)}"


@dataclass(frozen=True)
class LeasedKey:
    key_id: str
    cipher: SubjectCipher
    version: int                 # the field key it is wrapped under
    usable_until: float          # monotonic seconds
    monotonic: Callable[[], float]

    def __repr__(self) -> str:
        return f"LeasedKey({self.key_id!r}, <key hidden>)"

    def usable(self) -> bool:
        """Whether a create may still commit this key (its lease has the margin left)."""
        return self.monotonic() < self.usable_until


class LeaseExpiredError(RuntimeError):
    """The create's leased key ran out of lease before the commit (a stalled request)."""


@dataclass(frozen=True)
class NewSubjectKey:
    """The key a profile is created with: the subject's own (``key_id`` None, found by subject
    hash) or one taken from the lease (``key_id`` goes in the data row)."""

    sealer: FieldSealer
    key_id: str | None
    leased: LeasedKey | None = None

    def check_usable(self) -> None:
        """Inside the create's transaction: raise unless its leased key may still be committed."""
        if self.leased is not None and not self.leased.usable():
            raise LeaseExpiredError("the leased subject key's lease ended before the create committed")


def _refuse_a_lease_never_taken_from(batch: int, low_water: int, lease_seconds: float,
                                     use_margin_seconds: float) -> None:
    """Refuse the sizes with which every take would wait forever: a refill leases only while
    fewer than ``low_water`` usable keys are left (never, at 0), a batch of no key adds none,
    and keys leased for no longer than the margin are unusable from the start (each refill
    would lease another batch to drop). A low water above the batch is allowed: refills then
    lease batches until the low water is reached. A negative margin is refused too: a key would
    stay usable after its lease ended, so reclaim could destroy it while a create commits with it."""
    if batch < 1:
        raise ValueError(f"a subject key lease's batch must be at least 1 key, not {batch}")
    if low_water < 1:
        raise ValueError(f"a subject key lease's low water must be at least 1 key, not {low_water}")
    if use_margin_seconds < 0:
        raise ValueError(f"a subject key lease's use margin must be at least 0 s, not {use_margin_seconds} s")
    if lease_seconds <= use_margin_seconds:
        raise ValueError(f"a subject key lease of {lease_seconds} s must be longer than its use margin "
                         f"of {use_margin_seconds} s")


class SubjectKeyLease:
    """One process's lease of unbound subject keys (refused at sizes no take would ever get a
    key with: ``_refuse_a_lease_never_taken_from``)."""

    def __init__(self, keys: SubjectKeyStore, *, batch: int = BATCH, low_water: int = LOW_WATER,
                 lease_seconds: float = LEASE_SECONDS, use_margin_seconds: float = USE_MARGIN_SECONDS,
                 reclaim_after_seconds: float = RECLAIM_AFTER_SECONDS, background: bool = True,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        _refuse_a_lease_never_taken_from(batch, low_water, lease_seconds, use_margin_seconds)
        self.keys = keys
        self.holder = holder_id()
        self._batch, self._low_water = batch, low_water
        self._lease_seconds, self._margin = lease_seconds, use_margin_seconds
        self._reclaim_after = reclaim_after_seconds
        self._background = background
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._refill_lock = threading.Lock()
        self._free: deque[LeasedKey] = deque()  # oldest lease first
        self._pending: list[Binding] = []
        self._refiller: threading.Thread | None = None
        self._flusher: threading.Timer | None = None
        self._last_reclaim = float("-inf")

    def __repr__(self) -> str:
        return f"SubjectKeyLease(holder={self.holder!r}, free={len(self._free)})"

    # -- the request path ------------------------------------------------------------------

    def for_new_subject(self, subject_hash: str) -> NewSubjectKey:
        """The key to create the subject's profile with: theirs if they have one (made by
        another data owner), else one from the lease."""
        existing = self.keys.existing(subject_hash)
        if existing is not None:
            return NewSubjectKey(existing, None)
        leased = self.take()
        return NewSubjectKey(leased.cipher, leased.key_id, leased)

    def take(self) -> LeasedKey:
        """A usable key, removed from the lease; waits for a lease only when none is left.

        Keys are taken oldest lease first, so the first to run out of lease are at the front:
        those are dropped. After a field-key rotation (the keyring file was replaced: one stat,
        as for any new key) so are the keys wrapped under another version than the active one,
        so new subjects' keys are wrapped under the new one; every dropped key is reclaimed
        like any unused key. A key is checked when it reaches the front, so a take costs the
        same however many keys the lease holds."""
        while True:
            active = self.keys.field_keys.refresh().active_key_id
            with self._lock:
                now, free = self._monotonic(), self._free
                while free and (free[0].usable_until <= now or free[0].version != active):
                    free.popleft()
                if free:
                    key = free.popleft()
                    if len(free) < self._low_water:
                        self._start_refill()
                    return key
            self.refill()

    def bound(self, new: NewSubjectKey, subject_hash: str, since: str) -> None:
        """After the create committed: remember the key, and queue its vault binding."""
        if new.leased is None:
            return
        self.keys.remember(subject_hash, new.leased.cipher)
        with self._lock:
            self._pending.append(Binding(new.leased.key_id, subject_hash, since))
            if len(self._pending) >= self._batch:
                self._start_refill()
            elif self._background and (self._flusher is None or not self._flusher.is_alive()):
                self._flusher = threading.Timer(FLUSH_DELAY_SECONDS, self._flush_quietly)
                self._flusher.daemon = True
                self._flusher.start()

    # -- off the request path --------------------------------------------------------------

    def _start_refill(self) -> None:
        """Under ``_lock``: refill on a background thread unless one is already running."""
        if not self._background or (self._refiller is not None and self._refiller.is_alive()):
            return
        self._refiller = threading.Thread(target=self._refill_quietly, name="subject-key-lease",
                                          daemon=True)
        self._refiller.start()

    def _refill_quietly(self) -> None:
        try:
            self.refill()
        except Exception:  # the next take tries again (and waits if it must)
            log.warning("leasing subject keys failed", exc_info=True)

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except Exception:  # kept queued for the next flush; the data rows bind them meanwhile
            log.warning("recording subject key bindings failed", exc_info=True)

    def refill(self) -> None:
        """Lease a batch if the lease is low, record pending bindings, reclaim now and then."""
        with self._refill_lock:
            with self._lock:
                now, active = self._monotonic(), self.keys.field_keys.cipher.active_key_id
                low = sum(1 for k in self._free if k.usable_until > now and k.version == active) \
                    < self._low_water
            if low:
                fresh = self.lease_batch(self._batch)
                with self._lock:
                    self._free.extend(fresh)
            self.flush()
            if self._monotonic() - self._last_reclaim >= RECLAIM_EVERY_SECONDS:
                self._last_reclaim = self._monotonic()
                reclaim(self.keys, self._reclaim_after)

    def lease_batch(self, count: int) -> list[LeasedKey]:
        """``count`` new keys, stored wrapped and leased to this process in one transaction;
        their ids name the lease's hour (``leased_key_id``)."""
        started = self._monotonic()
        now = self.keys.now()
        created, ends = to_db(now), to_db(now + timedelta(seconds=self._lease_seconds))
        usable_until = started + self._lease_seconds - self._margin
        wrapping = FixedKeys(self.keys.field_keys.refresh())  # one keyring check (a stat) per batch
        made, rows = [], []
        for _ in range(count):
            key_id = leased_key_id(now)
            data_key, wrapped, version = envelope.new_data_key(wrapping, self.keys.aad(key_id))
            made.append(LeasedKey(key_id, SubjectCipher(data_key), version, usable_until, self._monotonic))
            rows.append((key_id, version, wrapped, created, self.holder, ends))
        self.keys.vault.write(lambda conn: conn.executemany(
            "INSERT INTO subject_keys (key_id, user_id_hash, key_version, wrapped_key, created_at, "
            "leased_to, lease_ends_at) VALUES (?, NULL, ?, ?, ?, ?, ?)", rows))
        return made

    def flush(self) -> int:
        """Record the queued bindings in the vault (one transaction); returns how many."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return 0
        try:
            return bind(self.keys.vault, pending)
        except Exception:
            with self._lock:  # the data rows still bind them; try again at the next flush
                self._pending[:0] = pending
            raise

    def close(self, timeout: float = CLOSE_WAIT_SECONDS) -> None:
        """At shutdown: wait for a running refill, at most ``timeout`` seconds (one stuck on a
        vault that never answers must not hold the shutdown forever: what it leased unused is
        reclaimed like any unused key), and record the pending bindings."""
        for thread in (self._flusher, self._refiller):
            if thread is not None:
                if isinstance(thread, threading.Timer):
                    thread.cancel()
                thread.join(timeout=timeout)
        self.flush()


def reclaim(keys: SubjectKeyStore, after_seconds: float = RECLAIM_AFTER_SECONDS,
            batch: int = RECLAIM_BATCH, now: datetime | None = None) -> dict[str, int]:
    """Unbound keys whose lease ended ``after_seconds`` ago: those a data row names are bound to
    its subject, the others destroyed. Returns ``{"bound": n, "destroyed": m}``.

    Nothing is destroyed without the data owner's ``KeyBindings`` to ask (a store without them
    reclaims nothing). Any process may run it, concurrently: binding and deleting are both
    guarded by the key still being unbound and expired.
    """
    result = {"bound": 0, "destroyed": 0}
    if keys.bindings is None:
        return result
    cutoff = to_db((now or keys.now()) - timedelta(seconds=after_seconds))
    after = ""  # the key ids already looked at: those left (named, their subject has a key) are passed
    while True:
        ids = [r["key_id"] for r in keys.vault.query(
            "SELECT key_id FROM subject_keys WHERE user_id_hash IS NULL AND lease_ends_at < ? "
            "AND key_id > ? ORDER BY key_id LIMIT ?", (cutoff, after, batch))]
        if not ids:
            return result
        after = ids[-1]
        referenced = keys.bindings.referencing(ids)
        bound = bind(keys.vault, referenced) if referenced else 0
        named = {b.key_id for b in referenced}
        unused = [(key_id, cutoff) for key_id in ids if key_id not in named]
        destroyed = _destroy_unbound(keys, unused) if unused else 0
        result["bound"] += bound
        result["destroyed"] += destroyed
        if len(ids) < batch:
            return result


def _destroy_unbound(keys: SubjectKeyStore, rows: list[tuple[str, str]]) -> int:
    def work(conn: Any) -> int:
        return sum(conn.execute("DELETE FROM subject_keys WHERE key_id = ? AND user_id_hash IS NULL "
                                "AND lease_ends_at < ?", row).rowcount for row in rows)
    return keys.vault.write(work)
