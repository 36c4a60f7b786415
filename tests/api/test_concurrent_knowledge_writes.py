"""Concurrent writers of the same knowledge states: many threads putting manual values and
posting observations to the same few (profile, topic) pairs at once. Every request succeeds
(writers of one state queue, none is refused for a conflict), and afterwards every state is
what the learner model computes from its stored evidence, with every entry stored once."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

from api_support import create_profile

THREADS = 16
REQUESTS_PER_THREAD = 24
TOPICS = ("t0", "t1", "t2")


def test_concurrent_puts_and_observations_on_the_same_states_all_succeed_and_add_up(
        app, client, service, runtime):
    profiles = [create_profile(client, service, f"contended-{n}")["profile_id"] for n in range(2)]
    start = threading.Barrier(THREADS)
    statuses: Counter = Counter()
    failures: list[tuple[int, str]] = []
    manual_instants: dict[tuple[str, str], set[str]] = defaultdict(set)
    observations: Counter = Counter()
    record = threading.Lock()
    base = datetime.now(timezone.utc) - timedelta(hours=1)

    def writer(n: int) -> None:
        http = app.test_client()
        start.wait()
        for i in range(REQUESTS_PER_THREAD):
            # Every thread walks the same states in the same order: they collide on each.
            pid, topic = profiles[i % 2], TOPICS[i % 3]
            if (n + i) % 2 == 0:
                response = http.put(f"/v1/profiles/{pid}/knowledge/math/{topic}", headers=service,
                                    json={"mastery_level": round(0.05 * (n + 1), 2), "confidence_score": 0.5})
            else:
                at = base + timedelta(seconds=n * 100 + i)  # some before others' checkpoints: rebuilds
                response = http.post(f"/v1/profiles/{pid}/evidence", headers=service, json={"observations": [
                    {"evidence_id": f"e-{n}-{i}", "domain": "math", "topic": topic, "item_id": "q",
                     "correct": (n + i) % 3 != 0, "observed_at": at.isoformat()}]})
            with record:
                statuses[response.status_code] += 1
                if response.status_code >= 300:
                    failures.append((response.status_code, response.get_data(as_text=True)[:300]))
                elif response.request.method == "PUT":
                    manual_instants[(pid, topic)].add(response.get_json()["last_accessed"])
                else:
                    observations[(pid, topic)] += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert failures == [], (statuses, failures[:3])
    for pid in profiles:
        for topic in TOPICS:
            rows = runtime.twin_db.query(
                "SELECT kind, count(*) AS n FROM evidence WHERE profile_id = ? AND knowledge_domain = 'math' "
                "AND topic = ? GROUP BY kind", (pid, topic))
            counts = {r["kind"]: r["n"] for r in rows}
            assert counts.get("observation", 0) == observations[(pid, topic)]
            assert counts.get("manual", 0) == len(manual_instants[(pid, topic)])
            # The stored state is the model's estimate over all of that evidence (the
            # explanation rebuilds it from the rows): no writer's entries were folded over.
            state = client.get(f"/v1/profiles/{pid}/knowledge?domain=math", headers=service).get_json()["items"]
            stored = next(s for s in state if s["topic"] == topic)
            explained = client.get(f"/v1/profiles/{pid}/knowledge/math/{topic}/explanation",
                                   headers=service).get_json()
            assert len(explained["steps"]) == observations[(pid, topic)] + len(manual_instants[(pid, topic)])
            assert stored["mastery_level"] == explained["mastery_level"]
            assert stored["confidence_score"] == explained["confidence_score"]
