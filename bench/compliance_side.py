"""One side of ``bench/compliance.py --before``: the compliance measures of whichever checkout is
on ``sys.path``, run in that checkout's own venv, driven over stdin/stdout (one JSON object a
line each way) by ``bench/compliance_revisions.py``.

It imports nothing from the benchmark directory, only ``twin`` and ``compliance`` of the tree it
runs in, and reaches each through what both that tree and the release b8c13d3 have: a subject's
key by ``keys.writer`` (this tree) or ``keys.sealer_for`` (the release), DSR export and erasure
by ``subject_requests`` or ``dsr``. Only measures both trees have are taken: DSR export and
erase of one subject (sessions plus 100 knowledge states, among 20 other subjects), and the
retention purge of expired sessions (in process, without API reads meanwhile).

Requests: ``{"op": "dsr_setup", "sessions": N, "rounds": R}``, ``{"op": "dsr_round", "round":
r}``, ``{"op": "purge_round", "rows": N, "round": r}``, ``{"op": "quit"}``; each is answered
with one JSON object (the measures in seconds, or ``{"error": ...}``). The erase and the purge
are also timed in the process's CPU time (``time.process_time``, every thread), which a loaded
machine slows less than the wall clock.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from compliance.audit import Actor
from compliance.keyring import Keyring
from twin.config import Config
from twin.runtime import Runtime
from twin.storage import maintenance
from twin.storage.timestamps import to_db, utc_now

ADMIN = Actor("bench", "admin")


def _sealer(rt: Runtime, subject: str) -> Any:
    keys = rt.keys
    return keys.writer(subject) if hasattr(keys, "writer") else keys.sealer_for(subject)


def _settle_files(rt: Runtime) -> None:
    """The WAL moved into the file before a measure (each tree's own call for it)."""
    settle = getattr(maintenance, "truncate_wal", None) or getattr(maintenance, "checkpoint")
    settle(rt.twin_db)


def _runtime() -> Runtime:
    d = Path(tempfile.mkdtemp(prefix="twin-bench-side-"))
    return Runtime(Config(env="test", data_dir=d, keyring_path=d / "k.json"), Keyring.generate())


def fill_subject(rt: Runtime, user_id: str, sessions: int, knowledge: int) -> str:
    """A profile with ``sessions`` sessions and ``knowledge`` knowledge states (sealed as the
    services seal them); returns its subject hash. bench/compliance.py seeds with it too."""
    profile, _ = rt.profiles.create(ADMIN, None, {"user_id": user_id, "personal": {"name": "Bench Person"},
                                                  "learning_goals": ["g"]})
    pid = profile["profile_id"]
    subject = rt.hasher.hash(user_id)
    sealer = _sealer(rt, subject)
    now = utc_now()
    kstates = [(pid, f"domain{i % 10}", f"topic{i}", 0.5, 0.5, to_db(now),
                sealer.seal("knowledge_states", "learning_trajectory", f"{pid}/domain{i % 10}/topic{i}", {"s": i}), 1)
               for i in range(knowledge)]
    rt.twin_db.write(lambda conn: conn.executemany(
        "INSERT INTO knowledge_states (profile_id, knowledge_domain, topic, mastery_level, confidence_score, "
        "last_accessed, learning_trajectory, prerequisites_met) VALUES (?,?,?,?,?,?,?,?)", kstates))
    for start in range(0, sessions, 20_000):
        rows = []
        for i in range(start, min(sessions, start + 20_000)):
            sid = f"ses_{user_id}_{i}"
            rows.append((sid, pid, sealer.seal("learning_sessions", "session_type", sid, "lesson"),
                         to_db(now - timedelta(minutes=i)),
                         sealer.seal("learning_sessions", "topics_covered", sid, ["a", "b"]),
                         sealer.seal("learning_sessions", "performance_metrics", sid, {"score": i % 100}),
                         0.5, "completed"))
        rt.twin_db.write(lambda conn, rows=rows: conn.executemany(
            "INSERT INTO learning_sessions (session_id, profile_id, session_type, start_time, topics_covered, "
            "performance_metrics, engagement_score, completion_status) VALUES (?,?,?,?,?,?,?,?)", rows))
    return subject


def seed_expired(rt: Runtime, pids: list[str], rows: int, tag: str) -> None:
    """``rows`` expired sessions spread over the profiles ``pids`` (of users purge-0, purge-1...),
    the WAL then moved into the file. bench/compliance.py seeds its purges with it too."""
    old = to_db(utc_now() - timedelta(days=rt.config.session_retention_days + 30))
    per_profile = max(1, rows // len(pids))
    for p, pid in enumerate(pids):
        sealer = _sealer(rt, rt.hasher.hash(f"purge-{p}"))
        # Purging never decrypts, so one realistic-size sealed value serves every row.
        metrics = sealer.seal("learning_sessions", "performance_metrics", "shared", {"score": 1})
        kind = sealer.seal("learning_sessions", "session_type", "shared", "lesson")
        batch = [(f"old_{tag}_{p}_{i}", pid, kind, old, metrics, metrics) for i in range(per_profile)]
        rt.twin_db.write(lambda conn, batch=batch: conn.executemany(
            "INSERT INTO learning_sessions (session_id, profile_id, session_type, start_time, topics_covered, "
            "performance_metrics) VALUES (?,?,?,?,?,?)", batch))
    _settle_files(rt)


class Side:
    def __init__(self) -> None:
        self.dsr: Runtime | None = None
        self.sessions = 0
        self.purge: Runtime | None = None
        self.purge_pids: list[str] = []

    def dsr_setup(self, sessions: int, rounds: int) -> dict:
        if self.dsr is not None:
            self.dsr.close()
        self.dsr, self.sessions = _runtime(), sessions
        for n in range(20):
            fill_subject(self.dsr, f"other-{n}", 500, 50)
        for r in range(rounds):
            fill_subject(self.dsr, f"subject-{r}", sessions, 100)
        _settle_files(self.dsr)
        return {}

    def dsr_round(self, round: int) -> dict:
        rt, user_id = self.dsr, f"subject-{round}"
        assert rt is not None, "dsr_setup first"
        started = time.perf_counter()
        if hasattr(rt, "subject_requests"):
            size = sum(len(chunk) for chunk in rt.subject_requests.export(ADMIN, None, user_id))
            export_s = time.perf_counter() - started
            started, cpu = time.perf_counter(), time.process_time()
            receipt = rt.subject_requests.erase(ADMIN, None, user_id=user_id)
        else:
            subject = rt.hasher.hash(user_id)
            size = sum(len(chunk) for chunk in rt.dsr.export_chunks(subject, ADMIN))
            export_s = time.perf_counter() - started
            started, cpu = time.perf_counter(), time.process_time()
            receipt = rt.dsr.erase(subject, ADMIN)
        erase_s, erase_cpu_s = time.perf_counter() - started, time.process_time() - cpu
        if not (receipt.verified and receipt.counts["learning_sessions"] == self.sessions):
            return {"error": f"erase of {user_id} did not verify: {receipt.counts}"}
        return {"export_s": export_s, "erase_s": erase_s, "erase_cpu_s": erase_cpu_s, "export_mb": size / 1e6}

    def purge_round(self, rows: int, round: int) -> dict:
        if self.purge is None:
            self.purge = _runtime()
            self.purge_pids = [self.purge.profiles.create(ADMIN, None, {"user_id": f"purge-{p}", "personal": {"n": p}})[0]
                               ["profile_id"] for p in range(100)]
        rt = self.purge
        seed_expired(rt, self.purge_pids, rows, f"r{round}")
        started, cpu = time.perf_counter(), time.process_time()
        report = rt.retention.run()
        seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
        purged = report.counts["learning_sessions"]
        return {"purge_rows_per_s": purged / seconds, "purge_cpu_rows_per_s": purged / cpu_s, "purged": purged}

    def close(self) -> None:
        for rt in (self.dsr, self.purge):
            if rt is not None:
                rt.close()


def main() -> None:
    side = Side()
    for line in sys.stdin:
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            break
        try:
            answer = getattr(side, op)(**request)
        except Exception as exc:  # the driver prints it and stops
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    side.close()


if __name__ == "__main__":
    main()
