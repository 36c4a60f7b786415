#!/usr/bin/env python3
"""Create a keyring file (mode 0600), or print a base64 master secret: ``twin keys generate``.

  python scripts/generate_keys.py                 # writes $TWIN_KEYRING_PATH (keys/keyring.json)
  python scripts/generate_keys.py --out PATH      # writes PATH
  python scripts/generate_keys.py --print-env     # prints DIGITAL_TWIN_ENCRYPTION_KEY=<base64>
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin.cli import keys, plumbing  # noqa: E402

if __name__ == "__main__":
    plumbing.run_script("generate_keys.py", lambda args: (keys.generate, args),
                        usage="[--out PATH] [--force] [--print-env]")
