"""What the settings store's personal parts share: the subject hash of a user, the sealer of a
subject's values (their data key in the vault) and of values that belong to no one (the
platform's field key). See ``tables.py`` for who owns which row."""

from __future__ import annotations

import json
from typing import Any

from compliance.field_crypto import FieldCipher, associated_data
from compliance.id_hashing import SubjectHasher
from compliance.subject_keys import SubjectKeyStore

from .base import SettingsBase
from .errors import SettingsError, SettingsValidationError


class PlatformSealer:
    """Seals JSON values under the platform's field key, bound to table/column/row like a
    subject's sealer, for rows of no subject (a thread saved without ``user_id``)."""

    def __init__(self, cipher: FieldCipher) -> None:
        self._cipher = cipher

    def __repr__(self) -> str:
        return "PlatformSealer(<key hidden>)"

    def seal(self, table: str, column: str, row_id: str, value: Any) -> bytes:
        plaintext = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        return self._cipher.encrypt(plaintext, associated_data(table, column, row_id))

    def open(self, table: str, column: str, row_id: str, blob: bytes) -> Any:
        return json.loads(self._cipher.decrypt(blob, associated_data(table, column, row_id)).decode())


class PersonalParts(SettingsBase):
    """Access to subjects for the parts that store personal data."""

    subject_keys: SubjectKeyStore | None
    hasher: SubjectHasher | None

    def _subject(self, user_id: Any) -> str:
        if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 256:
            raise SettingsValidationError("user_id must be a non-empty string of at most 256 characters")
        if self.hasher is None or self.subject_keys is None:
            raise SettingsError("per-user settings need the privacy vault (SettingsStore.from_keyring(..., "
                                "vault=...) or DatabaseManager())")
        return self.hasher.hash(user_id)

    def _sealer(self, subject_hash: str | None, *, create: bool = False) -> Any:
        if subject_hash is None:
            return PlatformSealer(self.cipher)
        assert self.subject_keys is not None
        return self.subject_keys.writer(subject_hash, create=create)

    @staticmethod
    def _json(value: Any, what: str) -> Any:
        try:
            return json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError):
            raise SettingsValidationError(f"{what} must be JSON-serialisable") from None
