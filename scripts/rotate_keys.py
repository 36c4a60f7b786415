#!/usr/bin/env python3
"""Key rotation: ``twin keys rotate``.

  python scripts/rotate_keys.py --new-field-key        # add a field-key version, make it active,
                                                       # then rewrap every subject key + settings value
  python scripts/rotate_keys.py --rewrap               # only rewrap what is not under the active key
  python scripts/rotate_keys.py --rekey-databases      # new SQLCipher key for every file (refused
                                                       # while a service runs)

A running service reads old and new field-key versions throughout a rotation and picks the
new keyring up by itself. See keys/README.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin.cli import keys, plumbing  # noqa: E402

if __name__ == "__main__":
    plumbing.run_script("rotate_keys.py", lambda args: (keys.rotate, args),
                        usage="--new-field-key | --rewrap | --rekey-databases [--batch-size N]",
                        log_level="INFO")
