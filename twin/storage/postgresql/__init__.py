"""The PostgreSQL backend (psycopg 3 + psycopg_pool). Importing it imports the driver, so
the SQLCipher path never does: ``twin.storage.open_backend`` imports it only when asked."""

from .database import PostgresDatabase
from .server import (ServerIdentity, check_ready_to_serve, check_serving_role, grant_serving_role,
                     open_database_pair, refuse_database_of_role, server_identity, verify_distinct_databases,
                     write_identity_marker)

__all__ = ["PostgresDatabase", "ServerIdentity", "check_ready_to_serve", "check_serving_role",
           "grant_serving_role", "open_database_pair", "refuse_database_of_role", "server_identity", "verify_distinct_databases",
           "write_identity_marker"]
