"""All configuration in one place, read from the environment once at start-up.

| variable                         | meaning                                         | default            |
|----------------------------------|-------------------------------------------------|--------------------|
| TWIN_ENV                         | ``development`` or ``production``               | development        |
| TWIN_DATA_DIR                    | directory of every database file                | ./data             |
| <DB>_DB_PATH                     | one database's file (see twin.catalog)          |                    |
| TWIN_KEYRING_PATH                | keyring file                                    | keys/keyring.json  |
| DIGITAL_TWIN_ENCRYPTION_KEY      | base64 master secret (instead of a keyring file)|                    |
| TWIN_PROFILE_RETENTION_DAYS      | default profile retention                       | 1095               |
| TWIN_SESSION_RETENTION_DAYS      | session retention                               | 730                |
| TWIN_KNOWLEDGE_RETENTION_DAYS    | knowledge-state retention (since last update)   | 1095               |
| TWIN_EVIDENCE_RETENTION_DAYS     | evidence retention (since observed)             | 730                |
| TWIN_PREFERENCE_RETENTION_DAYS   | user preferences (settings store), since changed| 1095               |
| TWIN_AUDIT_RETENTION_DAYS        | audit-trail retention                           | 2555               |
| TWIN_AUDIT_SEAL_EVERY            | an HMAC'd seal of the audit chain every N events| 10000              |
| TWIN_AUDIT_ARCHIVE_DAYS          | audit events older than this leave the live     | 30                 |
|                                  | vault for archive segments (retention job)      |                    |
| TWIN_AUDIT_ARCHIVE_SEGMENT_EVENTS| events per audit archive segment (at most, in   | 100000             |
|                                  | whole seal ranges)                              |                    |
| TWIN_RETENTION_CRON              | nightly retention job (cron, UTC)               | 30 2 * * *         |
| TWIN_RETENTION_BATCH_SIZE        | rows purged per committed retention batch       | 2000               |
| TWIN_MODEL_FIT_NIGHTLY           | the nightly job also refits skill parameters    | on                 |
| TWIN_MAX_BODY_BYTES              | request body limit                              | 65536              |
| TWIN_TOKEN_CACHE_SECONDS         | how long a verified API token is remembered     | 2                  |
|                                  | (0: check the vault on every request)           |                    |
| TWIN_MODEL_DIR                   | model registry file directory                   | <data dir>/models  |
| TWIN_DURABILITY                  | ``normal``: acknowledged writes survive a crash | normal             |
|                                  | of the process; ``full``: also a power loss     |                    |
|                                  | (fsync per commit and per staged audit event)   |                    |
| TWIN_LOG_FORMAT                  | ``text`` or ``json`` (one object per line)      | text               |
| TWIN_BENCH_PLAINTEXT             | benchmark only: no SQLCipher, no field crypto   | off                |
| DIGITAL_TWIN_SQLITE_WAL          | seed 004's switch: SQLCipher files use WAL; off | on                 |
|                                  | is refused (see ``sqlite_wal``)                 |                    |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be on or off (1/0, true/false, yes/no)")


@dataclass(frozen=True)
class Config:
    """Settings of one process. Build with ``Config.from_env()`` or directly in tests."""

    env: str = "development"
    data_dir: Path | None = None
    keyring_path: Path = Path("keys/keyring.json")
    database_paths: Mapping[str, Path] = field(default_factory=dict)
    profile_retention_days: int = 1095
    session_retention_days: int = 730
    knowledge_retention_days: int = 1095
    evidence_retention_days: int = 730
    preference_retention_days: int = 1095
    audit_retention_days: int = 2555
    audit_seal_every: int = 10_000
    audit_archive_days: int = 30
    audit_archive_segment_events: int = 100_000
    retention_cron: str = "30 2 * * *"
    retention_batch_size: int = 2000
    model_fit_nightly: bool = True
    max_body_bytes: int = 64 * 1024
    # A revocation by another process (twin tokens revoke) takes effect within this.
    token_cache_seconds: int = 2
    # On PostgreSQL a replica refreshes its registration this often; three missed beats forget it.
    replica_heartbeat_seconds: int = 5
    model_dir: Path | None = None
    bench_plaintext: bool = False
    durability: str = "normal"
    log_format: str = "text"
    # Every SQLCipher file runs in WAL mode: concurrent readers during a write, and the
    # durability levels (TWIN_DURABILITY) are defined on it. A rollback journal would make every
    # reader wait behind writers and change what an acknowledged write survives, so turning it
    # off is a configuration error rather than a silent downgrade.
    sqlite_wal: bool = True
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.env not in ("development", "production", "test"):
            raise ConfigError("TWIN_ENV must be development, production or test")
        if self.bench_plaintext and self.production:
            raise ConfigError("TWIN_BENCH_PLAINTEXT is a benchmark switch and never allowed in production")
        if self.durability not in ("normal", "full"):
            raise ConfigError("TWIN_DURABILITY must be normal or full")
        if self.log_format not in ("text", "json"):
            raise ConfigError("TWIN_LOG_FORMAT must be text or json")
        if not self.sqlite_wal:
            raise ConfigError("DIGITAL_TWIN_SQLITE_WAL=off is not supported: every SQLCipher database "
                              "runs in WAL mode (concurrent readers, the TWIN_DURABILITY guarantees)")

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> "Config":
        environ = dict(os.environ if environ is None else environ)
        data_dir = environ.get("TWIN_DATA_DIR")
        model_dir = environ.get("TWIN_MODEL_DIR")
        values: dict[str, object] = dict(
            env=environ.get("TWIN_ENV", "development"),
            data_dir=Path(data_dir) if data_dir else None,
            keyring_path=Path(environ.get("TWIN_KEYRING_PATH", "keys/keyring.json")),
            profile_retention_days=_int(environ, "TWIN_PROFILE_RETENTION_DAYS", 1095),
            session_retention_days=_int(environ, "TWIN_SESSION_RETENTION_DAYS", 730),
            knowledge_retention_days=_int(environ, "TWIN_KNOWLEDGE_RETENTION_DAYS", 1095),
            evidence_retention_days=_int(environ, "TWIN_EVIDENCE_RETENTION_DAYS", 730),
            preference_retention_days=_int(environ, "TWIN_PREFERENCE_RETENTION_DAYS", 1095),
            audit_retention_days=_int(environ, "TWIN_AUDIT_RETENTION_DAYS", 2555),
            audit_seal_every=_int(environ, "TWIN_AUDIT_SEAL_EVERY", 10_000),
            audit_archive_days=_int(environ, "TWIN_AUDIT_ARCHIVE_DAYS", 30),
            audit_archive_segment_events=_int(environ, "TWIN_AUDIT_ARCHIVE_SEGMENT_EVENTS", 100_000),
            retention_cron=environ.get("TWIN_RETENTION_CRON", "30 2 * * *"),
            retention_batch_size=_int(environ, "TWIN_RETENTION_BATCH_SIZE", 2000),
            model_fit_nightly=_flag(environ, "TWIN_MODEL_FIT_NIGHTLY", True),
            sqlite_wal=_flag(environ, "DIGITAL_TWIN_SQLITE_WAL", True),
            max_body_bytes=_int(environ, "TWIN_MAX_BODY_BYTES", 64 * 1024),
            token_cache_seconds=_int(environ, "TWIN_TOKEN_CACHE_SECONDS", 2, minimum=0),
            replica_heartbeat_seconds=_int(environ, "TWIN_REPLICA_HEARTBEAT_SECONDS", 5),
            model_dir=Path(model_dir) if model_dir else None,
            bench_plaintext=environ.get("TWIN_BENCH_PLAINTEXT", "") in ("1", "true", "yes"),
            durability=environ.get("TWIN_DURABILITY", "normal").strip().lower() or "normal",
            log_format=environ.get("TWIN_LOG_FORMAT", "text").strip().lower() or "text",
            environ=environ,
        )
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    def retention_windows(self) -> dict[str, int]:
        """Retention windows in days, by the names the table descriptors' rules use."""
        return {"sessions": self.session_retention_days, "knowledge": self.knowledge_retention_days,
                "evidence": self.evidence_retention_days, "preferences": self.preference_retention_days}

    def path_environ(self) -> dict[str, str]:
        """The environment that database path resolution reads (data dir folded in)."""
        environ = dict(self.environ)
        if self.data_dir is not None:
            environ["TWIN_DATA_DIR"] = str(self.data_dir)
        return environ
