"""The peer baseline: a minimal Flask + stdlib sqlite3 (WAL) app with the same create/get profile
routes, an in-memory bearer-token check, no encryption, no audit, no validation library.

It runs on the same server and worker model as `twin serve` (``twin.serving.run_workers``:
waitress, pre-forked workers on one socket), so ``bench/api.py`` can print our throughput as
a ratio of what a plain app gets from the same machine.

    PEER_DB_PATH=/tmp/peer.db PEER_TOKEN=secret .venv/bin/python bench/peer_app.py --port 8090
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import secrets
import sqlite3
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from flask import Flask, jsonify, request

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SCHEMA = """
CREATE TABLE IF NOT EXISTS learning_profiles (
    profile_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL UNIQUE,
    preferred_difficulty TEXT NOT NULL DEFAULT 'medium',
    knowledge_domains TEXT NOT NULL DEFAULT '[]',
    learning_goals TEXT NOT NULL DEFAULT '[]',
    personal TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)"""


def create_peer_app(db_path: str, token: str) -> Flask:
    app = Flask("peer")
    local = threading.local()

    def db() -> sqlite3.Connection:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.row_factory = sqlite3.Row
        return conn

    db().execute(SCHEMA)

    def authorised() -> bool:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)

    def view(row: sqlite3.Row) -> dict:
        return {"profile_id": row["profile_id"], "preferred_difficulty": row["preferred_difficulty"],
                "knowledge_domains": json.loads(row["knowledge_domains"]),
                "learning_goals": json.loads(row["learning_goals"]), "personal": json.loads(row["personal"]),
                "created_at": row["created_at"], "updated_at": row["updated_at"]}

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.post("/v1/profiles")
    def create():
        if not authorised():
            return jsonify(title="Unauthorized"), 401
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("user_id"), str):
            return jsonify(title="user_id is required"), 422
        now = datetime.now(timezone.utc).isoformat()
        row = {"profile_id": f"prf_{secrets.token_urlsafe(16)}", "user_id": body["user_id"],
               "preferred_difficulty": body.get("preferred_difficulty", "medium"),
               "knowledge_domains": json.dumps(body.get("knowledge_domains", [])),
               "learning_goals": json.dumps(body.get("learning_goals", [])),
               "personal": json.dumps(body.get("personal", {})), "created_at": now, "updated_at": now}
        try:
            db().execute("INSERT INTO learning_profiles VALUES (:profile_id, :user_id, :preferred_difficulty, "
                         ":knowledge_domains, :learning_goals, :personal, :created_at, :updated_at)", row)
        except sqlite3.IntegrityError:
            return jsonify(title="this user already has a profile"), 409
        response = jsonify(view(row))
        response.status_code = 201
        response.headers["Location"] = f"/v1/profiles/{row['profile_id']}"
        return response

    @app.get("/v1/profiles/<profile_id>")
    def get(profile_id: str):
        if not authorised():
            return jsonify(title="Unauthorized"), 401
        row = db().execute("SELECT * FROM learning_profiles WHERE profile_id = ?", (profile_id,)).fetchone()
        if row is None:
            return jsonify(title="Not Found"), 404
        return jsonify(view(row))

    return app


def main() -> None:
    from twin.logs import configure_logging
    from twin.serving import ServeOptions, run_workers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None, help="default: one per CPU")
    args = parser.parse_args()
    configure_logging("WARNING")
    db_path, token = os.environ.get("PEER_DB_PATH", "peer.db"), os.environ["PEER_TOKEN"]
    with sqlite3.connect(db_path) as conn:  # the table exists before any worker forks
        conn.execute(SCHEMA)
    options = ServeOptions(host=args.host, port=args.port, threads=args.threads, workers=args.workers,
                           retention=False, metrics_port=None)
    sys.exit(run_workers(lambda: (create_peer_app(db_path, token), None), options))


if __name__ == "__main__":
    main()
