"""The erasure log: the vault's erasure tombstones in a file kept outside the backup sets.

A restore of an older backup brings back the tombstones' absence and the destroyed subject
keys. ``twin db restore`` therefore carries the tombstones of the live vault into the restored
pair. When the live vault is gone too (a lost disk, a PostgreSQL cluster rewound by point-in-
time recovery), the tombstones must come from somewhere else: an erasure log written by
``twin db erasure-log --out FILE`` to storage that backups and restores do not touch.

A log holds keyed subject hashes, receipt ids, times and counts, never a user id. It is
authenticated with HMAC-SHA256 under a key derived from the keyring's id pepper (the one key
that never rotates: rotating it would change every subject hash), so a log whose tombstones
were removed or edited is refused instead of silently resurrecting someone. ``restore_set``
also writes the tombstones it is carrying to such a log next to the vault before it replaces
anything, so a restore interrupted between replacing the files and merging the tombstones
loses none of them: the next ``twin db restore`` merges that log too.
"""

from __future__ import annotations

import hmac
import json
import os
from hashlib import sha256
from pathlib import Path
from typing import Any, Iterable, NamedTuple

from compliance.keyring import Keyring, derive_key

from ..storage import Backend, BackupVerificationError
from ..storage.paths import fsync_path

LOG_FORMAT = "learner-twin-erasure-log/1"
_MAC_LABEL = "erasure-log-mac"


class Tombstone(NamedTuple):
    user_id_hash: str
    receipt_id: str
    erased_at: str
    counts: str


class ErasureLogError(BackupVerificationError):
    """An erasure log that cannot be read or does not authenticate under this keyring."""


def vault_tombstones(vault: Backend) -> list[Tombstone]:
    """Every erasure tombstone of ``vault``."""
    return [Tombstone(*(str(v) for v in row)) for row in vault.query(
        "SELECT user_id_hash, receipt_id, erased_at, counts FROM erasure_tombstones "
        "ORDER BY user_id_hash")]


def _mac(keyring: Keyring, body: bytes) -> str:
    return hmac.new(derive_key(keyring.id_pepper, _MAC_LABEL), body, sha256).hexdigest()


def _body(tombstones: Iterable[Tombstone]) -> bytes:
    rows = sorted({t.user_id_hash: list(t) for t in tombstones}.values())
    return json.dumps({"format": LOG_FORMAT, "tombstones": rows}, separators=(",", ":"),
                      sort_keys=True).encode()


def write_log(path: Path, tombstones: Iterable[Tombstone], keyring: Keyring) -> int:
    """Write ``tombstones`` to ``path`` atomically (0600, fsynced); returns how many."""
    body = _body(latest(tombstones))
    doc = {"log": json.loads(body), "mac": _mac(keyring, body)}
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)
    return len(doc["log"]["tombstones"])


def read_log(path: Path, keyring: Keyring) -> list[Tombstone]:
    """The tombstones of the log at ``path``; ``ErasureLogError`` unless it authenticates."""
    try:
        doc = json.loads(Path(path).read_text())
        body = json.dumps(doc["log"], separators=(",", ":"), sort_keys=True).encode()
        mac = str(doc["mac"])
    except FileNotFoundError:
        raise ErasureLogError(f"{path}: no such erasure log") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ErasureLogError(f"{path}: not an erasure log ({type(exc).__name__})") from None
    if not hmac.compare_digest(mac, _mac(keyring, body)):
        raise ErasureLogError(f"{path}: the erasure log does not authenticate under this keyring "
                              "(edited, or written under another keyring)")
    if doc["log"].get("format") != LOG_FORMAT:
        raise ErasureLogError(f"{path}: not a {LOG_FORMAT} log")
    return [Tombstone(*row) for row in doc["log"]["tombstones"]]


def latest(tombstones: Iterable[Tombstone]) -> list[Tombstone]:
    """One tombstone per subject, the latest erasure's."""
    newest: dict[str, Tombstone] = {}
    for t in tombstones:
        if t.user_id_hash not in newest or t.erased_at > newest[t.user_id_hash].erased_at:
            newest[t.user_id_hash] = t
    return sorted(newest.values())


def merge_tombstones(vault: Backend, tombstones: Iterable[Tombstone]) -> None:
    """Add ``tombstones`` to ``vault`` (the later erasure of a subject wins) and destroy every
    subject key that a tombstone at or after its creation covers."""
    rows = [tuple(t) for t in latest(tombstones)]

    def merge(conn: Any) -> None:
        # The later erasure wins: an older tombstone in the backup must not hide a newer one
        # (it would let a key created between the two erasures survive the restore).
        conn.executemany(
            "INSERT INTO erasure_tombstones (user_id_hash, receipt_id, erased_at, counts) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (user_id_hash) DO UPDATE SET "
            "erased_at = excluded.erased_at, receipt_id = excluded.receipt_id, counts = excluded.counts "
            "WHERE excluded.erased_at > erasure_tombstones.erased_at", rows)
        conn.execute("DELETE FROM subject_keys WHERE user_id_hash IN (SELECT t.user_id_hash FROM "
                     "erasure_tombstones t WHERE t.erased_at >= subject_keys.created_at)")
    if rows:
        vault.write(merge)
