#!/usr/bin/env python3
"""Export every stored datum of one data subject (GDPR art. 15/20) straight from the database
files; no server needed. The document is streamed, so large subjects use little memory.

  python scripts/dsr_export.py --user-id ID [--out FILE]      # default: standard output
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

import os  # noqa: E402

from twin import scripting  # noqa: E402


def build_parser():
    p = scripting.parser("Export a data subject's data as JSON.")
    scripting.add_user_id_options(p)
    p.add_argument("--out", type=Path, help="write to this file (created 0600) instead of stdout")
    return p


def main(args) -> int:
    user_id = scripting.user_id_from(args)
    runtime = scripting.open_runtime()
    try:
        chunks = runtime.dsr.export_chunks(runtime.hasher.hash(user_id), scripting.script_actor("dsr_export"))
        if args.out:
            tmp = args.out.with_name(args.out.name + ".partial")
            try:
                with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
                    for chunk in chunks:
                        fh.write(chunk)
                os.replace(tmp, args.out)
            except BaseException:  # the partial file holds decrypted personal data: never leave it
                tmp.unlink(missing_ok=True)
                raise
            print(f"export written to {args.out}", file=sys.stderr)
        else:
            for chunk in chunks:
                sys.stdout.write(chunk)
            sys.stdout.write("\n")
    finally:
        runtime.close()
    return 0


if __name__ == "__main__":
    scripting.run(main, build_parser())
