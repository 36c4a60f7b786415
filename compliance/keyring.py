"""The keyring: every secret the service holds, in one object.

A keyring has
- ``database_key``: the raw 256-bit SQLCipher key for every database file;
- ``field_keys``: versioned 256-bit AES-GCM keys, one of them active. They encrypt settings
  values and wrap the per-subject data keys (crypto-shredding);
- ``id_pepper``: the secret of the keyed hash applied to user IDs.

It is loaded either from ``DIGITAL_TWIN_ENCRYPTION_KEY`` (a base64 master secret from which
each purpose key is derived with HKDF-SHA256 under a distinct label) or from a JSON keyring file
with mode 0600. See ``keys/README.md`` for the operator's view.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from twin.storage.fingerprint import key_fingerprint

from .errors import KeyringError

log = logging.getLogger(__name__)

KEY_BYTES = 32
FILE_FORMAT = "learner-twin-keyring/1"
ENV_MASTER_SECRET = "DIGITAL_TWIN_ENCRYPTION_KEY"
ENV_ACTIVE_FIELD_KEY = "TWIN_FIELD_KEY_VERSION"
_HKDF_SALT = b"learner-twin/keyring/v1"


def derive_key(master_secret: bytes, label: str) -> bytes:
    """Derive a 256-bit purpose key from the master secret with HKDF-SHA256."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=_HKDF_SALT, info=label.encode()
    ).derive(master_secret)


@dataclass(frozen=True, repr=False)
class DatabaseKey:
    """What opening a database file takes from the keyring: its SQLCipher key, and while a
    rekey is unfinished, the key a file may still be under."""

    current: bytes
    previous: bytes | None = None

    def __repr__(self) -> str:  # never show key bytes
        return f"DatabaseKey(<hidden>, previous={'<hidden>' if self.previous else None})"


@dataclass(frozen=True)
class Keyring:
    """All key material of one deployment. Immutable; rotation builds a new keyring."""

    database_key: bytes
    field_keys: Mapping[int, bytes]
    active_field_key: int
    id_pepper: bytes
    # Set while a SQLCipher rekey is in progress so a crash midway leaves both keys known.
    previous_database_key: bytes | None = None
    source: str = field(default="memory", compare=False)

    def __post_init__(self) -> None:
        if len(self.database_key) != KEY_BYTES or len(self.id_pepper) != KEY_BYTES:
            raise KeyringError("database key and ID pepper must be 32 bytes")
        if self.active_field_key not in self.field_keys:
            raise KeyringError(f"active field key version {self.active_field_key} is not in the keyring")
        for version, key in self.field_keys.items():
            if not (isinstance(version, int) and 0 < version < 2**32) or len(key) != KEY_BYTES:
                raise KeyringError("field keys must be 32 bytes under versions 1..2**32-1")

    def __repr__(self) -> str:  # never show key bytes, even in a traceback
        return (f"Keyring(source={self.source!r}, field_key_versions={sorted(self.field_keys)}, "
                f"active_field_key={self.active_field_key})")

    @property
    def database_key_fingerprint(self) -> str:
        """A public name of the database key (never the key): see ``key_fingerprint``."""
        return key_fingerprint(self.database_key)

    def field_key_fingerprints(self) -> dict[int, str]:
        return {version: key_fingerprint(key) for version, key in sorted(self.field_keys.items())}

    @property
    def audit_seal_key(self) -> bytes:
        """The key of the audit trail's seals (``compliance.audit_seals``): HKDF from the ID
        pepper (which never rotates, as seals must stay checkable for the trail's retention),
        under its own label, so it is neither the database key nor any other purpose's key."""
        return derive_key(self.id_pepper, "audit-chain-seal-key")

    @property
    def database_keys(self) -> DatabaseKey:
        """The database key (and a previous one during a rekey), for opening database files."""
        return DatabaseKey(self.database_key, self.previous_database_key)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def generate(cls) -> "Keyring":
        """A new keyring of random keys (field key version 1 active)."""
        return cls(database_key=os.urandom(KEY_BYTES), field_keys={1: os.urandom(KEY_BYTES)},
                   active_field_key=1, id_pepper=os.urandom(KEY_BYTES), source="generated")

    @classmethod
    def from_master_secret(cls, secret: bytes, active_field_key: int = 1) -> "Keyring":
        """Derive every purpose key from one master secret (the environment-variable form).

        Field key versions 1..``active_field_key`` are all derivable, so rotating in this form
        means raising ``TWIN_FIELD_KEY_VERSION`` and running the rewrap script.
        """
        if len(secret) < KEY_BYTES:
            raise KeyringError(f"{ENV_MASTER_SECRET} must decode to at least 32 bytes")
        if active_field_key < 1:
            raise KeyringError(f"{ENV_ACTIVE_FIELD_KEY} must be a positive integer")
        return cls(
            database_key=derive_key(secret, "sqlcipher-database-key"),
            field_keys={v: derive_key(secret, f"field-key/v{v}") for v in range(1, active_field_key + 1)},
            active_field_key=active_field_key,
            id_pepper=derive_key(secret, "user-id-pepper"),
            source="environment",
        )

    def with_new_field_key(self) -> "Keyring":
        """A copy with a fresh random field key added and made active."""
        version = max(self.field_keys) + 1
        keys = dict(self.field_keys)
        keys[version] = os.urandom(KEY_BYTES)
        return Keyring(self.database_key, keys, version, self.id_pepper,
                       self.previous_database_key, self.source)

    # -- file form ------------------------------------------------------------------------

    def to_json(self) -> str:
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        doc = {
            "format": FILE_FORMAT,
            "database_key": b64(self.database_key),
            "field_keys": {str(v): b64(k) for v, k in sorted(self.field_keys.items())},
            "active_field_key": self.active_field_key,
            "id_pepper": b64(self.id_pepper),
        }
        if self.previous_database_key:
            doc["previous_database_key"] = b64(self.previous_database_key)
        return json.dumps(doc, indent=2)

    @classmethod
    def from_json(cls, text: str, source: str = "file") -> "Keyring":
        try:
            doc = json.loads(text)
            if doc.get("format") != FILE_FORMAT:
                raise KeyringError(f"keyring file format is not {FILE_FORMAT}")
            dec = lambda s: base64.b64decode(s, validate=True)  # noqa: E731
            previous = doc.get("previous_database_key")
            return cls(
                database_key=dec(doc["database_key"]),
                field_keys={int(v): dec(k) for v, k in doc["field_keys"].items()},
                active_field_key=int(doc["active_field_key"]),
                id_pepper=dec(doc["id_pepper"]),
                previous_database_key=dec(previous) if previous else None,
                source=source,
            )
        except KeyringError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyringError(f"keyring file is malformed ({type(exc).__name__})") from None

    def save(self, path: Path) -> None:
        """Write the keyring file atomically with mode 0600 (directory 0700), replacing any
        existing one (rotation)."""
        path = Path(path)
        tmp = self._write_private_temp(path)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def save_new(self, path: Path) -> bool:
        """Write the keyring file only if none exists; False (nothing written) when another
        process published one first. The file appears complete or not at all."""
        path = Path(path)
        tmp = self._write_private_temp(path)
        try:
            os.link(tmp, path)  # unlike os.replace, fails if the file exists
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _write_private_temp(self, path: Path) -> Path:
        """The keyring's JSON in a new 0600 file next to ``path``, flushed to disk. The name is
        unique per call so concurrent writers never share (or truncate) one temp file."""
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                os.fchmod(fh.fileno(), 0o600)  # the umask can only narrow the mode; make it exact
                fh.write(self.to_json())
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    @classmethod
    def load(cls, path: Path, *, production: bool) -> "Keyring":
        """Read a keyring file, refusing a group/world-readable one in production."""
        path = Path(path)
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            text = path.read_text()
        except OSError as exc:
            raise KeyringError(f"cannot read keyring file {path}: {exc.strerror}") from None
        if mode & 0o077:
            message = f"keyring file {path} is readable by group/others (mode {mode:o}); chmod 600 it"
            if production:
                raise KeyringError(message)
            log.warning(message)
        return cls.from_json(text, source=str(path))


