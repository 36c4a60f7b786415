"""The learner model on storage, through the services: what an ingest reads and writes, resumed
and rebuilt estimates agreeing, retention's carried-over summary, export and erasure of the
evidence."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from compliance.audit import Actor
from twin.learners import traces
from twin.learners.errors import InvalidFieldsError
from twin.runtime import Runtime
from twin.storage.timestamps import from_db

SERVICE = Actor("tok_test_service", "service")


def obs(eid: str, at: datetime, correct: bool, *, domain: str = "math", topic: str = "algebra") -> dict:
    return {"evidence_id": eid, "domain": domain, "topic": topic, "item_id": f"item-{eid}",
            "correct": correct, "observed_at": at}


def sequence(start: datetime, count: int, seed: int = 1, **skill) -> list[dict]:
    rng = random.Random(seed)
    return [obs(f"{skill.get('topic', 'algebra')}-{i}", start + timedelta(hours=i), rng.random() < 0.7, **skill)
            for i in range(count)]


@pytest.fixture
def pid(runtime) -> str:
    return runtime.profiles.create(SERVICE, None, {"user_id": "model-learner"})[0]["profile_id"]


def _state(runtime, pid, topic="algebra"):
    return next(s for s in runtime.knowledge.list(SERVICE, None, pid) if s["topic"] == topic)


class _Statements:
    """The SQL this thread's digital_twin connection and the process's writers' connection run
    (SQLite's own trace hook)."""

    def __init__(self, db):
        self.sql: list[str] = []
        own = db.connection()
        with db.writes_held() as writes:
            self.connections = (own, writes)

    def __enter__(self):
        for conn in self.connections:
            conn.set_trace_callback(self.sql.append)
        return self

    def __exit__(self, *exc):
        for conn in self.connections:
            conn.set_trace_callback(None)

    def touching(self, table: str, verb: str) -> list[str]:
        return [s for s in self.sql if s.lstrip().upper().startswith(verb) and f" {table} " in f"{s} "]


def test_an_in_order_batch_reads_and_writes_each_touched_skill_once(runtime, pid, clock):
    start = clock() - timedelta(days=20)
    runtime.evidence.ingest(SERVICE, None, pid, sequence(start, 200) + sequence(start, 200, topic="geometry"))
    later = start + timedelta(days=10)
    batch = sequence(later, 50, seed=2) + sequence(later, 50, seed=3, topic="geometry")
    batch = [{**o, "evidence_id": "new-" + o["evidence_id"]} for o in batch]

    with _Statements(runtime.twin_db) as seen:
        assert runtime.evidence.ingest(SERVICE, None, pid, batch) == {"new": 100, "repeats": 0}

    # The touched knowledge states read in one statement, under the write lock (the batch is
    # folded in from them there), one write of each, one look-up of the batch's ids, one insert
    # of its rows; the 400 observations already stored are never read.
    states_read = seen.touching("knowledge_states", "SELECT")
    assert len(states_read) == 1 and all("'algebra'" in s and "'geometry'" in s for s in states_read)
    assert len(seen.touching("knowledge_states", "INSERT")) == 2
    evidence_reads = seen.touching("evidence", "SELECT")
    assert len(evidence_reads) == 1 and "entry_key IN" in evidence_reads[0]

    late = [obs("late", start - timedelta(hours=1), True)]
    with _Statements(runtime.twin_db) as seen:
        runtime.evidence.ingest(SERVICE, None, pid, late)
    # A late observation rebuilds its skill from the rows (and only that skill).
    rows_read = [s for s in seen.touching("evidence", "SELECT") if "entry_key IN" not in s]
    assert len(rows_read) == 1 and "topic = 'algebra'" in rows_read[0]
    assert len(seen.touching("knowledge_states", "SELECT")) == 1


def test_a_state_changed_while_the_batch_waits_for_the_lock_is_the_one_it_folds_into(
        runtime, pid, clock, monkeypatch):
    start = clock() - timedelta(days=5)
    runtime.evidence.ingest(SERVICE, None, pid, sequence(start, 10) + sequence(start, 10, topic="geometry"))
    service = runtime.evidence
    writers_lock, calls = traces.writers_lock, []

    def then_a_manual_value_meanwhile(*args):
        lock = writers_lock(*args)  # the batch checked, about to take the lock...
        if not calls:  # (the manual value's own lock is left alone)
            calls.append(True)
            runtime.knowledge.upsert(SERVICE, None, pid, "math", "algebra", {"mastery_level": 0.9})  # ...set first
        return lock

    monkeypatch.setattr(traces, "writers_lock", then_a_manual_value_meanwhile)
    later = [obs(f"later-{i}", clock() + timedelta(minutes=1 + i), i % 2 == 0) for i in range(4)]
    assert service.ingest(SERVICE, None, pid, later) == {"new": 4, "repeats": 0}

    # The four answers come after the manual value: they continue from it, as one rebuilt from
    # every row says (not from the state read before it was set).
    algebra = _state(runtime, pid)
    explained = runtime.knowledge.explanation(SERVICE, None, pid, "math", "algebra")
    assert [s["kind"] for s in explained["steps"][-5:]] == ["manual", *["observation"] * 4]
    assert explained["steps"][-5]["after"] == 0.9
    assert algebra["source"] == "evidence" and algebra["mastery_level"] == explained["mastery_level"]
    geometry = _state(runtime, pid, "geometry")     # untouched by the batch, and unchanged
    assert runtime.knowledge.explanation(SERVICE, None, pid, "math", "geometry")["mastery_level"] \
        == geometry["mastery_level"]


def test_a_manual_value_is_folded_under_the_lock_into_the_state_stored_since_it_was_set(
        runtime, pid, clock, monkeypatch):
    runtime.knowledge.upsert(SERVICE, None, pid, "math", "algebra", {"mastery_level": 0.5})
    manual_entry, calls = traces.manual_entry, []

    def then_a_later_value_meanwhile(*args):
        entry = manual_entry(*args)  # the value's instant taken before the lock...
        if not calls:
            calls.append(True)
            clock.advance(seconds=1)  # ...while another request sets a later one
            runtime.knowledge.upsert(SERVICE, None, pid, "math", "algebra", {"mastery_level": 0.9})
        return entry

    monkeypatch.setattr(traces, "manual_entry", then_a_later_value_meanwhile)
    view, created = runtime.knowledge.upsert(SERVICE, None, pid, "math", "algebra", {"mastery_level": 0.2})

    # Set at an earlier instant than the one stored meanwhile, it goes in before it: the later
    # value stands, as a rebuild from the rows says (the state read before would have said 0.2).
    explained = runtime.knowledge.explanation(SERVICE, None, pid, "math", "algebra")
    assert not created and [s["after"] for s in explained["steps"]] == [0.5, 0.2, 0.9]
    assert view["mastery_level"] == explained["mastery_level"] == 0.9


def test_estimates_resumed_batch_by_batch_equal_one_rebuilt_from_every_row(runtime, pid, clock):
    other = runtime.profiles.create(SERVICE, None, {"user_id": "rebuilt"})[0]["profile_id"]
    observations = sequence(clock() - timedelta(days=30), 60, seed=7)
    for start in range(0, 60, 7):                       # in order, a few at a time: resumed
        runtime.evidence.ingest(SERVICE, None, pid, observations[start:start + 7])
    shuffled = observations[:]
    random.Random(3).shuffle(shuffled)
    for item in shuffled:                               # out of order, one by one: rebuilt
        runtime.evidence.ingest(SERVICE, None, other, [item])

    resumed, rebuilt = _state(runtime, pid), _state(runtime, other)
    assert resumed["mastery_level"] == rebuilt["mastery_level"]
    assert resumed["confidence_score"] == pytest.approx(rebuilt["confidence_score"], abs=1e-12)
    assert resumed["review_due"] == rebuilt["review_due"]
    explained = runtime.knowledge.explanation(SERVICE, None, pid, "math", "algebra")
    assert explained["steps"][-1]["after"] == resumed["mastery_level"] == explained["mastery_level"]
    assert len(explained["steps"]) == 60


def test_an_observation_older_than_evidence_retention_is_refused(runtime, pid, clock):
    too_old = clock() - timedelta(days=runtime.config.evidence_retention_days, seconds=1)

    with pytest.raises(InvalidFieldsError) as refused:
        runtime.evidence.ingest(SERVICE, None, pid, [obs("a", clock(), True), obs("b", too_old, True)])

    assert list(refused.value.errors["observations"]) == [1]


# -- retention --------------------------------------------------------------------------------

def test_retention_folds_expired_evidence_into_the_carried_over_step(runtime, pid, clock):
    window = runtime.config.evidence_retention_days
    start = clock() - timedelta(days=window - 10)
    old = sequence(start, 30, seed=5)                   # 30 observations, ten days from expiring
    runtime.evidence.ingest(SERVICE, None, pid, old)
    before = _state(runtime, pid)
    clock.advance(days=10, hours=14, minutes=30)         # the first 15 are past the window now

    shown = runtime.knowledge.explanation(SERVICE, None, pid, "math", "algebra")
    report = runtime.retention.run()

    assert report.counts["evidence"] == 15
    assert runtime.twin_db.query_one("SELECT count(*) FROM evidence")[0] == 15
    after = _state(runtime, pid)
    assert (after["mastery_level"], after["confidence_score"]) == (before["mastery_level"], before["confidence_score"])
    explained = runtime.knowledge.explanation(SERVICE, None, pid, "math", "algebra")
    assert explained == shown  # what the purge leaves is what was already shown
    carried, first_kept = explained["steps"][0], explained["steps"][1]
    assert carried["kind"] == "carried_over" and carried["count"] == 15 and carried["before"] == 0.3
    assert carried["first_observed_at"].startswith(old[0]["observed_at"].date().isoformat())
    assert carried["last_observed_at"].startswith(old[14]["observed_at"].date().isoformat())
    assert first_kept["evidence_id"] == old[15]["evidence_id"] and first_kept["before"] == carried["after"]
    assert explained["steps"][-1]["after"] == after["mastery_level"]
    assert "retention purged" in explained["summary"]

    # New evidence folds in after the summary; a retry of a purged one cannot be.
    runtime.evidence.ingest(SERVICE, None, pid, [obs("new", clock(), True)])
    assert runtime.knowledge.explanation(SERVICE, None, pid, "math", "algebra")["steps"][-1]["evidence_id"] == "new"
    assert runtime.retention.run().counts["evidence"] == 0


def test_a_late_observation_before_the_purged_ones_is_refused_with_its_index(runtime, pid, clock, config, keyring):
    runtime.evidence.ingest(SERVICE, None, pid, sequence(clock() - timedelta(days=700), 10))
    # A deployment that kept evidence 10 days purged them; its window is 730 days again now.
    shorter = Runtime(dataclasses.replace(config, evidence_retention_days=10), keyring, clock=clock)
    assert shorter.retention.run().counts["evidence"] == 10
    shorter.close()
    purged_era = clock() - timedelta(days=705)

    with pytest.raises(InvalidFieldsError) as refused:
        runtime.evidence.ingest(SERVICE, None, pid, [obs("fine", clock(), True), obs("older", purged_era, True)])

    assert refused.value.errors == {"observations": {1: {"observed_at": [
        "Older than evidence already purged by retention: it cannot be folded in."]}}}


def test_a_held_subjects_evidence_is_not_purged(runtime, pid, clock):
    runtime.evidence.ingest(SERVICE, None, pid, sequence(clock() - timedelta(days=729), 5))
    runtime.holds.place(runtime.profiles.subject_of(pid), "litigation", None, "tok_admin")
    clock.advance(days=5)

    assert runtime.retention.run().counts["evidence"] == 0
    assert runtime.twin_db.query_one("SELECT count(*) FROM evidence")[0] == 5


# -- export and erasure -------------------------------------------------------------------------

def test_the_export_holds_the_evidence_and_each_states_explanation(runtime, pid, clock):
    runtime.evidence.ingest(SERVICE, None, pid, sequence(clock() - timedelta(days=3), 4)
                            + sequence(clock() - timedelta(days=3), 2, topic="geometry"))
    runtime.knowledge.upsert(SERVICE, None, pid, "math", "geometry", {"mastery_level": 0.5})
    subject = runtime.profiles.subject_of(pid)

    doc = json.loads("".join(runtime.subject_requests.export(SERVICE, None, "model-learner")))

    observations = [e for e in doc["evidence"] if e["kind"] == "observation"]
    assert sorted(e["evidence_id"] for e in observations) == sorted(
        ["algebra-0", "algebra-1", "algebra-2", "algebra-3", "geometry-0", "geometry-1"])
    assert {e["item_id"] for e in observations} == {f"item-{e['evidence_id']}" for e in observations}
    assert {"entry_key", "id"}.isdisjoint(observations[0]) and "correct" in observations[0]
    (manual,) = [e for e in doc["evidence"] if e["kind"] == "manual"]
    assert (manual["topic"], manual["mastery_level"]) == ("geometry", 0.5)
    for state in doc["knowledge_states"]:
        api = runtime.knowledge.explanation(SERVICE, None, pid, state["knowledge_domain"], state["topic"])
        assert state["explanation"] == api
        assert state["explanation"]["mastery_level"] == state["mastery_level"]
        assert "model_checkpoint" not in state
    (event,) = runtime.audit.query(subject_hash=subject, action="export")
    assert event.details["evidence"] == 7


def test_erasure_removes_evidence_and_estimates_and_keeps_the_aggregate_parameters(runtime, pid, clock):
    runtime.evidence.ingest(SERVICE, None, pid, sequence(clock() - timedelta(days=3), 4))
    runtime.twin_db.write(lambda conn: conn.execute(
        "INSERT INTO skill_parameters (knowledge_domain, topic, version, prior, learn, slip, guess, forget, "
        "learners, observations, log_likelihood, iterations, fitted_at) VALUES "
        "('math', 'algebra', 'em-test', 0.2, 0.1, 0.1, 0.2, 0, 80, 900, -500.0, 12, '2026-01-01T00:00:00.000000Z')"))

    receipt = runtime.subject_requests.erase(SERVICE, None, profile_id=pid)

    assert receipt.verified and receipt.counts["evidence"] == 4 and receipt.counts["knowledge_states"] == 1
    assert runtime.twin_db.query_one("SELECT count(*) FROM evidence")[0] == 0
    assert runtime.twin_db.query_one("SELECT count(*) FROM knowledge_states")[0] == 0
    assert runtime.twin_db.query_one("SELECT count(*) FROM skill_parameters")[0] == 1


def test_a_knowledge_state_expiring_takes_its_evidence_along(runtime, pid, clock):
    runtime.evidence.ingest(SERVICE, None, pid, sequence(clock() - timedelta(days=3), 4))
    runtime.retention.windows = {**runtime.retention.windows, "knowledge": 1}
    clock.advance(days=2)

    report = runtime.retention.run()

    assert report.counts["knowledge_states"] == 1
    assert runtime.twin_db.query_one("SELECT count(*) FROM evidence")[0] == 0


def test_reviews_come_due_after_the_evidence_and_name_the_predicted_recall(runtime, pid, clock):
    now = clock()
    runtime.evidence.ingest(SERVICE, None, pid, [obs("a", now - timedelta(hours=1), True),
                                                 obs("b", now - timedelta(days=2), True, topic="geometry"),
                                                 obs("c", now - timedelta(days=1, hours=1), False,
                                                     topic="geometry")])
    runtime.knowledge.upsert(SERVICE, None, pid, "art", "colour", {"mastery_level": 0.4})  # no evidence

    due_now = runtime.knowledge.reviews_due(SERVICE, None, pid, now)
    due_later = runtime.knowledge.reviews_due(SERVICE, None, pid, now + timedelta(days=60))

    assert [d["topic"] for d in due_now] == ["geometry"]          # a wrong answer: due a day later
    assert [d["topic"] for d in due_later] == ["geometry", "algebra"]
    assert all(0 < d["predicted_recall"] < 1 for d in due_later)
    assert due_later[1]["predicted_recall"] < 0.9  # past its due date, recall is below the target
    assert [d["due"] for d in due_later] == sorted(d["due"] for d in due_later)
    due = datetime.fromisoformat(due_now[0]["due"].replace("Z", "+00:00"))
    assert from_db(_state(runtime, pid, "geometry")["review_due"]) == due
