"""The live-service guard: a running service marks every database file it uses, so that a
command which replaces, re-encrypts or downgrades files refuses while it runs.

``ServiceGuard`` is the interface a storage backend implements:

- ``register(holder)``: a service, as it starts, marks its files until ``release()`` or until
  the process ends, crash included. It fails while a command holds the files exclusively.
- ``exclusive(holder)``: a command that replaces files holds them for its whole run; it raises
  ``FilesInUseError`` naming the running service (pid, host, start time) if there is one, and
  no service can start on the files until it is done.
- ``holders()``: who holds the files now.

``FileServiceGuard`` does this for SQLCipher files with ``flock(2)``, which the kernel drops
when a process dies. Per database file ``X.db`` there is a gate ``X.db-service.lock``: a
service holds a shared lock on it, a command an exclusive one (neither waits). Each holder
also leaves a record (pid, host, start time, role, files) in ``<dir>/.twin-services/``, locked
by its owner for as long as it lives, so that the one who is refused can be told who holds
the files; a record nobody locks is a dead process's and is removed. Local file systems only
(``flock`` is not reliable over NFS), as for the audit journal.

A PostgreSQL deployment implements the same interface with rows in the vault
(``twin.storage.postgresql.service_guard``): each replica registers with a heartbeat, and
``exclusive`` refuses while a heartbeat is fresh.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import socket
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

from .errors import StorageError

RECORD_DIR = ".twin-services"
GATE_SUFFIX = "-service.lock"


@dataclass(frozen=True)
class Holder:
    """A process holding database files: a running service, or a command replacing them."""

    role: str  # "service" or "command"
    command: str  # what it runs, e.g. "twin serve" or "twin db restore"
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc)
                            .isoformat(timespec="seconds").replace("+00:00", "Z"))

    def describe(self) -> str:
        return f"{self.command} (pid {self.pid} on host {self.host}, started {self.started_at})"


class FilesInUseError(StorageError):
    """Another process holds the files: ``holders`` says who (possibly nobody identifiable)."""

    def __init__(self, path: Path | str, holders: list[Holder], *, refused: str) -> None:
        self.path, self.holders = path, holders
        if holders:
            who = holders[0].describe() + (f" and {len(holders) - 1} more" if len(holders) > 1 else "")
        else:
            who = "a process that left no record"
        running = "a running service" if not holders or holders[0].role == "service" else "a command"
        super().__init__(f"{path}: in use by {running}: {who}; {refused}")


class Registration(ABC):
    """What ``register`` returns: held until ``release()`` or the end of the process."""

    @abstractmethod
    def release(self) -> None: ...


class ServiceGuard(ABC):
    """Marks the database files of a running service; see the module docstring."""

    @abstractmethod
    def register(self, holder: Holder) -> Registration:
        """Mark the files as used by a running service; ``FilesInUseError`` while a command
        holds them exclusively."""

    @abstractmethod
    def exclusive(self, holder: Holder) -> AbstractContextManager[None]:
        """Hold the files exclusively for the block; ``FilesInUseError`` names who holds them."""

    @abstractmethod
    def holders(self) -> list[Holder]:
        """Every live holder of any of the files."""


class _FileRegistration(Registration):
    def __init__(self, gates: list[int], records: list[tuple[int, Path]]) -> None:
        self._gates, self._records = gates, records

    def release(self) -> None:
        for path in [p for _, p in self._records]:
            path.unlink(missing_ok=True)  # before unlocking: nobody can see a live record unlocked
        for fd in self._gates + [fd for fd, _ in self._records]:
            os.close(fd)
        self._gates, self._records = [], []


class FileServiceGuard(ServiceGuard):
    """The guard for database files on a local file system (``flock``)."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        self.paths = sorted({Path(p).absolute() for p in paths})

    @staticmethod
    def gate_path(path: Path) -> Path:
        return path.with_name(path.name + GATE_SUFFIX)

    def _directories(self) -> list[Path]:
        return sorted({p.parent for p in self.paths})

    def _write_records(self, holder: Holder) -> list[tuple[int, Path]]:
        """One locked record per directory, published complete: written and locked under a
        temporary name first, so nobody ever sees it unlocked and takes it for a dead one's."""
        records = []
        doc = json.dumps({**asdict(holder), "files": [str(p) for p in self.paths]})
        try:
            for directory in self._directories():
                folder = directory / RECORD_DIR
                folder.mkdir(mode=0o700, exist_ok=True)
                _live_records(folder)  # sweep what dead processes left
                name = f"{holder.host}-{holder.pid}-{secrets.token_hex(4)}"
                tmp, final = folder / f".{name}.tmp", folder / f"{name}.json"
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, doc.encode())
                os.replace(tmp, final)
                records.append((fd, final))
        except BaseException:
            _FileRegistration([], records).release()
            raise
        return records

    def _lock_gates(self, mode: int, holder: Holder, refused: str) -> list[int]:
        gates: list[int] = []
        try:
            for path in self.paths:
                fd = os.open(self.gate_path(path), os.O_RDWR | os.O_CREAT, 0o600)
                gates.append(fd)
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                except BlockingIOError:
                    others = [h for h in self._holders_of(path) if h != holder]
                    raise FilesInUseError(path, others, refused=refused) from None
        except BaseException:
            for fd in gates:
                os.close(fd)
            raise
        return gates

    def register(self, holder: Holder) -> Registration:
        records = self._write_records(holder)
        try:
            gates = self._lock_gates(fcntl.LOCK_SH, holder,
                                     "start the service once that command has finished")
        except BaseException:
            _FileRegistration([], records).release()
            raise
        return _FileRegistration(gates, records)

    @contextmanager
    def exclusive(self, holder: Holder) -> Iterator[None]:
        records = self._write_records(holder)
        registration = _FileRegistration([], records)
        try:
            registration._gates = self._lock_gates(fcntl.LOCK_EX, holder, "stop it first")
            yield
        finally:
            registration.release()

    def holders(self) -> list[Holder]:
        seen: list[Holder] = []
        for path in self.paths:
            seen.extend(h for h in self._holders_of(path) if h not in seen)
        return seen

    def _holders_of(self, path: Path) -> list[Holder]:
        """Live holders whose record names ``path``, services first."""
        found = [Holder(doc["role"], doc["command"], doc["pid"], doc["host"], doc["started_at"])
                 for doc in _live_records(path.parent / RECORD_DIR) if str(path) in doc["files"]]
        return sorted(found, key=lambda h: h.role != "service")


def _live_records(folder: Path) -> list[dict]:
    """The records of live holders in ``folder``; a dead process's records are removed."""
    live = []
    for record in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            fd = os.open(record, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:  # its owner is alive
                doc = json.loads(os.read(fd, 1 << 16) or b"{}")
                if {"role", "command", "pid", "host", "started_at", "files"} <= set(doc):
                    live.append(doc)
            else:
                record.unlink(missing_ok=True)  # nobody holds it: its process is gone
        except (ValueError, OSError):
            continue  # a record we cannot read names nobody
        finally:
            os.close(fd)
    return live