class KeyringMissingError(KeyringError):
    """Neither a keyring file nor a master secret was found (and none may be created)."""


def load_keyring(keyring_path: Path, *, production: bool,
                 environ: Mapping[str, str] | None = None, create: bool = False) -> Keyring:
    """Load the deployment's keyring.

    Order: ``DIGITAL_TWIN_ENCRYPTION_KEY`` if set, else the keyring file. Without either, a
    development run that sets a deployment up (``create``: ``twin serve``, ``twin db setup``)
    generates the file with a warning; anything else, and production always, refuses: a new
    keyring could never open existing data, so inventing one only hides a wrong path.
    """
    environ = os.environ if environ is None else environ
    encoded = environ.get(ENV_MASTER_SECRET)
    if encoded:
        try:
            secret = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise KeyringError(f"{ENV_MASTER_SECRET} is not valid base64") from None
        try:
            active = int(environ.get(ENV_ACTIVE_FIELD_KEY, "1"))
        except ValueError:
            raise KeyringError(f"{ENV_ACTIVE_FIELD_KEY} must be an integer") from None
        return Keyring.from_master_secret(secret, active)
    keyring_path = Path(keyring_path)
    if keyring_path.exists():
        return Keyring.load(keyring_path, production=production)
    if production or not create:
        never = " (TWIN_ENV=production never generates one)" if production else ""
        raise KeyringMissingError(
            f"no keyring: {keyring_path.absolute()} does not exist and {ENV_MASTER_SECRET} is not "
            f"set; point TWIN_KEYRING_PATH at the keyring file, set {ENV_MASTER_SECRET}, or "
            f"create one with `twin keys generate`{never}")
    # Several processes may start together: only the first to publish wins, the rest load its file.
    if Keyring.generate().save_new(keyring_path):
        log.warning("no keyring found; generated a DEVELOPMENT keyring at %s. Back it up: data "
                    "written with it is unreadable without it.", keyring_path)
    return Keyring.load(keyring_path, production=False)
