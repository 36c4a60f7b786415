"""The ``twin`` console command."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys

from compliance.errors import ComplianceError
from twin.config import Config, ConfigError
from twin.storage import StorageError


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_serve(args: argparse.Namespace) -> int:
    from twin.api.app import create_app
    from twin.catalog import DATABASES, open_database
    from twin.runtime import Runtime
    from twin.server import serve

    # `kill -USR1 <pid>` prints every thread's stack to stderr: how to see what a hung server does.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    config = Config.from_env()
    runtime = Runtime.open(config)
    # Every component's database exists and is migrated before the first request, so a schema
    # problem stops the start-up instead of failing a request later.
    for name in DATABASES:
        open_database(name, config, runtime.keyring).close_all()
    app = create_app(config, runtime=runtime)
    serve(app, host=args.host, port=args.port, threads=args.threads, on_stop=runtime.close)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="twin", description="learner twin service")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_parser = sub.add_parser("serve", help="serve the REST API (waitress)")
    serve_parser.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    serve_parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve_parser.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    serve_parser.set_defaults(func=cmd_serve)
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    try:
        return args.func(args)
    except (ConfigError, ComplianceError, StorageError, OSError) as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
