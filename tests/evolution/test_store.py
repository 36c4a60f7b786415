"""EvolutionStore on each backend: a real SQLCipher evolution_metrics.db, and the
evolution_metrics schema of a real PostgreSQL database."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from twin.evolution import (DuplicateFitnessError, DuplicateRoundError, EvolutionStore,
                            EvolutionValidationError, FitnessRecord, LeaderboardEntry, LineageLink,
                            ResourceSample, SelectionOutcome, UnknownRoundError)
from twin.evolution.schema import MIGRATIONS
from twin.storage import IntegrityError, Migrator

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def config(store_config):
    return store_config


@pytest.fixture
def db(open_catalog_db):
    return open_catalog_db("evolution_metrics")


@pytest.fixture
def store(db) -> EvolutionStore:
    return EvolutionStore(db)


def count(db, table: str) -> int:
    return db.query_one(f"SELECT count(*) FROM {table}")[0]


# -- rounds -------------------------------------------------------------------------------

def test_a_started_round_is_running_with_its_parameters(store):
    rnd = store.start_round(3, 1, population_size=64, mutation_rate=0.05, selection_pressure=1.5,
                            metadata={"strategy": "tournament"}, started_at=T0)
    assert (rnd.round_number, rnd.generation, rnd.status) == (3, 1, "running")
    assert (rnd.population_size, rnd.mutation_rate, rnd.selection_pressure) == (64, 0.05, 1.5)
    assert rnd.metadata == {"strategy": "tournament"}
    assert rnd.started_at == "2026-03-01T12:00:00.000000Z" and rnd.finished_at is None
    assert store.find_round(3, 1) == rnd and store.get_round(rnd.id) == rnd


def test_the_same_round_and_generation_cannot_start_twice(store):
    store.start_round(1, 0)
    with pytest.raises(DuplicateRoundError):
        store.start_round(1, 0)
    assert store.start_round(1, 1).generation == 1  # another generation of the same round is fine


@pytest.mark.parametrize("kwargs", [
    {"round_number": -1, "generation": 0},
    {"round_number": 1, "generation": 0, "mutation_rate": 1.5},
    {"round_number": 1, "generation": 0, "population_size": True},
    {"round_number": 1, "generation": 0, "metadata": {"bad": object()}},
])
def test_invalid_round_parameters_are_refused(store, kwargs):
    with pytest.raises(EvolutionValidationError):
        store.start_round(**kwargs)
    assert store.rounds() == []


def test_finishing_a_round_records_status_and_time(store):
    rnd = store.start_round(1, 0)
    done = store.finish_round(rnd.id, "completed", finished_at=T0)
    assert (done.status, done.finished_at) == ("completed", "2026-03-01T12:00:00.000000Z")
    with pytest.raises(EvolutionValidationError):
        store.finish_round(rnd.id, "running")
    with pytest.raises(UnknownRoundError):
        store.finish_round(999, "failed")


def test_rounds_are_listed_latest_first_and_filter_by_status(store):
    first, second = store.start_round(1, 0), store.start_round(2, 0)
    store.finish_round(first.id)
    assert [r.id for r in store.rounds()] == [second.id, first.id]
    assert [r.id for r in store.rounds(status="running")] == [second.id]


# -- fitness --------------------------------------------------------------------------------

def test_leaderboard_lists_the_best_agents_first_ties_broken_by_agent_id(store):
    rnd = store.start_round(1, 0)
    store.record_fitness(rnd.id, [("c", 0.5), ("a", 0.9), ("b", 0.9), ("d", 0.1), ("e", 0.7)])
    assert store.leaderboard(rnd.id, 3) == [
        LeaderboardEntry(1, "a", 0.9), LeaderboardEntry(2, "b", 0.9), LeaderboardEntry(3, "e", 0.7)]
    assert [e.agent_id for e in store.leaderboard(rnd.id, 100)] == ["a", "b", "e", "c", "d"]


def test_leaderboard_is_per_round(store):
    r1, r2 = store.start_round(1, 0), store.start_round(2, 0)
    store.record_fitness(r1.id, [("a", 0.2), ("b", 0.8)])
    store.record_fitness(r2.id, [("a", 0.95), ("b", 0.1)])
    assert [e.agent_id for e in store.leaderboard(r1.id, 1)] == ["b"]
    assert [e.agent_id for e in store.leaderboard(r2.id, 1)] == ["a"]


@pytest.mark.sqlite_only("EXPLAIN QUERY PLAN is SQLite's")
def test_the_leaderboard_query_reads_only_the_covering_index(store, db):
    rnd = store.start_round(1, 0)
    store.record_fitness(rnd.id, [(f"agent-{i}", i / 100) for i in range(100)])
    plan = " ".join(r["detail"] for r in db.query(
        "EXPLAIN QUERY PLAN SELECT agent_id, fitness_score FROM fitness_metrics WHERE round_id = ? "
        "ORDER BY fitness_score DESC, agent_id LIMIT ?", (rnd.id, 10)))
    assert "COVERING INDEX idx_fitness_score" in plan and "TEMP B-TREE" not in plan


def test_fitness_rows_may_be_records_tuples_or_mappings(store, db):
    rnd = store.start_round(1, 0)
    written = store.record_fitness(rnd.id, [
        FitnessRecord("rec", 0.3, performance_metrics={"acc": 0.91}, timestamp=T0),
        ("tup", 0.2, {"loss": 0.4}, {"cpu": 12.5}),
        {"agent_id": "map", "fitness_score": 1, "resource_usage": {"gpu": 1}},
    ])
    assert written == 3
    rows = {r["agent_id"]: r for r in db.query("SELECT * FROM fitness_metrics")}
    # JSON as stored (PostgreSQL's JSONB spaces its text differently from our compact form)
    assert json.loads(rows["rec"]["performance_metrics"]) == {"acc": 0.91}
    assert rows["rec"]["timestamp"] == "2026-03-01T12:00:00.000000Z"
    assert json.loads(rows["tup"]["resource_usage"]) == {"cpu": 12.5}
    assert rows["map"]["fitness_score"] == 1.0


@pytest.mark.parametrize("bad_row", [
    ("agent", float("nan")), ("agent", float("inf")), ("agent", True), ("agent", "0.5"),
    ("", 0.5), (None, 0.5), ("x" * 201, 0.5), ("agent",), {"agent_id": "a", "score": 1.0},
    ("agent", 0.5, {"not json": object()}), 42,
])
def test_a_batch_with_one_invalid_row_is_refused_whole_naming_the_row(store, db, bad_row):
    rnd = store.start_round(1, 0)
    with pytest.raises(EvolutionValidationError) as info:
        store.record_fitness(rnd.id, [("good-1", 0.1), ("good-2", 0.2), bad_row])
    assert info.value.index == 2 and "row 2" in str(info.value)
    assert count(db, "fitness_metrics") == 0


def test_fitness_for_an_unknown_round_is_refused(store, db):
    with pytest.raises(UnknownRoundError):
        store.record_fitness(12345, [("a", 0.1)])
    assert count(db, "fitness_metrics") == 0


def test_an_agent_scored_twice_in_a_round_rolls_back_the_whole_batch(store, db):
    rnd = store.start_round(1, 0)
    with pytest.raises(DuplicateFitnessError):
        store.record_fitness(rnd.id, [("a", 0.1), ("b", 0.2), ("a", 0.3)])
    assert count(db, "fitness_metrics") == 0
    store.record_fitness(rnd.id, [("a", 0.1)])
    with pytest.raises(DuplicateFitnessError):
        store.record_fitness(rnd.id, [("b", 0.2), ("a", 0.5)])
    assert [(e.agent_id, e.fitness_score) for e in store.leaderboard(rnd.id, 10)] == [("a", 0.1)]


def test_a_large_batch_is_written_completely(store, db):
    rnd = store.start_round(1, 0)
    assert store.record_fitness(rnd.id, ((f"agent-{i:05d}", i / 20_000) for i in range(20_000))) == 20_000
    assert count(db, "fitness_metrics") == 20_000
    assert store.leaderboard(rnd.id, 1) == [LeaderboardEntry(1, "agent-19999", 19_999 / 20_000)]


def test_an_agents_fitness_history_follows_round_order(store):
    rounds = [store.start_round(n, g) for n, g in ((2, 0), (1, 1), (1, 0))]
    for rnd, score in zip(rounds, (0.9, 0.6, 0.4)):
        store.record_fitness(rnd.id, [("hero", score), (f"other-{rnd.id}", 0.5)])
    history = store.fitness_history("hero")
    assert [(p.round_number, p.generation, p.fitness_score) for p in history] == [
        (1, 0, 0.4), (1, 1, 0.6), (2, 0, 0.9)]
    assert len(store.fitness_history("hero", limit=2)) == 2
    assert store.fitness_history("nobody") == []


# -- resources ------------------------------------------------------------------------------

def test_resource_series_returns_samples_in_a_half_open_time_window(store):
    r1, r2 = store.start_round(1, 0), store.start_round(2, 0)
    store.record_resources(r1.id, [ResourceSample(cpu_usage=10.0 + i, timestamp=T0 + timedelta(minutes=i))
                                   for i in range(5)])
    store.record_resources(r2.id, {"memory_usage_mb": 512.0, "timestamp": T0 + timedelta(minutes=2, seconds=30)})
    window = store.resource_series(T0 + timedelta(minutes=1), T0 + timedelta(minutes=3))
    assert [(s.round_id, s.cpu_usage, s.memory_usage_mb) for s in window] == [
        (r1.id, 11.0, None), (r1.id, 12.0, None), (r2.id, None, 512.0)]
    assert [s.timestamp for s in window][0] == "2026-03-01T12:01:00.000000Z"
    only_r1 = store.resource_series("2026-03-01T12:01:00Z", "2026-03-01T14:00:00+01:00", round_id=r1.id)
    assert [s.cpu_usage for s in only_r1] == [11.0, 12.0, 13.0, 14.0]  # 14:00+01:00 is 13:00Z


def test_resource_series_accepts_any_utc_offset_and_orders_by_time(store):
    rnd = store.start_round(1, 0)
    later = datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))  # 12:00Z
    store.record_resources(rnd.id, [{"cpu_usage": 2.0, "timestamp": T0 + timedelta(seconds=1)},
                                    {"cpu_usage": 1.0, "timestamp": later}])
    assert [s.cpu_usage for s in store.resource_series(T0, T0 + timedelta(hours=1))] == [1.0, 2.0]


@pytest.mark.parametrize("sample", [{"cpu_usage": -1.0}, {}, {"gpu_usage": float("nan")},
                                    {"cpu_usage": 1.0, "swap": 3}, {"cpu_usage": 1.0, "timestamp": "yesterday"}])
def test_invalid_resource_samples_are_refused(store, db, sample):
    rnd = store.start_round(1, 0)
    with pytest.raises(EvolutionValidationError):
        store.record_resources(rnd.id, sample)
    assert count(db, "resource_metrics") == 0


# -- selection and lineage ------------------------------------------------------------------

@pytest.fixture
def family(store):
    """Three generations: a x b -> c (crossover), c -> d (mutation), c -> e, e -> f; g survives."""
    r1, r2, r3 = (store.start_round(n, 0) for n in (1, 2, 3))
    store.record_selection(r1.id, [
        SelectionOutcome("a", "c", "tournament", crossover_points=[3, 7]),
        SelectionOutcome("b", "c", "tournament", crossover_points=[3, 7]),
        SelectionOutcome("g", None, "elitism", survival_reason="top 5%"),
    ])
    store.record_selection(r2.id, [{"parent_agent_id": "c", "child_agent_id": "d", "mutation_applied": True},
                                   {"parent_agent_id": "c", "child_agent_id": "e"}])
    store.record_selection(r3.id, SelectionOutcome("e", "f"))
    return r1, r2, r3


def test_children_and_parents_of_an_agent(store, family):
    r1, r2, _ = family
    assert store.children_of("c") == ["d", "e"]
    assert store.children_of("c", round_id=r1.id) == []
    assert store.parents_of("c") == ["a", "b"]
    assert store.children_of("g") == []  # survived without offspring


def test_selection_outcomes_keep_their_details(store, family):
    r1, r2, _ = family
    outcomes = store.selection_outcomes(r1.id)
    assert outcomes[0].crossover_points == [3, 7] and outcomes[2].survival_reason == "top 5%"
    assert [o.mutation_applied for o in store.selection_outcomes(r2.id)] == [True, False]


def test_lineage_walks_up_to_every_ancestor_nearest_first(store, family):
    r1, r2, r3 = family
    assert store.lineage("f") == [LineageLink("e", "f", r3.id, 1), LineageLink("c", "e", r2.id, 2),
                                  LineageLink("a", "c", r1.id, 3), LineageLink("b", "c", r1.id, 3)]
    assert [link.parent_agent_id for link in store.lineage("f", max_depth=2)] == ["e", "c"]


def test_lineage_walks_down_to_every_descendant(store, family):
    assert [(x.parent_agent_id, x.child_agent_id, x.depth)
            for x in store.lineage("a", direction="descendants")] == [
        ("a", "c", 1), ("c", "d", 2), ("c", "e", 2), ("e", "f", 3)]


def test_lineage_ends_even_if_the_records_form_a_cycle(store):
    rnd = store.start_round(1, 0)
    store.record_selection(rnd.id, [SelectionOutcome("x", "y"), SelectionOutcome("y", "x")])
    links = store.lineage("x", max_depth=50)
    assert {(x.parent_agent_id, x.child_agent_id) for x in links} == {("y", "x"), ("x", "y")}


@pytest.mark.parametrize("outcome", [{"parent_agent_id": "a", "child_agent_id": "a"},
                                     {"child_agent_id": "b"},
                                     {"parent_agent_id": "a", "mutation_applied": "yes"}])
def test_invalid_selection_outcomes_are_refused(store, db, outcome):
    rnd = store.start_round(1, 0)
    with pytest.raises(EvolutionValidationError):
        store.record_selection(rnd.id, outcome)
    assert count(db, "selection_outcomes") == 0


# -- schema -------------------------------------------------------------------------------

def test_deleting_a_round_deletes_its_fitness_resources_and_selections(store, db, family):
    r1, r2, r3 = family
    store.record_fitness(r1.id, [("a", 0.5)])
    store.record_resources(r1.id, {"cpu_usage": 5.0})
    assert store.delete_round(r1.id) is True
    assert (count(db, "fitness_metrics"), count(db, "resource_metrics")) == (0, 0)
    assert db.query_one("SELECT count(*) FROM selection_outcomes WHERE round_id = ?", (r1.id,))[0] == 0
    assert store.parents_of("c") == [] and store.children_of("c") == ["d", "e"]
    assert store.delete_round(r1.id) is False


def test_rows_written_without_a_timestamp_get_a_fixed_width_utc_one(db):
    db.execute("INSERT INTO evolution_rounds (round_number, generation) VALUES (1, 0)")
    stamp = db.query_one("SELECT timestamp FROM evolution_rounds")[0]
    assert len(stamp) == 27 and stamp.endswith("Z")
    assert abs(datetime.fromisoformat(stamp) - datetime.now(timezone.utc)) < timedelta(minutes=1)
    with pytest.raises(IntegrityError):
        db.execute("INSERT INTO evolution_rounds (round_number, generation, timestamp) "
                   "VALUES (2, 0, '2026-03-01 12:00:00')")


def test_the_schema_rolls_back_to_empty_and_migrates_again(db):
    migrator = Migrator(db, MIGRATIONS)
    assert migrator.rollback(0) == [3, 2, 1]
    assert db.table_names() == ["schema_version"]
    assert migrator.migrate() == [1, 2, 3]
    assert {"evolution_rounds", "fitness_metrics", "resource_metrics",
            "selection_outcomes"} <= set(db.table_names())
