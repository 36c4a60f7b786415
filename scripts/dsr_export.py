#!/usr/bin/env python3
"""Export every stored datum of one data subject (GDPR art. 15/20) straight from the database
files; no server needed: ``twin dsr export``. The document is streamed, so large subjects use
little memory.

  python scripts/dsr_export.py --user-id ID [--out FILE]      # default: standard output
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin.cli import dsr, plumbing  # noqa: E402

if __name__ == "__main__":
    plumbing.run_script("dsr_export.py", lambda args: (dsr.export, args),
                        usage="(--user-id ID | --user-id-prompt) [--out FILE]")
