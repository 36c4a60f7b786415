"""What every ``twin`` command shares: options, loading the deployment, confirmation, the live
service guard, and one way to fail.

Exit status of every command: 0 success; 1 a check ran and found a problem (verify, an erasure
whose re-scan still finds rows, a declined confirmation); 2 an error: bad usage or input, a
missing keyring, a bad database file, an operation refused (e.g. while a service runs). An
error is one line on stderr, never a traceback (``--log-level DEBUG`` logs the traceback).
"""

from __future__ import annotations

import functools
import getpass
import logging
import sys
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import click

from compliance.errors import ComplianceError
from compliance.keyring import Keyring

from ..catalog import DATABASES, UnknownDatabaseError, database_path, load_keyring, spec_for
from ..config import Config, ConfigError
from ..storage import StorageError
from ..storage.service_guard import FileServiceGuard, FilesInUseError, Holder, ServiceGuard

log = logging.getLogger("twin.cli")

EXIT_OK, EXIT_PROBLEM, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CODES_HELP = ("Exit status: 0 success; 1 a check found a problem; 2 an error (bad usage or "
                   "input, no keyring, a bad database file, refused while a service runs).")

# Errors whose message is written for the operator: shown as the one line of a failed command.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, ComplianceError, StorageError, UnknownDatabaseError, OSError)


class CommandError(click.ClickException):
    """A failure reported as one line: ``<prog>: error: <message>``, exit 2."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        ctx = click.get_current_context(silent=True)
        self.prog = ctx.find_root().info_name if ctx is not None else "twin"

    def show(self, file: Any = None) -> None:
        click.echo(f"{self.prog}: error: {self.format_message()}", err=True, file=file)


class _Formatter(click.HelpFormatter):
    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, "usage: " if prefix is None else prefix)


class Context(click.Context):
    formatter_class = _Formatter


class Command(click.Command):
    context_class = Context


class Group(click.Group):
    """A command group whose help says ``usage:`` (like argparse, and the seed scripts)."""

    context_class = Context
    command_class = Command
    group_class = type  # subgroups are Groups too


def group(name: str, help_text: str) -> Group:
    return Group(name, help=help_text, context_settings={"max_content_width": 100})


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is logged (a test runner may swap it)."""

    def __init__(self) -> None:
        super().__init__()
        from twin.logs import apply_service_format
        apply_service_format(self)  # TWIN_LOG_FORMAT (text or json), repeats held back

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure_logging(level: str) -> Callable[[], None]:
    """Log to stderr at ``level``; progress lines (``twin.progress``) show at INFO whatever the
    level, so a command run from cron still says how far its long work got. Returns what puts
    logging back as it was (a command run in-process, e.g. by a test, leaves nothing behind)."""
    numeric = getattr(logging, level.upper(), None)
    if not isinstance(numeric, int):
        raise CommandError(f"unknown log level {level!r}: use DEBUG, INFO or WARNING")
    from twin.logs import file_loggers, log_file_handlers

    root, progress = logging.getLogger(), logging.getLogger("twin.progress")
    before = root.level, progress.level
    handlers = [_StderrHandler(), *log_file_handlers()]  # TWIN_LOG_DIR: seed 004's log files too
    raised: list[tuple[logging.Logger, int]] = []
    if len(handlers) > 1:
        # The files keep their loggers' INFO lines whatever the command's level; stderr keeps
        # to that level (and the progress lines).
        for name in file_loggers():
            logger = logging.getLogger(name)
            raised.append((logger, logger.level))
            logger.setLevel(logging.INFO)
        handlers[0].addFilter(lambda r: r.levelno >= numeric or r.name.startswith("twin.progress"))
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(numeric)
    progress.setLevel(min(numeric, logging.INFO))

    def restore() -> None:
        for handler in handlers:
            root.removeHandler(handler)
            if handler is not handlers[0]:
                handler.close()
        for logger, level in raised:
            logger.setLevel(level)
        root.setLevel(before[0])
        progress.setLevel(before[1])
    return restore


def _effective_level(ctx: click.Context, own: str | None, default: str) -> str:
    root = ctx.find_root()
    return own or (root.obj or {}).get("log_level") or default


