"""What the subject-key lease tests look at (``compliance.subject_key_lease``): profiles created
through the real runtime, the vault's key rows, the key id a profile's row names, and whether a
profile still reads back."""

from __future__ import annotations

from compliance.audit import Actor

ACTOR = Actor("tok_lease", "service")


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
