"""Disk space set aside so a record that must be written can still be written on a full disk.

The audit journal keeps one (``AuditJournal.ensure_room``): a request checks the reserve is in
place before it starts (one ``stat``), and an append that fails for lack of space deletes it to
make room for its record. While the reserve cannot be re-created the disk is full and requests
are refused up front, before they change or disclose anything, rather than after.

One reserve file is shared by every process using the directory: any of them may use it up,
and any of them re-creates it once there is space again.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskReserve:
    def __init__(self, directory: Path, size: int, name: str = ".reserve") -> None:
        self.path = directory / name
        self.size = size
        self._path_text = os.fspath(self.path)  # ensure() runs before every request: no Path work

    def ensure(self) -> None:
        """Make sure the reserve exists at its full size; raises ``OSError`` (``ENOSPC`` on a
        full disk) when it cannot be allocated, leaving no partial reserve behind."""
        if not self.size:
            return
        try:
            if os.stat(self._path_text).st_size >= self.size:
                return
        except FileNotFoundError:
            pass
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)
            finally:
                os.close(fd)
        except OSError:
            try:  # a partly allocated reserve is nobody's: give its space back
                if self.path.stat().st_size < self.size:
                    self.path.unlink()
            except OSError:
                pass
            raise

    def use(self) -> bool:
        """Delete the reserve so a record can take its space; False if there was none."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    def discard(self) -> None:
        """Remove the reserve (the last process using the directory stops)."""
        self.path.unlink(missing_ok=True)
