"""Which subject key a profile was created with: the learner domain's ``KeyBindings``.

A profile created with a key from its process's lease (``compliance.subject_key_lease``) names
that key in ``subject_key_id``; until the vault records the binding, this row is it. The vault's
key store asks here to find such a subject's key, to settle it before the subject ends, and
before it reclaims a leased key (a key a row names is never destroyed).
"""

from __future__ import annotations

from typing import Sequence

from compliance.subject_keys import Binding
from twin.storage import Database

from .tables import PROFILES

_CHUNK = 500  # bound parameters per statement, far below any engine's limit


class ProfileKeyBindings:
    def __init__(self, db: Database) -> None:
        self.db = db

    def __repr__(self) -> str:
        return f"ProfileKeyBindings({self.db.name!r})"

    def _select(self, column: str, values: Sequence[str]) -> list[Binding]:
        found: list[Binding] = []
        for start in range(0, len(values), _CHUNK):
            chunk = list(values[start:start + _CHUNK])
            marks = ", ".join("?" * len(chunk))
            found += [Binding(r["subject_key_id"], r[PROFILES.subject_hash_column], r["created_at"])
                      for r in self.db.query(
                          f"SELECT subject_key_id, {PROFILES.subject_hash_column}, created_at "
                          f"FROM {PROFILES.name} WHERE {column} IN ({marks}) "
                          f"AND subject_key_id IS NOT NULL", chunk)]
        return found

    def bound_keys(self, subject_hashes: Sequence[str]) -> list[Binding]:
        return self._select(PROFILES.subject_hash_column, subject_hashes)

    def referencing(self, key_ids: Sequence[str]) -> list[Binding]:
        return self._select("subject_key_id", key_ids)
