"""``twin db performance`` (``scripts/database_performance.py``, seed 004): per database its size,
page and freelist counts, which index each of the stores' main queries uses, their timing, and
the Redis caches' hit rates when a cache is configured."""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
from typing import Any

import click

from .db import db
from .plumbing import command, database_option, existing_database, load_deployment, selected_databases

_HASH = "0" * 64
# The main query of each store, as the store runs it (representative parameters).
MAIN_QUERIES: dict[str, dict[str, tuple[str, tuple[Any, ...]]]] = {
    "digital_twin": {
        "profile by subject": ("SELECT profile_id FROM learning_profiles WHERE user_id_hash = ?", (_HASH,)),
        "sessions of a profile": ("SELECT session_id FROM learning_sessions WHERE profile_id = ? "
                                  "ORDER BY start_time", ("p",)),
    },
    "privacy_vault": {
        "subject key": ("SELECT wrapped_key FROM subject_keys WHERE user_id_hash = ?", (_HASH,)),
    },
    "evolution_metrics": {
        "leaderboard": ("SELECT agent_id, fitness_score FROM fitness_metrics WHERE round_id = ? "
                        "ORDER BY fitness_score DESC, agent_id LIMIT 10", (1,)),
        "fitness history": ("SELECT round_id, fitness_score FROM fitness_metrics WHERE agent_id = ?", ("a",)),
    },
    "rag_index": {
        "keyword search": ("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ? ORDER BY rank LIMIT 10",
                           ("cell",)),
        "chunks of a document": ("SELECT chunk_id FROM chunks WHERE document_id = ? ORDER BY chunk_index",
                                 ("d",)),
    },
    "ledger": {
        "new entries": ("SELECT id FROM ledger WHERE id > ? ORDER BY id LIMIT 100", (0,)),
        "entries of a node": ("SELECT id FROM ledger WHERE node_id = ? ORDER BY timestamp DESC, id DESC "
                              "LIMIT 10", ("Node_1",)),
    },
    "model_registry": {
        "active version": ("SELECT model_id FROM model_registry WHERE name = ? AND is_active = 1", ("m",)),
    },
    "settings": {
        "configurations by category": ("SELECT key FROM configurations WHERE category = ? ORDER BY key",
                                       ("general",)),
        "metrics window": ("SELECT metric_value FROM performance_metrics WHERE metric_name = ? "
                           "AND recorded_at >= ? ORDER BY recorded_at", ("m", "2000-01-01")),
    },
}
_RUNS = 5
perf_log = logging.getLogger("twin.performance")  # performance.log under TWIN_LOG_DIR


def _plan(handle: Any, sql: str, params: tuple[Any, ...]) -> str:
    details = [row[3] for row in handle.query(f"EXPLAIN QUERY PLAN {sql}", params)]
    return "; ".join(details)


def _timed(handle: Any, sql: str, params: tuple[Any, ...]) -> float:
    times = []
    for _ in range(_RUNS):
        start = time.perf_counter()
        handle.query(sql, params)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def measure(handle: Any, name: str) -> dict[str, Any]:
    """The report of one database (``twin.storage.maintenance.info`` plus queries and indexes)."""
    from ..storage.maintenance import info

    report = info(handle)
    queries = {}
    for label, (sql, params) in MAIN_QUERIES.get(name, {}).items():
        plan = _plan(handle, sql, params)
        queries[label] = {"plan": plan, "median_ms": round(_timed(handle, sql, params), 3)}
        perf_log.info("%s %s: %.3f ms (%s)", name, label, queries[label]["median_ms"], plan)
    indexes = [row[0] for row in handle.query(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%' "
        "ORDER BY name")]
    used = {index for index in indexes for q in queries.values() if index in q["plan"]}
    report["queries"] = queries
    report["indexes"] = {index: index in used for index in indexes}
    return report


def cache_stats(environ: Any = None) -> dict[str, Any]:
    """Hit rates of the configured Redis caches (server-wide keyspace hits and misses, keys in
    the cache's database); ``{}`` when none is configured."""
    import redis

    from ..cache import redis_display_url
    from ..cache.redis_client import flag

    environ = os.environ if environ is None else environ
    configured = {}
    if environ.get("AIVILLAGE_REDIS_URL", "").strip():
        configured["evolution leaderboard"] = environ["AIVILLAGE_REDIS_URL"].strip()
    if flag(environ.get("RAG_CACHE_ENABLED", "")):
        configured["RAG query"] = environ.get("RAG_REDIS_URL", "").strip() or "redis://localhost:6379/1"
    out: dict[str, Any] = {}
    for label, url in configured.items():
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            stats = client.info("stats")
            hits, misses = stats["keyspace_hits"], stats["keyspace_misses"]
            out[label] = {"url": redis_display_url(url), "keys": client.dbsize(),
                          "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None}
        except redis.RedisError as exc:
            out[label] = {"url": redis_display_url(url), "error": type(exc).__name__}
        finally:
            client.close()
    return out


@command(db, "performance")
@database_option
@click.option("--json", "as_json", is_flag=True, help="one JSON document instead of text")
def performance_command(database: str | None, as_json: bool) -> int:
    """Per database: size, pages, freelist, the main queries' index use and timing; the Redis
    caches' hit rates when configured."""
    deployment = load_deployment()
    reports = []
    for name in selected_databases(database):
        with existing_database(deployment, name) as handle:
            reports.append(measure(handle, name))
    caches = cache_stats(deployment.config.environ or None)
    if as_json:
        click.echo(json.dumps({"databases": reports, "caches": caches}, indent=2))
        return 0
    for r in reports:
        click.echo(f"{r['name']}: {r['file_size_bytes']:,} bytes (WAL {r['wal_size_bytes']:,}), "
                   f"{r['page_count']:,} pages of {r.get('page_size', 4096):,}, {r['freelist_count']:,} free")
        for label, q in r["queries"].items():
            click.echo(f"  {label:<28} {q['median_ms']:8.3f} ms  {q['plan']}")
        unused = [index for index, used in r["indexes"].items() if not used]
        if unused:
            click.echo(f"  indexes no main query uses: {', '.join(unused)}")
    for label, c in caches.items():
        if "error" in c:
            shown = f"error {c['error']}"
        else:
            rate = "n/a" if c["hit_rate"] is None else f"{c['hit_rate']:.1%}"
            shown = f"{c['keys']:,} keys, hit rate {rate} (server-wide)"
        click.echo(f"cache {label} ({c['url']}): {shown}")
    return 0
