"""When a running process reads its keyring again: the key-reload policy, beside the keyring.

A field-key rotation (``scripts/rotate_keys.py --new-field-key``) replaces the keyring file
while services run. Every process keeps serving: a ``KeyringWatcher`` holds the field cipher
this process wraps data keys with (subject keys, audit journal segments) and re-reads the
keyring

- before a new data key is wrapped, only if the keyring file was replaced since it was last
  read (``refresh``: one ``stat``; rotation replaces the file atomically), so new data goes
  under the newest version;
- when a wrapped key names a field-key version this process does not hold yet (``reload``).

It keeps every version it already holds (old ciphertexts stay readable), and ignores a keyring
whose database key changed: that is a rekey, which needs a restart, not a reload. Reading the
keyring is not this module's business: it is handed ``load``, which returns the keyring or None
when there is nothing to read (it must never create one).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Callable

from .errors import KeyringError
from .field_crypto import FieldCipher
from .keyring import Keyring

log = logging.getLogger(__name__)


def _file_signature(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


class KeyringWatcher:
    """The field keys of one process, re-read from the keyring when it changes.

    Without ``load`` the keys never change (a fixed cipher: tests, one-shot scripts).
    """

    def __init__(self, keyring: Keyring, *, load: Callable[[], Keyring | None] | None = None,
                 path: Path | None = None) -> None:
        self._database_key = keyring.database_key
        self._field_keys = dict(keyring.field_keys)
        self._load = load
        self._path = path
        self._signature = _file_signature(path)
        self._lock = threading.Lock()
        self.cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)

    def __repr__(self) -> str:
        return f"KeyringWatcher({self.cipher!r}, reloads={self._load is not None})"

    @property
    def can_reload(self) -> bool:
        return self._load is not None

    def refresh(self) -> FieldCipher:
        """The current cipher, after re-reading the keyring if its file was replaced. A failed
        read is logged and the current keys are kept: the next call tries again."""
        if self._load is None or _file_signature(self._path) == self._signature:
            return self.cipher
        try:
            return self._reread()
        except (KeyringError, OSError) as exc:
            log.warning("keyring reload failed (%s); keeping this process's keys", exc)
            return self.cipher

    def reload(self) -> FieldCipher:
        """Re-read the keyring now (a ciphertext names a version this process lacks). Raises
        what reading it raises."""
        return self.cipher if self._load is None else self._reread()

    def _reread(self) -> FieldCipher:
        with self._lock:
            signature = _file_signature(self._path)
            fresh = self._load() if self._load is not None else None
            if fresh is None:
                return self.cipher  # nothing to read from (and never generate a keyring here)
            self._signature = signature
            if fresh.database_key not in (self._database_key, fresh.previous_database_key):
                log.warning("keyring reload: the database key changed; keeping this process's keys")
                return self.cipher
            self._field_keys.update(fresh.field_keys)
            self.cipher = FieldCipher(self._field_keys, fresh.active_field_key)
            log.info("field keys reloaded: versions %s, active %d", sorted(self._field_keys),
                     fresh.active_field_key)
            return self.cipher


class FixedKeys:
    """Field keys that never change, with the watcher's interface (tests, one-shot scripts)."""

    can_reload = False

    def __init__(self, cipher: FieldCipher) -> None:
        self.cipher = cipher

    def __repr__(self) -> str:
        return f"FixedKeys({self.cipher!r})"

    def refresh(self) -> FieldCipher:
        return self.cipher

    def reload(self) -> FieldCipher:
        return self.cipher


FieldKeys = KeyringWatcher | FixedKeys


def field_keys(keys: FieldCipher | FieldKeys) -> FieldKeys:
    """``keys`` as field keys: a bare cipher becomes ``FixedKeys``."""
    return FixedKeys(keys) if isinstance(keys, FieldCipher) else keys
