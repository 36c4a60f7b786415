#!/usr/bin/env python3
"""Erase every stored datum of one data subject (GDPR art. 17) straight from the database files.

  python scripts/dsr_erase.py --user-id ID --dry-run     # show what would be deleted
  python scripts/dsr_erase.py --user-id ID               # asks for confirmation
  python scripts/dsr_erase.py --user-id ID --yes         # no question (automation)

Prints the erasure receipt (counts per table, re-scan proof) as JSON. Safe to re-run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

import json  # noqa: E402

from twin import scripting  # noqa: E402


def build_parser():
    p = scripting.parser("Erase a data subject's data.")
    scripting.add_user_id_options(p)
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--dry-run", action="store_true", help="only count what would be erased")
    return p


def main(args) -> int:
    user_id = scripting.user_id_from(args)
    runtime = scripting.open_runtime()
    try:
        subject = runtime.hasher.hash(user_id)
        actor = scripting.script_actor("dsr_erase")
        preview = runtime.dsr.erase(subject, actor, dry_run=True)
        if args.dry_run:
            print(json.dumps(preview.to_dict(), indent=2))
            return 0
        if not args.yes:
            total = sum(preview.counts.values())
            if not sys.stdin.isatty():
                raise scripting.ScriptError("refusing to erase without confirmation: pass --yes")
            answer = input(f"erase {total} rows of this subject ({preview.counts})? type 'erase': ")
            if answer.strip() != "erase":
                print("nothing erased", file=sys.stderr)
                return 1
        receipt = runtime.dsr.erase(subject, actor)
        print(json.dumps(receipt.to_dict(), indent=2))
        return 0 if receipt.verified else 1
    finally:
        runtime.close()


if __name__ == "__main__":
    scripting.run(main, build_parser())
