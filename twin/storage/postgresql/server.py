"""What a PostgreSQL server says about a database, and the checks run before serving.

- ``verify_distinct_databases``: two settings (data, vault) must reach two databases. URL
  strings cannot tell (``localhost`` and ``127.0.0.1``, a socket and TCP, parameter order), so
  we ask the servers: the cluster's system identifier and the database's OID, and the marker
  ``write_identity_marker`` stored in each at set-up.
- ``refuse_database_of_role``: a component store is refused the vault's database, by the
  same server-reported identity.
- ``check_serving_role``: the role a service connects as must not be able to change the
  schema (schema changes are an operator step, ``twin db migrate``, run as the owner).
- ``grant_serving_role``: what the owner grants that role at set-up.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..dialect import quote_identifier
from ..errors import SameDatabaseError, ServingRoleError, StatementError, StorageConfigError
from ..timestamps import to_db, utc_now
from .service_guard import install_guard_table

IDENTITY_TABLE = "storage_identity"

_IDENTITY_DDL = f"""CREATE TABLE IF NOT EXISTS {IDENTITY_TABLE} (
    role        TEXT PRIMARY KEY,
    marker      TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
)"""


@dataclass(frozen=True)
class ServerIdentity:
    """Where a connection landed, as the server reports it."""

    system_identifier: str | None   # the cluster's (pg_control_system); None if not readable
    database_oid: int
    database: str                   # current_database()
    server_address: str | None      # inet_server_addr(): None over a Unix socket
    server_port: int | None
    markers: dict[str, str]         # role -> marker, from write_identity_marker()

    def same_database_as(self, other: "ServerIdentity") -> bool:
        if set(self.markers.values()) & set(other.markers.values()):
            return True
        if self.system_identifier is not None and other.system_identifier is not None:
            return (self.system_identifier, self.database_oid) == (other.system_identifier, other.database_oid)
        # Without the cluster identifier: same address, port and database name.
        return (self.server_address, self.server_port, self.database) == \
               (other.server_address, other.server_port, other.database) and self.server_address is not None


def server_identity(db: Any) -> ServerIdentity:
    row = db.query_one(
        "SELECT current_database() AS database, host(inet_server_addr()) AS address, "
        "inet_server_port() AS port, "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) AS oid")
    try:
        system = str(db.query_one("SELECT system_identifier FROM pg_control_system()")[0])
    except StatementError:  # not granted to this role on some managed servers
        system = None
    return ServerIdentity(system, int(row["oid"]), row["database"], row["address"], row["port"],
                          _markers(db))


def _markers(db: Any) -> dict[str, str]:
    """Role -> marker from every schema's identity table: a component store connects with its
    own schema on its search path, and must still see the marker of the database it is in."""
    markers: dict[str, str] = {}
    tables = db.query("SELECT quote_ident(n.nspname) AS schema FROM pg_class c "
                      "JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE c.relname = ? AND c.relkind = 'r' ORDER BY n.nspname", (IDENTITY_TABLE,))
    for table in tables:
        try:
            rows = db.query(f"SELECT role, marker FROM {table['schema']}.{IDENTITY_TABLE}")
        except StatementError:  # not readable by this role: the server identity still decides
            continue
        markers.update({r["role"]: r["marker"] for r in rows})
    return markers


def refuse_database_of_role(db: Any, role: str, other: Any | None = None) -> None:
    """Raise ``SameDatabaseError`` when ``db`` is the database set up as ``role`` (its marker,
    in any schema) or, with ``other`` (that role's configured database), reaches the same
    database as it: a component store must never live in the vault."""
    identity = server_identity(db)
    if role in identity.markers or (other is not None and identity.same_database_as(server_identity(other))):
        raise SameDatabaseError(f"{db.name} ({db.display_url}) is the {role} database; "
                                f"{db.name} needs a database other than the {role}'s")


def write_identity_marker(db: Any, role: str) -> str:
    """Record (once) that this database plays ``role`` (e.g. "data", "vault"); the marker.

    Refuses a database that already plays another role: that is two settings reaching one
    database, found at set-up rather than at the first start.
    """
    def write(conn: Any) -> str:
        conn.execute(_IDENTITY_DDL)
        install_guard_table(conn)  # where replicas register (the live-service guard)
        rows = {r["role"]: r["marker"] for r in conn.execute(f"SELECT role, marker FROM {IDENTITY_TABLE}").fetchall()}
        others = sorted(set(rows) - {role})
        if others:
            raise SameDatabaseError(f"{db.name} ({db.display_url}) is already set up as the "
                                    f"{others[0]} database; {role} needs a database of its own")
        if role in rows:
            return rows[role]
        marker = secrets.token_hex(16)
        conn.execute(f"INSERT INTO {IDENTITY_TABLE} (role, marker, created_at) VALUES (?, ?, ?)",
                     (role, marker, to_db(utc_now())))
        return marker
    return db.write(write, lock="storage-identity")


def verify_distinct_databases(first: Any, second: Any, *, require_markers: bool = False) -> None:
    """Raise ``SameDatabaseError`` when ``first`` and ``second`` reach one database.

    ``require_markers`` also refuses a database set-up never marked (``twin db setup``).
    """
    a, b = server_identity(first), server_identity(second)
    if a.same_database_as(b):
        raise SameDatabaseError(
            f"{first.name} ({first.display_url}) and {second.name} ({second.display_url}) reach "
            f"the same database {a.database!r} on one server: they must be different databases")
    if require_markers:
        for db, identity in ((first, a), (second, b)):
            if not identity.markers:
                raise StorageConfigError(f"{db.name} ({db.display_url}) was never set up "
                                         "(no identity marker): run `twin db setup`")


def check_serving_role(db: Any) -> None:
    """Raise ``ServingRoleError`` when the connected role could change the schema."""
    row = db.query_one(
        "SELECT current_user AS role, "
        "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser, "
        "has_database_privilege(current_database(), 'CREATE') AS create_in_database, "
        "has_schema_privilege(current_schema(), 'CREATE') AS create_in_schema, "
        "(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        " WHERE n.nspname = current_schema() AND pg_has_role(c.relowner, 'USAGE')) AS owned")
    reasons = [text for flag, text in (
        (row["superuser"], "it is a superuser"),
        (row["create_in_database"], "it may create schemas"),
        (row["create_in_schema"], "it may create tables"),
        (row["owned"] > 0, f"it owns {row['owned']} tables"),
    ) if flag]
    if reasons:
        raise ServingRoleError(
            f"{db.name}: the service connects as role {row['role']!r}, which can change the schema "
            f"({', '.join(reasons)}); serve as a role with only SELECT, INSERT, UPDATE and DELETE "
            "and run `twin db migrate` as the owner")


def grant_serving_role(db: Any, role: str) -> None:
    """As the owner: let ``role`` read and write every table of the schema, now and later
    (default privileges), and nothing more."""
    who = quote_identifier(role)
    schema = quote_identifier(db.query_one("SELECT current_schema()")[0])
    database = quote_identifier(db.query_one("SELECT current_database()")[0])
    statements = [
        f"GRANT CONNECT ON DATABASE {database} TO {who}",
        f"GRANT USAGE ON SCHEMA {schema} TO {who}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {who}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {who}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {who}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE, SELECT ON SEQUENCES TO {who}",
    ]
    with db.transaction() as conn:
        for statement in statements:
            conn.execute(statement)


def open_database_pair(environ: Mapping[str, str], *, names: tuple[str, str] = ("digital_twin", "privacy_vault"),
                       prefixes: tuple[str, str] = ("TWIN_", "TWIN_VAULT_"),
                       require_markers: bool = False) -> tuple[Any, Any]:
    """Open the two databases a deployment keeps apart (``TWIN_DATABASE_URL`` and
    ``TWIN_VAULT_DATABASE_URL`` by default) and refuse them when they are one database.

    Every failure is a one-line ``StorageError`` for the CLI to print with exit 2.
    """
    from ..config import postgres_settings
    from .database import PostgresDatabase

    settings = [postgres_settings(environ, prefix) for prefix in prefixes]  # both URLs checked first
    opened: list[Any] = []
    try:
        for name, setting in zip(names, settings):
            opened.append(PostgresDatabase(setting, name=name))
        verify_distinct_databases(opened[0], opened[1], require_markers=require_markers)
    except BaseException:
        for db in opened:
            db.close_all()
        raise
    return opened[0], opened[1]


def check_ready_to_serve(db: Any, migrations: Sequence[Any]) -> None:
    """What ``twin serve`` checks on PostgreSQL before serving: a role without DDL rights and a
    schema at exactly this code's version (it never migrates there)."""
    from ..migrations import Migrator

    check_serving_role(db)
    Migrator(db, migrations).check_current()
