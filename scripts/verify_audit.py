#!/usr/bin/env python3
"""Verify the audit trail's hash chain in the privacy vault: ``twin audit verify``.

Prints ``audit trail OK: N events verified`` and exits 0, or
``audit trail BROKEN at event SEQ: reason`` and exits 1 (the first edited, deleted or
reordered event). Audit journal segments not yet in the trail are noted; segments kept as
damaged (a record failed authentication) are reported and also exit 1. Any other failure (no
keyring, no vault, wrong key) prints one line to stderr and exits 2. By default it reads only
the events after the newest chain seal a past verification marked; ``--full`` reads them all.
It writes only the HMAC'd marks of the seals it found sound: never a keyring, a vault or a
migration.

Configuration comes from the environment like the service's: TWIN_DATA_DIR or
PRIVACY_VAULT_DB_PATH for the vault, TWIN_KEYRING_PATH or DIGITAL_TWIN_ENCRYPTION_KEY for keys.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin.cli import audit, plumbing  # noqa: E402

if __name__ == "__main__":
    plumbing.run_script("verify_audit.py", lambda args: (audit.verify, args), usage="[--batch-size N] [--full]")
