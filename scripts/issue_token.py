#!/usr/bin/env python3
"""Issue, list or revoke API bearer tokens. A token is printed once; only its hash is stored.

  python scripts/issue_token.py --role service --label backend
  python scripts/issue_token.py --role learner --user-id-prompt
  python scripts/issue_token.py --list
  python scripts/issue_token.py --revoke TOKEN_ID
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from compliance.id_hashing import SubjectHasher  # noqa: E402
from compliance.tokens import ROLES, TokenStore  # noqa: E402
from twin import scripting  # noqa: E402
from twin.catalog import open_database  # noqa: E402


def build_parser():
    p = scripting.parser("Issue, list or revoke API tokens.")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--role", choices=ROLES, help="issue a token with this role")
    action.add_argument("--revoke", metavar="TOKEN_ID", help="revoke the token with this id")
    action.add_argument("--list", action="store_true", help="list token ids, roles and labels")
    p.add_argument("--user-id", help="learner tokens: the user id the token is bound to")
    p.add_argument("--user-id-prompt", action="store_true", help="learner tokens: read the user id without echo")
    p.add_argument("--label", help="a note for operators (e.g. which client holds it)")
    return p


def main(args) -> int:
    config, keyring = scripting.load_config_and_keyring()
    store = TokenStore(open_database("privacy_vault", config, keyring))
    if args.list:
        for row in store.list():
            print(f"{row['token_id']}  {row['role']:<8} {'revoked' if row['revoked_at'] else 'active':<8} "
                  f"{row['created_at']}  {row['label'] or ''}")
        return 0
    if args.revoke:
        if not store.revoke(args.revoke):
            raise scripting.ScriptError("no active token with that id")
        print(f"revoked {args.revoke}")
        return 0
    subject = None
    if args.role == "learner":
        if not (args.user_id or args.user_id_prompt):
            raise scripting.ScriptError("a learner token needs --user-id or --user-id-prompt")
        subject = SubjectHasher(keyring.id_pepper).hash(scripting.user_id_from(args))
    issued = store.issue(args.role, subject_hash=subject, label=args.label)
    print(issued.token)
    print(f"token id {issued.identity.token_id} ({args.role}); shown once, only its hash is stored",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    scripting.run(main, build_parser())
