"""The deployment's keyring as the vault remembers it: fingerprints, never keys.

Replicas on a shared database pair must hold one keyring: a replica with another ID pepper
would hash user ids differently (lookups and erasures would silently miss), one without a field
key version would meet ciphertext it cannot open. ``twin db setup`` records the keyring's
fingerprints in the vault (``keyring_record``: the pepper's, and each field key version's with
whether it is active); on PostgreSQL ``twin serve`` checks its keyring against the record
before serving (``check``) and exits 2 on a mismatch.

Field-key rotation is two steps, so no replica meets a ciphertext under a key it lacks:
1. ``distribute``: a new version is added to the keyring, inactive, and recorded; the keyring
   file goes to every replica (each reloads it, or checks it at its next start);
2. ``activate``: once every replica holds it, the version becomes the one new data is
   encrypted under (recorded too), and the keyring goes out again; then rewrap.
A replica refuses to start with a keyring missing a recorded version, or activating a
version never recorded as distributed.
"""

from __future__ import annotations

import json
from typing import Any

from twin.storage.fingerprint import key_fingerprint
from twin.storage.timestamps import to_db, utc_now

from .errors import KeyringError
from .keyring import Keyring


class KeyringMismatchError(KeyringError):
    """This process's keyring is not the one the vault records for the deployment."""


def fingerprints(keyring: Keyring) -> dict[str, Any]:
    """What the vault records of a keyring (public names of its keys, never the keys)."""
    return {"pepper": key_fingerprint(keyring.id_pepper),
            "field_keys": {str(v): fp for v, fp in keyring.field_key_fingerprints().items()},
            "active_field_key": keyring.active_field_key}


def recorded(vault: Any) -> dict[str, Any] | None:
    row = vault.query_one("SELECT pepper_fingerprint, field_keys, active_field_key FROM keyring_record "
                          "WHERE id = 1")
    if row is None:
        return None
    return {"pepper": row["pepper_fingerprint"], "field_keys": json.loads(row["field_keys"]),
            "active_field_key": int(row["active_field_key"])}


def record(vault: Any, keyring: Keyring) -> None:
    """Record ``keyring`` as the deployment's (set-up, and each rotation step). Refuses a
    keyring with another pepper, or one that dropped or changed a recorded field key."""
    mine = fingerprints(keyring)

    def write(conn: Any) -> None:
        row = conn.execute("SELECT pepper_fingerprint, field_keys FROM keyring_record WHERE id = 1").fetchone()
        if row is not None:
            _compare({"pepper": row["pepper_fingerprint"], "field_keys": json.loads(row["field_keys"])},
                     mine, activating=True)
        conn.execute(
            "INSERT INTO keyring_record (id, pepper_fingerprint, field_keys, active_field_key, recorded_at) "
            "VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET field_keys = excluded.field_keys, "
            "active_field_key = excluded.active_field_key, recorded_at = excluded.recorded_at",
            (mine["pepper"], json.dumps(mine["field_keys"], sort_keys=True), mine["active_field_key"],
             to_db(utc_now())))
    vault.write(write)


def check(vault: Any, keyring: Keyring) -> None:
    """Raise ``KeyringMismatchError`` (one line, fingerprints only) unless ``keyring`` is the
    recorded one: same pepper, every recorded field key version held with the same key, and
    its active version one that was distributed."""
    expected = recorded(vault)
    if expected is None:
        raise KeyringMismatchError("the vault records no keyring: run `twin db setup` with the "
                                   "deployment's keyring first")
    _compare(expected, fingerprints(keyring), activating=False)


def _compare(expected: dict[str, Any], mine: dict[str, Any], *, activating: bool) -> None:
    if expected["pepper"] != mine["pepper"]:
        raise KeyringMismatchError(
            f"this keyring (ID pepper fingerprint {mine['pepper']}) is not the deployment's "
            f"(the vault records {expected['pepper']}): copy the deployment's keyring here")
    for version, fingerprint in sorted(expected["field_keys"].items(), key=lambda kv: int(kv[0])):
        held = mine["field_keys"].get(version)
        if held is None:
            raise KeyringMismatchError(f"this keyring lacks field key v{version} (fingerprint "
                                       f"{fingerprint}), which the deployment has distributed: "
                                       "copy the current keyring here")
        if held != fingerprint:
            raise KeyringMismatchError(f"this keyring's field key v{version} (fingerprint {held}) is "
                                       f"not the deployment's ({fingerprint})")
    active = str(mine["active_field_key"])
    if not activating and active not in expected["field_keys"]:
        raise KeyringMismatchError(f"this keyring encrypts under field key v{active}, which was "
                                   "never distributed: run `twin keys rotate --distribute-field-key` "
                                   "first (keys/README.md)")
