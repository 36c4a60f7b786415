#!/usr/bin/env python3
"""Create a keyring file (mode 0600), or print a base64 master secret for the environment form.

  python scripts/generate_keys.py                 # writes $TWIN_KEYRING_PATH (keys/keyring.json)
  python scripts/generate_keys.py --out PATH      # writes PATH
  python scripts/generate_keys.py --print-env     # prints DIGITAL_TWIN_ENCRYPTION_KEY=<base64>
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

import base64  # noqa: E402
import os  # noqa: E402

from compliance.keyring import ENV_MASTER_SECRET, Keyring  # noqa: E402
from twin import scripting  # noqa: E402
from twin.config import Config  # noqa: E402


def build_parser():
    p = scripting.parser("Create the learner twin keyring.")
    p.add_argument("--out", type=Path, help="keyring file to write (default: TWIN_KEYRING_PATH or keys/keyring.json)")
    p.add_argument("--force", action="store_true", help="overwrite an existing keyring (data under it becomes unreadable!)")
    p.add_argument("--print-env", action="store_true", help="print a master secret for DIGITAL_TWIN_ENCRYPTION_KEY instead")
    return p


def main(args) -> int:
    if args.print_env:
        print(f"{ENV_MASTER_SECRET}={base64.b64encode(os.urandom(32)).decode()}")
        return 0
    path = args.out or Config.from_env().keyring_path
    if path.exists() and not args.force:
        raise scripting.ScriptError(f"{path} exists; refusing to overwrite it (data encrypted under it would be lost)")
    Keyring.generate().save(path)
    print(f"wrote keyring {path} (mode 0600). Back it up somewhere safe: see keys/README.md")
    return 0


if __name__ == "__main__":
    scripting.run(main, build_parser())
