"""Model files on disk: written atomically and privately, read back only if unchanged.

A file is written to a temporary name (mode 0600), fsynced, then renamed into place and its
directory fsynced, so a crash leaves either no file or the whole file, never a torn one.
Its SHA-256 is recorded in the (encrypted) registry database; a file whose bytes no longer
match is refused, which also catches tampering by anyone who cannot rewrite the database.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from twin.storage.paths import ensure_private_dir

from .errors import ChecksumMismatchError, ModelFileMissingError, ModelRegistryError
from .naming import FILE_NAME

log = logging.getLogger(__name__)

_CHUNK = 1024 * 1024


def verified(data: bytes, file_name: str, expected_sha256: str) -> bytes:
    """``data`` if its SHA-256 is ``expected_sha256``, else ``ChecksumMismatchError``."""
    actual = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(actual, expected_sha256):
        raise ChecksumMismatchError(
            f"model file {file_name} changed since it was saved (SHA-256 {actual}, "
            f"recorded {expected_sha256}); refusing to load it")
    return data


@dataclass(frozen=True)
class StagedFile:
    """A fully written temporary file, not yet under its final name."""

    path: Path
    sha256: str
    size: int


class ModelFileStore:
    """The directory of model files (created 0700)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = ensure_private_dir(Path(directory).absolute())
        if self.directory.stat().st_mode & 0o077:
            log.warning("model directory %s is accessible to group/others; chmod 700 it",
                        self.directory)

    def path_of(self, file_name: str) -> Path:
        """The path of a stored file; refuses names that could point outside the directory."""
        if not FILE_NAME.fullmatch(file_name) or ".." in file_name:
            raise ModelRegistryError(f"refusing unsafe model file name {file_name!r}")
        return self.directory / file_name

    def stage(self, data: bytes) -> StagedFile:
        """Write ``data`` to a new private temporary file and fsync it."""
        path = self.directory / f".staging-{secrets.token_hex(8)}.partial"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            for start in range(0, len(view), _CHUNK):
                chunk = view[start:start + _CHUNK]
                while chunk:
                    written = os.write(fd, chunk)
                    chunk = chunk[written:]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return StagedFile(path, hashlib.sha256(data).hexdigest(), len(data))

    def publish(self, staged: StagedFile, file_name: str) -> Path:
        """Rename a staged file to its final name, durably."""
        final = self.path_of(file_name)
        os.replace(staged.path, final)
        self._sync_directory()
        return final

    def read(self, file_name: str, expected_sha256: str) -> bytes:
        """The file's bytes, only if their SHA-256 is ``expected_sha256``."""
        path = self.path_of(file_name)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ModelFileMissingError(f"model file {file_name} is missing") from None
        return verified(data, file_name, expected_sha256)

    def delete(self, file_name: str) -> bool:
        """Remove a file; False if it was already gone."""
        try:
            self.path_of(file_name).unlink()
        except FileNotFoundError:
            return False
        return True

    def discard(self, *paths: Path | None) -> None:
        """Best-effort removal of files a failed save left behind."""
        for path in paths:
            if path is not None:
                path.unlink(missing_ok=True)

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
