"""Model bytes in the registry's PostgreSQL database (``model_blobs``), so every replica loads
what any replica saved: the same interface as ``files.ModelFileStore``, which keeps them in a
local directory beside an SQLCipher registry.

A blob is written in the transaction that registers its version (``publish`` runs inside
``save_model``'s), so a registered version always has its bytes; its SHA-256 is checked on
every read, as for a file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from twin.storage.pipeline import execute_at_commit

from .errors import ModelFileMissingError
from .files import StagedFile, verified


class ModelBlobStore:
    """``model_blobs`` rows keyed by the version's ``file_name``."""

    directory: Path | None = None  # nothing on disk

    def __init__(self, db: Any) -> None:
        self.db = db
        self._staged: dict[Path, bytes] = {}

    def stage(self, data: bytes) -> StagedFile:
        """Hash ``data`` and keep it for ``publish`` (nothing is written yet)."""
        staged = StagedFile(Path(f"staged-{id(data)}-{len(self._staged)}"),
                            hashlib.sha256(data).hexdigest(), len(data))
        self._staged[staged.path] = bytes(data)
        return staged

    def publish(self, staged: StagedFile, file_name: str) -> Path:
        """Insert the staged bytes, in this thread's open transaction (with its COMMIT)."""
        data = self._staged[staged.path]
        execute_at_commit(self.db.connection(), "INSERT INTO model_blobs (file_name, data) VALUES (?, ?)",
                          (file_name, data))
        return Path(file_name)

    def read(self, file_name: str, expected_sha256: str) -> bytes:
        row = self.db.query_one("SELECT data FROM model_blobs WHERE file_name = ?", (file_name,))
        if row is None:
            raise ModelFileMissingError(f"model file {file_name} is missing")
        return verified(bytes(row[0]), file_name, expected_sha256)

    def delete(self, file_name: str) -> bool:
        return self.db.execute("DELETE FROM model_blobs WHERE file_name = ?", (file_name,)).rowcount > 0

    def discard(self, *paths: Path | None) -> None:
        """Forget staged bytes (a failed save's transaction rolled back its row)."""
        for path in paths:
            if path is not None:
                self._staged.pop(path, None)
