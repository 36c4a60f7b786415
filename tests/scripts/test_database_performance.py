"""scripts/database_performance.py (seed 004) on a real deployment: per database its size, pages
and freelist, the index each main query uses and its timing, and the Redis caches' hit rates."""

from __future__ import annotations

import json

import storage_backends


def test_every_database_is_reported_with_its_main_queries_plans_and_timings(env, run_script):
    assert run_script("setup_databases.py").returncode == 0

    result = run_script("database_performance.py", "--json")

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    by_name = {d["name"]: d for d in report["databases"]}
    assert set(by_name) >= {"digital_twin", "privacy_vault", "evolution_metrics", "rag_index", "ledger",
                            "model_registry", "settings"}
    ledger = by_name["ledger"]
    assert ledger["file_size_bytes"] > 0 and ledger["page_count"] > 0 and ledger["freelist_count"] >= 0
    node = ledger["queries"]["entries of a node"]
    assert "idx_ledger_node_time" in node["plan"] and node["median_ms"] >= 0
    assert ledger["indexes"]["idx_ledger_node_time"] is True
    leaderboard = by_name["evolution_metrics"]["queries"]["leaderboard"]
    assert "INDEX" in leaderboard["plan"]
    assert report["caches"] == {}


def test_the_text_form_names_each_database_and_a_configured_cache(env, run_script):
    assert run_script("setup_databases.py").returncode == 0
    if storage_backends.redis_problem() is None:
        env["RAG_CACHE_ENABLED"] = "true"
        env["RAG_REDIS_URL"] = f"{storage_backends.REDIS_URL.rstrip('/')}/13"

    result = run_script("database_performance.py", "--database", "rag_index")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("rag_index: ") and "pages of" in lines[0]
    assert any(line.strip().startswith("keyword search") for line in lines)
    if "RAG_CACHE_ENABLED" in env:
        assert any(line.startswith("cache RAG query (redis://") and "hit rate" in line for line in lines)


def test_an_unknown_database_is_one_line_and_exit_2(env, run_script):
    assert run_script("setup_databases.py").returncode == 0
    result = run_script("database_performance.py", "--database", "nope")
    assert result.returncode == 2
    assert "unknown database" in (result.stdout + result.stderr)
