"""A subject's wrapped key as the vault stores it, found the way the service finds it: bound
by subject hash, or through the profile row that names a leased key (compliance.subject_key_lease)."""

from __future__ import annotations

from typing import Any


def subject_key_row(runtime: Any, subject_hash: str) -> Any | None:
    row = runtime.vault_db.query_one("SELECT * FROM subject_keys WHERE user_id_hash = ?", (subject_hash,))
    if row is not None:
        return row
    profile = runtime.twin_db.query_one("SELECT subject_key_id FROM learning_profiles WHERE user_id_hash = ?",
                                        (subject_hash,))
    if profile is None or profile["subject_key_id"] is None:
        return None
    return runtime.vault_db.query_one("SELECT * FROM subject_keys WHERE key_id = ?", (profile["subject_key_id"],))


def wrapped_key_of(runtime: Any, subject_hash: str) -> bytes:
    row = subject_key_row(runtime, subject_hash)
    assert row is not None, "the subject has no key"
    return bytes(row["wrapped_key"])