def command(group: click.Group | None, name: str, *, log_level: str = "WARNING",
            **settings: Any) -> Callable:
    """Declare ``twin <group> <name>`` (``group`` None: a top-level command): adds
    ``--log-level`` and turns every known error into one line with exit 2. The callback
    returns an exit status (None means 0)."""
    def decorate(fn: Callable[..., int | None]) -> click.Command:
        @functools.wraps(fn)
        def run(*args: Any, log_level_option: str | None = None, **kwargs: Any) -> None:
            ctx = click.get_current_context()
            ctx.call_on_close(configure_logging(_effective_level(ctx, log_level_option, log_level)))
            try:
                code = fn(*args, **kwargs)
            except (click.ClickException, click.exceptions.Exit):
                raise
            except click.Abort:
                click.echo(f"{ctx.find_root().info_name}: interrupted", err=True)
                ctx.exit(EXIT_INTERRUPTED)
            except KeyboardInterrupt:
                click.echo(f"{ctx.find_root().info_name}: interrupted", err=True)
                ctx.exit(EXIT_INTERRUPTED)
            except KNOWN_ERRORS as exc:
                log.debug("%s failed", ctx.command_path, exc_info=True)
                raise CommandError(_one_line(exc)) from None
            except Exception as exc:  # a bug: still one line; the traceback at DEBUG
                log.debug("%s failed", ctx.command_path, exc_info=True)
                raise CommandError(f"unexpected {type(exc).__name__}: {_one_line(exc)} "
                                   "(--log-level DEBUG shows where)") from None
            ctx.exit(code or EXIT_OK)

        option = click.option("--log-level", "log_level_option", metavar="LEVEL", default=None,
                              help=f"DEBUG, INFO, WARNING (default {log_level})")
        settings.setdefault("epilog", EXIT_CODES_HELP)
        settings["context_settings"] = {"max_content_width": 100}
        if group is None:
            return click.command(name, cls=Command, **settings)(option(run))
        return group.command(name, **settings)(option(run))
    return decorate


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return text.splitlines()[0] if text else type(exc).__name__


# -- options -------------------------------------------------------------------------------------

def database_option(fn: Callable) -> Callable:
    return click.option("--database", metavar="NAME",
                        help=f"only this database ({', '.join(DATABASES)}); default: all")(fn)


def selected_databases(name: str | None) -> list[str]:
    return list(DATABASES) if name is None else [spec_for(name).name]


def user_id_options(fn: Callable) -> Callable:
    fn = click.option("--user-id-prompt", is_flag=True, help="read the user id without echo")(fn)
    return click.option("--user-id", metavar="ID",
                        help="the data subject's user id (visible in the process list; prefer "
                             "--user-id-prompt on shared machines)")(fn)


def user_id_from(user_id: str | None, prompt: bool, *, required: str | None = None) -> str | None:
    """The user id given, read without echo, or None if neither (``required``: the error then)."""
    if user_id is not None and prompt:
        raise CommandError("give --user-id or --user-id-prompt, not both")
    if user_id is None and not prompt:
        if required:
            raise CommandError(required)
        return None
    value = user_id if user_id is not None else getpass.getpass("user id: ")
    if not value or len(value) > 256:
        raise CommandError("the user id must be 1-256 characters")
    return value


def yes_option(help_text: str) -> Callable:
    return click.option("--yes", is_flag=True, help=help_text)


def dry_run_option(help_text: str) -> Callable:
    return click.option("--dry-run", is_flag=True, help=help_text)


def confirm(question: str, *, yes: bool, word: str, refusal: str) -> bool:
    """True when ``--yes`` was given or the operator types ``word``. Without a terminal and
    without ``--yes`` the command fails (``refusal``) rather than guess."""
    if yes:
        return True
    if not sys.stdin.isatty():
        raise CommandError(refusal)
    return input(f"{question} type '{word}': ").strip() == word


# -- the deployment ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Deployment:
    """The configuration and keyring a command works with."""

    config: Config
    keyring: Keyring

    @property
    def data_dir(self) -> Path:
        return (self.config.data_dir or Path("data")).absolute()

    def path_of(self, name: str) -> Path:
        return database_path(spec_for(name), self.config)

    def paths(self, names: Iterable[str] | None = None) -> list[Path]:
        return [self.path_of(n) for n in (names if names is not None else DATABASES)]


@contextmanager
def existing_database(deployment: Deployment, name: str) -> Iterator[Any]:
    """An existing catalog database (a ``twin.storage.Backend``, not migrated), closed after
    the block. A missing SQLCipher file is an error here, never created (only ``twin db
    setup`` and ``twin serve`` create databases)."""
    from ..catalog import backend_of, open_database

    path = deployment.path_of(name)
    if backend_of(name, deployment.config) == "sqlcipher" and not path.exists():
        raise CommandError(f"{path}: no such database ({name}); `twin db setup` creates it")
    handle = open_database(name, deployment.config, deployment.keyring.database_keys, migrate=False)
    try:
        yield handle
    finally:
        handle.close_all()


