"""What every part of the settings store shares: its database, the field cipher of sensitive
values, who acts, and the change log (``config_audit``) of configurations and app settings.

Sensitive configuration values are encrypted with the field cipher before they reach SQL
(associated data ``configurations/value/<key>``, so a ciphertext copied to another key fails
to decrypt) and never appear in logs, ``repr()`` or the change log, which records keyed hashes
of them instead.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from compliance.errors import DecryptionError
from compliance.field_crypto import FieldCipher, associated_data
from twin.storage import POSTGRESQL, Database

from .errors import SensitiveValueError
from .values import check_key


class SettingsBase:
    """The state and helpers the settings store's parts use (see ``store.SettingsStore``)."""

    db: Database
    cipher: FieldCipher
    actor: str
    _audit_hash_key: bytes | None

    def _who(self, changed_by: str | None) -> str:
        return self.actor if changed_by is None else check_key(changed_by, "changed_by")

    def _fingerprint(self, key: str, value: str) -> str:
        # The key is part of the input: equal secrets under two keys get different hashes.
        message = key.encode() + b"\x00" + value.encode()
        if self._audit_hash_key is not None:
            return "hmac-sha256:" + hmac.new(self._audit_hash_key, message, hashlib.sha256).hexdigest()
        return "sha256:" + hashlib.sha256(message).hexdigest()

    def _encrypt(self, key: str, value: str) -> bytes:
        return self.cipher.encrypt(value.encode(), associated_data("configurations", "value", key))

    def _decrypt(self, key: str, blob: bytes) -> str:
        try:
            return self.cipher.decrypt(blob, associated_data("configurations", "value", key)).decode()
        except DecryptionError:
            raise SensitiveValueError(f"sensitive configuration {key!r} cannot be decrypted") from None

    def _stored(self, key: str, value: str, sensitive: bool) -> str | bytes:
        """What ``configurations.value`` holds: the ciphertext of a sensitive value; a plain
        one as TEXT on SQLite, as its UTF-8 bytes in PostgreSQL's BYTEA column (schema.py)."""
        if sensitive:
            return self._encrypt(key, value)
        return value.encode() if self.db.dialect is POSTGRESQL else value

    def _plain(self, row: Any) -> str:
        value = row["value"]
        if row["is_sensitive"]:
            return self._decrypt(row["key"], value)
        return value if isinstance(value, str) else bytes(value).decode()

    def _plain_or_none(self, row: Any) -> str | None:
        # A secret that no longer decrypts (its key version lost) can still be overwritten or
        # deleted; the audit then records its old hash as unknown.
        try:
            return self._plain(row)
        except SensitiveValueError:
            return None

    def _audit(self, conn: Any, scope: str, key: str, action: str, old: str | None, new: str | None,
               sensitive: bool, who: str, now: str) -> None:
        if sensitive:
            old = None if old is None else self._fingerprint(key, old)
            new = None if new is None else self._fingerprint(key, new)
        conn.execute("INSERT INTO config_audit (scope, config_key, action, old_value, new_value, "
                     "is_sensitive, changed_by, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (scope, key, action, old, new, int(sensitive), who, now))

