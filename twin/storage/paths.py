"""Where database files live.

Priority, per database: explicit argument > the database's environment variable >
``TWIN_DATA_DIR`` > ``./data``. An unwritable directory falls back to a private (0700)
per-user temporary directory with a warning, and never in production. Every decision is
logged once per (database, path).
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import Mapping

from .errors import DataDirectoryError

log = logging.getLogger(__name__)

DATA_DIR_ENV = "TWIN_DATA_DIR"
DEFAULT_DATA_DIR = Path("data")

_logged: set[tuple[str, str]] = set()
_logged_lock = threading.Lock()


def _log_once(level: int, key: tuple[str, str], message: str, *args: object) -> None:
    with _logged_lock:
        if key in _logged:
            return
        _logged.add(key)
    log.log(level, message, *args)


def ensure_private_dir(directory: Path) -> Path:
    """Create ``directory`` (and parents) with mode 0700 and check it is writable."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{directory} is not writable")
    return directory


def private_fallback_dir() -> Path:
    """A per-user 0700 directory under the system temp dir (used only outside production)."""
    directory = Path(tempfile.gettempdir()) / f"learner-twin-{os.getuid()}"
    ensure_private_dir(directory)
    if directory.stat().st_uid != os.getuid() or directory.stat().st_mode & 0o077:
        raise DataDirectoryError(f"fallback directory {directory} is not private to this user")
    return directory


def resolve_database_path(
    filename: str,
    env_var: str | None = None,
    explicit: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    production: bool = False,
) -> Path:
    """Decide the path of one database file and make sure its directory exists (0700).

    ``filename`` is the default file name (e.g. ``digital_twin.db``); ``env_var`` the
    per-database variable (e.g. ``DIGITAL_TWIN_DB_PATH``).
    """
    environ = os.environ if environ is None else environ
    if explicit:
        path, reason = Path(explicit), "explicit argument"
    elif env_var and environ.get(env_var):
        path, reason = Path(environ[env_var]), env_var
    elif environ.get(DATA_DIR_ENV):
        path, reason = Path(environ[DATA_DIR_ENV]) / filename, DATA_DIR_ENV
    else:
        path, reason = DEFAULT_DATA_DIR / filename, "default ./data"
    path = path.expanduser().absolute()
    try:
        ensure_private_dir(path.parent)
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise PermissionError(f"{path} is not readable and writable")
    except OSError as exc:
        if production:
            raise DataDirectoryError(
                f"database directory for {filename} is unusable ({exc.strerror or exc}); "
                "production never falls back to a temporary directory") from None
        fallback = private_fallback_dir() / filename
        _log_once(logging.WARNING, (filename, str(fallback)),
                  "database %s: %s is unusable (%s); falling back to private directory %s",
                  filename, path.parent, exc.strerror or exc, fallback.parent)
        return fallback
    _log_once(logging.INFO, (filename, str(path)), "database %s: using %s (%s)", filename, path, reason)
    return path


def fsync_path(path: Path) -> None:
    """Flush a file's or a directory's entry to the disk (a directory: the names in it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


WRITE_PROBE_BYTES = 256 * 1024


def can_take_writes(directory: Path, probe_bytes: int = WRITE_PROBE_BYTES) -> bool:
    """Whether ``directory`` can take a write of ``probe_bytes`` right now: allocates them in a
    probe file and gives them back (quotas, read-only mounts and full disks all show)."""
    probe = directory / f".write-probe-{os.getpid()}-{threading.get_ident()}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, probe_bytes)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError:
        return False
    return True
