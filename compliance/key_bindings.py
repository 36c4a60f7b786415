"""Bindings of subjects to leased keys: the data rows that name a subject's key, and recording
them in the vault (``bind``). A key leased by ``compliance.subject_key_lease`` is bound to no one
until a profile takes it; the profile's row is its binding until the vault records it.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, Sequence

from twin.storage import Database, IntegrityError


class Binding(NamedTuple):
    """A data row binding a subject to a leased key, and since when (the row's creation)."""

    key_id: str
    subject_hash: str
    since: str


class KeyBindings(Protocol):
    """The data owner's rows that name a subject's key (a profile created with a leased one)."""

    def bound_keys(self, subject_hashes: Sequence[str]) -> list[Binding]:
        """The bindings of these subjects."""

    def referencing(self, key_ids: Sequence[str]) -> list[Binding]:
        """The bindings naming these keys."""


def chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    """``ids`` in statements' worth (bound parameters far below any engine's limit)."""
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def marks(chunk: Sequence[str]) -> str:
    return ", ".join("?" * len(chunk))


_BIND = ("UPDATE subject_keys SET user_id_hash = ?, created_at = ?, leased_to = NULL, lease_ends_at = NULL "
         "WHERE key_id = ? AND user_id_hash IS NULL "
         "AND NOT EXISTS (SELECT 1 FROM subject_keys b WHERE b.user_id_hash = ?)")


def bind(vault: Database, bindings: Sequence[Binding]) -> int:
    """Record the bindings in the vault, in one transaction; returns the keys bound.

    A key's ``created_at`` becomes its binding's ``since`` (when the subject's data began to use
    it), which erasure tombstones are compared with. A subject bound to another key already (a
    key of theirs made at the same moment elsewhere) leaves this one unbound: it stays while a
    data row names it, and is reclaimed once none does (``compliance.subject_key_lease``).
    """
    rows = [(b.subject_hash, b.since, b.key_id, b.subject_hash) for b in bindings]

    def work(conn: Any) -> int:
        return sum(conn.execute(_BIND, row).rowcount for row in rows)

    try:
        return vault.write(work)
    except IntegrityError:  # a binding made elsewhere between the check and the update
        return sum(vault.write(lambda conn, row=row: conn.execute(_BIND, row).rowcount)
                   for row in rows if not _taken(vault, row[0]))


def _taken(vault: Database, subject_hash: str) -> bool:
    return vault.query_one("SELECT 1 FROM subject_keys WHERE user_id_hash = ?", (subject_hash,)) is not None
