#!/usr/bin/env python3
"""Verify the audit trail's hash chain in the privacy vault.

Prints ``audit trail OK: N events verified`` and exits 0, or
``audit trail BROKEN at event SEQ: reason`` and exits 1 (the first edited, deleted or
reordered event). Audit journal segments not yet in the trail are noted; segments kept as
damaged (a record failed authentication) are reported and also exit 1. Any other failure (no keyring, no vault, wrong key) prints one line to
stderr and exits 2. Reads only: it never creates a keyring, a vault or a migration.

Configuration comes from the environment like the service's: TWIN_DATA_DIR or
PRIVACY_VAULT_DB_PATH for the vault, TWIN_KEYRING_PATH or DIGITAL_TWIN_ENCRYPTION_KEY for keys.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402

EXIT_OK, EXIT_BROKEN, EXIT_ERROR = 0, 1, 2


class VerifyAuditError(Exception):
    """A precondition of verification failed (the message is shown to the operator)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Verify the audit trail's hash chain and name the first tampered event.",
        epilog="Exit status: 0 intact, 1 broken (edited/deleted event), 2 could not verify.")
    parser.add_argument("--batch-size", type=int, default=5000,
                        help="events read per batch (bounds memory; default 5000)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    return args


def run(batch_size: int) -> int:
    """Verify the configured vault; returns the exit status after printing the outcome."""
    from compliance.audit import AuditTrail
    from compliance.audit_journal import (audit_journal_dir, damaged_segment_files,
                                          staged_segment_files)
    from compliance.keyring import ENV_MASTER_SECRET, load_keyring
    from twin.catalog import database_path, open_database, spec_for
    from twin.config import Config

    config = Config.from_env()
    # Loading would generate a fresh development keyring, which can never open the vault.
    if not config.keyring_path.exists() and not os.environ.get(ENV_MASTER_SECRET):
        raise VerifyAuditError(f"no keyring at {config.keyring_path} and {ENV_MASTER_SECRET} "
                               "is not set")
    keyring = load_keyring(config.keyring_path, production=config.production)
    path = database_path(spec_for("privacy_vault"), config)
    if not path.exists():
        raise VerifyAuditError(f"no privacy vault at {path}")
    # migrate=False: verifying evidence must not change its schema.
    vault = open_database("privacy_vault", config, keyring, migrate=False)
    try:
        result = AuditTrail(vault).verify(batch_size=batch_size)
    finally:
        vault.close_all()
    print(result.summary)
    journal = audit_journal_dir(path)
    staged = staged_segment_files(journal)
    if staged:
        print(f"note: {len(staged)} audit journal segment(s) hold events not in the trail yet; "
              "the service moves them in as it runs, or when it next starts")
    damaged = damaged_segment_files(journal)
    if damaged:
        print(f"audit journal DAMAGED: {len(damaged)} segment(s) failed authentication, events "
              f"after the damage are missing from the trail: {', '.join(p.name for p in damaged)}")
    return EXIT_OK if result.ok and not damaged else EXIT_BROKEN


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args.batch_size)
    except KeyboardInterrupt:
        print("verify_audit: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # one line for the operator, never a traceback
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"verify_audit: error: {message}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
