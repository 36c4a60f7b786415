"""The one way a subject's data ends: erasure and retention both come here.

Ending a subject deletes their rows from every provider's database (one transaction per
database, children first) and destroys their data key with their other vault rows (learner
tokens), then drops what this process remembers of both. The order of those two steps is the
one thing that differs, and on purpose:

- an erasure is guarded by its tombstone, written first: rows go first and the key last, so a
  crash in between leaves the key, and ``reapply_tombstones`` finishes the erasure at the next
  start;
- a retention purge has no tombstone: the key goes first and the rows last, so a crash in
  between leaves expired rows (never served, unreadable without their key) that the next run
  deletes. The other order could leave a key that no later run would find.
"""

from __future__ import annotations

from typing import Sequence

from twin.storage.progress import ProgressFactory, silent

from .providers import PersonalDataProvider
from .subject_keys import SubjectKeyStore
from .tokens import TokenStore


class SubjectEnding:
    def __init__(self, providers: Sequence[PersonalDataProvider], keys: SubjectKeyStore,
                 tokens: TokenStore | None = None) -> None:
        self.data = [p for p in providers if not p.holds_subject_keys]
        self.vault = [p for p in providers if p.holds_subject_keys]
        self.keys = keys
        self.tokens = tokens  # its remembered tokens of an ended subject are dropped

    def end(self, subject_hashes: Sequence[str], *, key_first: bool = False,
            created_before: str | None = None, progress: ProgressFactory = silent) -> dict[str, int]:
        """End the subjects; returns rows deleted per table.

        ``key_first``: shred before deleting the rows (retention; see the module docstring).
        ``created_before``: only rows stored at or before it go, and the key stays (a subject
        who came back after an erasure keeps what they stored since). ``progress`` counts the
        tables done.
        """
        deleted: dict[str, int] = {}
        # Every key their rows name goes with them: bound here to go by subject hash, or, when
        # the vault binds them another key already, destroyed by key id in the keys' step.
        strays = self.keys.settle(subject_hashes) if created_before is None else []
        steps = [self.vault, self.data] if key_first else [self.data, self.vault]
        tables = sum(1 for p in self.data + self.vault for t in p.tables if t.erase)
        with progress("erase subject", tables, "tables") as bar:
            for providers in steps:
                shredded = self.keys.destroy_strays(strays) if providers is self.vault else 0
                for provider in providers:
                    deleted.update(provider.erase(subject_hashes, created_before, tick=bar.update))
                if providers is self.vault:
                    deleted["subject_keys"] = deleted.get("subject_keys", 0) + shredded
                    self.forget(subject_hashes)
        return deleted

    def forget(self, subject_hashes: Sequence[str]) -> None:
        """Drop what this process remembers of the subjects' keys and tokens."""
        for subject_hash in subject_hashes:
            self.keys.forget(subject_hash)
        if self.tokens is not None:
            self.tokens.forget_subjects(subject_hashes)
