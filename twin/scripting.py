"""Plumbing shared by the scripts in ``scripts/``: one way to parse, open and fail.

Every script exits 0 on success, 1 when it ran but found a problem (e.g. verification failed)
and 2 on an error, printing one clear line to stderr and never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from typing import Callable

from compliance.audit import Actor
from compliance.errors import ComplianceError
from compliance.keyring import ENV_MASTER_SECRET, Keyring, load_keyring

from .catalog import DATABASES, UnknownDatabaseError, spec_for
from .config import Config, ConfigError
from .storage import StorageError


class ScriptError(Exception):
    """A failure the script reports as one line (exit code 2)."""


def parser(description: str, *, log_level: str = "WARNING") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--log-level", default=log_level, help=f"log level (default {log_level})")
    return p


def add_database_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--database", metavar="NAME",
                   help=f"only this database ({', '.join(DATABASES)}); default: all")


def selected_databases(name: str | None) -> list[str]:
    if name is None:
        return list(DATABASES)
    return [spec_for(name).name]


def add_user_id_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--user-id", help="the data subject's user id (visible in the process list; "
                                         "prefer --user-id-prompt on shared machines)")
    group.add_argument("--user-id-prompt", action="store_true", help="read the user id without echo")


def user_id_from(args: argparse.Namespace) -> str:
    user_id = args.user_id if args.user_id is not None else getpass.getpass("user id: ")
    if not user_id or len(user_id) > 256:
        raise ScriptError("the user id must be 1-256 characters")
    return user_id


def load_config_and_keyring(*, must_exist: bool = False) -> tuple[Config, Keyring]:
    """The process configuration and keyring. ``must_exist`` refuses to generate a keyring
    (scripts that read existing data must not silently create a new, useless key)."""
    config = Config.from_env()
    if must_exist and not config.keyring_path.exists() and ENV_MASTER_SECRET not in config.environ:
        raise ScriptError(f"no keyring: {config.keyring_path} does not exist and {ENV_MASTER_SECRET} "
                          "is not set")
    return config, load_keyring(config.keyring_path, production=config.production, environ=config.environ)


def open_runtime():  # -> twin.runtime.Runtime (imported late: scripts that never need it stay light)
    """The runtime over existing data: refuses to invent a keyring, re-applies tombstones."""
    from .runtime import Runtime

    config, _ = load_config_and_keyring(must_exist=True)
    return Runtime.open(config)


def script_actor(name: str) -> Actor:
    return Actor(f"script:{name}", "operator")


def run(main: Callable[[argparse.Namespace], int], p: argparse.ArgumentParser,
        argv: list[str] | None = None) -> None:
    """Parse arguments, configure logging, run ``main`` and turn known errors into one line."""
    args = p.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    prog = p.prog
    try:
        code = main(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        code = 130
    except (ScriptError, ConfigError, ComplianceError, StorageError, UnknownDatabaseError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        code = 2
    sys.exit(code)
