"""DSR export and erasure whatever the subject's history: the export streams in one pass with
memory that does not grow with the number of rows, and erasure deletes in set-based statements."""

from __future__ import annotations

import json
import tracemalloc
from datetime import timedelta

from dsr_checks import ADMIN_ACTOR
from twin.learners.tables import SESSIONS
from twin.storage.timestamps import to_db

_COLUMNS = ("session_id", "profile_id", "session_type", "start_time", "topics_covered",
            "performance_metrics", "engagement_score", "completion_status")


def add_sessions(runtime, subject, count: int) -> None:
    """``count`` sessions of the subject, sealed under their key, inserted in one transaction
    (the services would take minutes for a 20k-session history)."""
    sealer = runtime.keys.writer(subject.subject_hash)
    now = runtime.clock()
    rows = []
    for i in range(count):
        session_id = f"ses_{subject.marker}_{i:06d}"
        values = {"session_id": session_id, "profile_id": subject.profile_id, "session_type": "lesson",
                  "start_time": to_db(now - timedelta(seconds=i)), "topics_covered": [f"topic-{i}"],
                  "performance_metrics": {"score": i % 100, "note": f"n{i}"},
                  "engagement_score": 0.5, "completion_status": "completed"}
        rows.append([SESSIONS.seal(sealer, session_id, c, values[c]) if c in SESSIONS.sealed_columns
                     else values[c] for c in _COLUMNS])
    runtime.twin_db.write(lambda conn: conn.executemany(SESSIONS.insert_sql(_COLUMNS), rows))


def streamed_export(runtime, subject, keep: bool = False) -> tuple[int, dict[str, int], str]:
    """Read the subject's export out chunk by chunk (as the HTTP route sends it) under
    tracemalloc: the peak of Python memory, the rows sent per section and (``keep``) the text.
    Batches of 200 rows: the bound is the batch, so a small one shows it with fewer rows."""
    counts: dict[str, int] = {}
    kept = []
    tracemalloc.start()
    try:
        for chunk in runtime.dsr.export_chunks(subject.subject_hash, counts, batch=200):
            if keep:
                kept.append(chunk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, counts, "".join(kept)


def test_the_export_is_complete_and_its_memory_does_not_grow_with_the_history(runtime, make_subject):
    small = make_subject("small-history", sessions=0, knowledge=1)
    large = make_subject("large-history", sessions=0, knowledge=1)
    add_sessions(runtime, small, 1_000)
    add_sessions(runtime, large, 10_000)
    streamed_export(runtime, small)  # first use: imports and statement caches are not the export's

    small_peak, small_counts, text = streamed_export(runtime, small, keep=True)
    large_peak, large_counts, _ = streamed_export(runtime, large)

    assert small_counts["sessions"] == 1_000 and large_counts["sessions"] == 10_000
    document = json.loads(text)
    by_id = {s["session_id"]: s for s in document["sessions"]}
    assert len(by_id) == 1_000
    assert by_id[f"ses_{small.marker}_000234"]["performance_metrics"] == {"score": 34, "note": "n234"}
    assert by_id[f"ses_{small.marker}_000234"]["topics_covered"] == ["topic-234"]
    # Ten times the rows (the large document is about 3 MB of JSON): the same peak, within a
    # small factor, and far below what holding the document would take.
    assert large_peak < 1.5 * small_peak, (small_peak, large_peak)
    assert large_peak < 1_500_000, large_peak


def test_erasing_a_long_history_deletes_every_row_and_the_key(runtime, make_subject):
    subject = make_subject("long-history", sessions=1, knowledge=1)
    bystander = make_subject("bystander", sessions=1, knowledge=1)
    add_sessions(runtime, subject, 5_000)

    receipt = runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)

    assert receipt.verified and receipt.subject_key_destroyed
    assert receipt.counts["learning_sessions"] == 5_001
    left = runtime.twin_db.query_one("SELECT count(*) FROM learning_sessions WHERE profile_id = ?",
                                     (subject.profile_id,))[0]
    assert left == 0
    assert runtime.twin_db.query_one("SELECT count(*) FROM learning_sessions WHERE profile_id = ?",
                                     (bystander.profile_id,))[0] == 1
