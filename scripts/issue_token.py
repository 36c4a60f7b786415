#!/usr/bin/env python3
"""Issue, list or revoke API bearer tokens: ``twin tokens issue|list|revoke``. A token is
printed once; only its hash is stored.

  python scripts/issue_token.py --role service --label backend [--expires-in 90d]
  python scripts/issue_token.py --role learner --user-id-prompt
  python scripts/issue_token.py --list
  python scripts/issue_token.py --revoke TOKEN_ID
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from twin.cli import plumbing, tokens  # noqa: E402


def pick(args):
    if plumbing.asks_help(args) and not {'--list', '--revoke', '--role'} & set(args):  # the script's own help
        return None
    listing, rest = plumbing.take_flag(args, "--list")
    if listing:
        return tokens.list_tokens, rest
    revoking, rest = plumbing.take_flag(args, "--revoke", with_value=True)
    if revoking:
        return tokens.revoke, rest
    return tokens.issue, args


if __name__ == "__main__":
    plumbing.run_script("issue_token.py", pick, doc=__doc__,
                        usage="--role ROLE [--label L] [--user-id ID | --user-id-prompt] | --list | "
                              "--revoke TOKEN_ID")