def load_deployment(*, create_keyring: bool = False) -> Deployment:
    """The environment's configuration and keyring, logged at info level. Only set-up commands
    pass ``create_keyring``; every other command fails when there is no keyring."""
    from ..catalog import check_storage_settings

    config = Config.from_env()
    check_storage_settings(config)  # a bad setting fails before a keyring is generated
    keyring = load_keyring(config, create=create_keyring)
    deployment = Deployment(config, keyring)
    source = "DIGITAL_TWIN_ENCRYPTION_KEY" if keyring.source == "environment" else \
        str(Path(keyring.source).absolute())
    log.info("data directory %s; keyring %s (database key fingerprint %s)", deployment.data_dir,
             source, keyring.database_key_fingerprint)
    return deployment


def open_runtime(deployment: Deployment) -> Any:  # -> twin.runtime.Runtime (imported late)
    """The runtime over existing data: re-applies erasure tombstones, never invents a keyring."""
    from ..runtime import Runtime

    return Runtime.open(deployment.config)


# -- the live-service guard ------------------------------------------------------------------------

def service_guard(deployment: Deployment, names: Sequence[str] | None = None) -> ServiceGuard:
    """The guard over the files of ``names`` (default: every catalog database); with the vault
    on PostgreSQL, the replicas' registry in the vault (replicas on other hosts share it)."""
    return _guard(deployment.config, deployment.paths(names))


def _guard(config: Config, paths: list[Path]) -> ServiceGuard:
    from ..catalog import backend_of, postgres_settings_of
    from ..storage.postgresql.service_guard import PostgresServiceGuard

    if backend_of("privacy_vault", config) == "postgresql":
        return PostgresServiceGuard(postgres_settings_of("privacy_vault", config),
                                    interval=config.replica_heartbeat_seconds)
    return FileServiceGuard(paths)


def running_services(config: Config) -> list[Holder]:
    """The services running on this configuration's databases (nothing needs the keyring)."""
    paths = [database_path(spec_for(name), config) for name in DATABASES]
    return [h for h in _guard(config, paths).holders() if h.role == "service"]


def while_no_service_runs(deployment: Deployment, names: Sequence[str] | None, *, force: bool,
                          risk: str) -> AbstractContextManager[None]:
    """Hold the databases exclusively for the block, or fail naming the running service.

    ``force`` goes ahead anyway after one warning line saying what it risks (``risk``)."""
    guard = service_guard(deployment, names)
    if not force:
        ctx = click.get_current_context(silent=True)
        command_path = ctx.command_path if ctx is not None else "twin"
        return _refusing(guard, Holder("command", command_path))
    for holder in guard.holders():
        if holder.role == "service":
            click.echo(f"warning: --force while {holder.describe()} runs: {risk}", err=True)
    return nullcontext()


@contextmanager
def _refusing(guard: ServiceGuard, holder: Holder) -> Iterator[None]:
    held = ExitStack()
    try:
        held.enter_context(guard.exclusive(holder))
    except FilesInUseError as exc:
        raise CommandError(f"{exc} (or pass --force)") from None
    with held:
        yield


# -- the seed scripts ---------------------------------------------------------------------------

Pick = Callable[[list[str]], "tuple[click.Command, list[str]] | None"]


def run_script(prog: str, pick: Pick, *, usage: str, doc: str | None = None,
               log_level: str | None = None, argv: list[str] | None = None) -> None:
    """Run a ``scripts/*.py`` seed name: ``pick`` maps its arguments to the ``twin`` command
    that does the work and that command's arguments (None: they name no one command; ``usage``
    is then printed, with ``doc`` for --help). ``log_level``: the seed script's own default."""
    args = list(sys.argv[1:] if argv is None else argv)
    picked = pick(args)
    if picked is None:
        asked = bool({"-h", "--help"} & set(args))
        click.echo(f"usage: {prog} {usage}" + (f"\n\n{doc.strip()}" if asked and doc else ""),
                   err=not asked)
        sys.exit(EXIT_OK if asked else EXIT_ERROR)
    cmd, translated = picked
    defaults = ["--log-level", log_level] if log_level else []
    cmd.main(args=defaults + translated, prog_name=prog)


def asks_help(args: list[str]) -> bool:
    return bool({"-h", "--help"} & set(args))


def take_flag(args: list[str], flag: str, *, with_value: bool = False) -> tuple[bool, list[str]]:
    """Whether ``flag`` is in ``args``, and ``args`` without it (``with_value``: the value
    that follows it moves to the front, as a positional argument)."""
    if flag not in args:
        return False, args
    i = args.index(flag)
    if not with_value:
        return True, args[:i] + args[i + 1:]
    return True, args[i + 1:i + 2] + args[:i] + args[i + 2:]
