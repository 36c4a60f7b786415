"""Audit trail at platform scale (issue 15), each figure next to a baseline of the same run.

- bytes per event in the vault file after VACUUM (indexes included, request ids at 64
  characters): the compact form (target <= 150 B) against the legacy form of the releases before
  vault migration 6; the PostgreSQL figure (table, indexes and TOAST of the compact tables);
- append throughput in the API's batching pattern (events staged to the journal by 4 threads,
  chained by the flusher in batches) against the same appends one ``record`` per event;
- ``verify`` at 100k, 1M and 10M events, in full and from the newest verified seal (target
  < 2 s at 10M), against the legacy form's full verify (at 100k and 1M: 10M legacy events
  would take ~4 GB);
- one subject's record of disclosures at 10M events (target < 50 ms) against the same lookup
  without the subject index (a scan);
- vault size before and after archival (all but the newest seal range, at 1M events), the
  archive's size, verify after it, and a subject's archived disclosures through the subject
  index against reading every segment.

Trails are bulk-built with the project's own codec, hashes and seals (bench/_audit_fill.py;
the 10M-event trails with the subject index built after the rows, as a bulk load does).
The machine is shared: read the ratios, not only the absolute figures.

    .venv/bin/python bench/audit.py [--quick] [--sizes 100000,1000000,10000000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _audit_fill import STEP_US, T0_US, Population, fill_compact, fill_legacy  # noqa: E402

from compliance import audit_archive_index as archive_index  # noqa: E402
from compliance.audit_archive import AuditArchive  # noqa: E402
from compliance.audit_archive_segments import FileSegments, archive_dir  # noqa: E402

from compliance.audit import Actor, AuditTrail  # noqa: E402
from compliance.audit_journal import AuditJournal, audit_journal_dir  # noqa: E402
from compliance.audit_seals import SealBook  # noqa: E402
from compliance.field_crypto import FieldCipher  # noqa: E402
from compliance.keyring import Keyring  # noqa: E402
from twin.catalog import open_database  # noqa: E402
from twin.config import Config  # noqa: E402

KEYRING = Keyring.generate()
SEAL_EVERY = 10_000


def fresh_vault(root: Path, name: str):
    config = Config(env="test", data_dir=root / name, keyring_path=root / "keys.json",
                    model_dir=root / "models", environ={})
    return open_database("privacy_vault", config, KEYRING.database_keys)


def file_bytes(vault) -> int:
    vault.execute("VACUUM")
    vault.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(p.stat().st_size for p in vault.path.parent.glob(vault.path.name + "*"))


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bytes_per_event(root: Path, events: int) -> None:
    people = Population.make(max(100, events // 100))
    compact, legacy = fresh_vault(root, "size-compact"), fresh_vault(root, "size-legacy")
    empty_compact = file_bytes(compact)
    fill_compact(compact, events, people)
    fill_legacy(legacy, events, people)
    c = file_bytes(compact) / events
    lg = file_bytes(legacy) / events
    print(f"bytes/event SQLCipher at {events:,} events: compact {c:.1f} B (target <= 150), legacy {lg:.1f} B, "
          f"ratio {c / lg:.2f} (empty vault {empty_compact:,} B included)")
    compact.close_all()
    legacy.close_all()
    postgresql_bytes(events, people)


def postgresql_bytes(events: int, people: Population) -> None:
    try:
        import psycopg

        from compliance.vault_schema import MIGRATIONS
        from twin.storage import Migration, Migrator, PostgresSettings, open_postgresql
        admin_url = os.environ.get("TWIN_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        name = f"twin_bench_audit_{os.getpid()}"
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # no server: say so, measure the rest
        print(f"bytes/event PostgreSQL: not measured ({type(exc).__name__}: {str(exc).splitlines()[0]})")
        return
    try:
        db = open_postgresql(PostgresSettings(admin_url.rsplit("/", 1)[0] + f"/{name}", pool_size=1,
                                              pool_max_size=2), name="privacy_vault")
        (compact,) = [m for m in MIGRATIONS if m.name == "compact audit events"]
        Migrator(db, [Migration(1, compact.name, compact.up, compact.down)]).migrate()
        fill_compact(db, events, people)
        db.execute("VACUUM FULL ANALYZE audit_log")
        size = db.query_one("SELECT sum(pg_total_relation_size(c)) FROM unnest(ARRAY['audit_log', "
                            "'audit_actors', 'audit_subjects', 'audit_resources']::regclass[]) AS c")[0]
        print(f"bytes/event PostgreSQL at {events:,} events: compact {int(size) / events:.1f} B "
              "(tables, indexes, TOAST)")
        db.close_all()
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def append_throughput(root: Path, events: int) -> None:
    actor = Actor("tok_bench", "service")
    staged_vault, direct_vault = fresh_vault(root, "append-staged"), fresh_vault(root, "append-direct")
    seals = SealBook(KEYRING.audit_seal_key, SEAL_EVERY)
    staged = AuditTrail(staged_vault, seals=seals, journal=AuditJournal(
        audit_journal_dir(staged_vault.path), FieldCipher(KEYRING.field_keys, KEYRING.active_field_key)))
    direct = AuditTrail(direct_vault, seals=seals)

    def run(record) -> float:
        per_thread = events // 4

        def work(t: int) -> None:
            for i in range(per_thread):
                record(actor, "read", subject_hash=f"{(t * per_thread + i) % 1000:064x}",
                       resource=f"profile:prof_{i % 1000:022d}", request_id=f"{t:02d}{i:014x}" + "R" * 48)
        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if record == staged.stage:
            staged.flush()
        return per_thread * 4 / (time.perf_counter() - start)

    api, one_by_one = run(staged.stage), run(direct.record)
    staged.close()
    assert staged.verify().ok and direct.verify().ok
    print(f"append, API pattern (staged by 4 threads, chained in batches): {api:,.0f} events/s; "
          f"one record() per event: {one_by_one:,.0f} events/s; ratio {api / one_by_one:.1f}x")
    staged_vault.close_all()
    direct_vault.close_all()


def verify_and_lookup(root: Path, sizes: list[int]) -> None:
    for size in sizes:
        people = Population.make(max(100, size // 100))
        vault = fresh_vault(root, f"verify-{size}")
        seals = SealBook(KEYRING.audit_seal_key, SEAL_EVERY)
        build, _ = timed(lambda: fill_compact(vault, size, people, seals, index_after=True))
        trail = AuditTrail(vault, seals=seals)
        trail.record_many([(Actor("tok_bench", "service"), "read", {"subject_hash": people.subjects[i % len(people.subjects)]})
                           for i in range(1234)])  # the live tail after the newest seal
        full_s, full = timed(lambda: trail.verify(full=True))
        quick_s, quick = timed(lambda: trail.verify(full=False))
        assert full.ok and quick.ok and quick.since is not None, (full, quick)
        line = (f"verify at {size:,} events (built in {build:.0f} s, {size / build:,.0f} events/s): full "
                f"{full_s:.2f} s, from the newest seal "
                f"{quick_s * 1000:.0f} ms ({quick.checked} events; target < 2 s at 10M)")
        if size <= 1_000_000:
            legacy = fresh_vault(root, f"verify-legacy-{size}")
            fill_legacy(legacy, size, people)
            legacy_s, result = timed(lambda: AuditTrail(legacy).verify())
            assert result.ok
            line += f"; legacy full {legacy_s:.2f} s, full ratio {full_s / legacy_s:.2f}"
            legacy.close_all()
            shutil.rmtree(legacy.path.parent, ignore_errors=True)
        print(line)
        subject = people.subjects[people.of(size // 2)]
        lookup_s, events = timed(lambda: list(trail.iter_subject(subject)))
        ref = vault.query_one("SELECT subject_ref FROM audit_subjects WHERE subject_hash = ?", (subject,))[0]
        scan_s, scanned = timed(lambda: vault.query("SELECT seq FROM audit_log WHERE subject_ref + 0 = ?", (ref,)))
        assert len(events) == len(scanned) > 0
        print(f"one subject's disclosures at {size:,} events: {lookup_s * 1000:.1f} ms for {len(events)} events "
              f"(target < 50 ms at 10M); without the subject index {scan_s * 1000:.0f} ms, "
              f"ratio {lookup_s / scan_s:.3f}")
        vault.close_all()
        shutil.rmtree(vault.path.parent, ignore_errors=True)


def archival(root: Path, size: int) -> None:
    """Vault size before and after archiving all but the newest seal range, the archive's own
    size, and one subject's disclosures read from the archive through the subject index
    against reading every segment."""
    people = Population.make(max(100, size // 100))
    vault = fresh_vault(root, f"archive-{size}")
    seals = SealBook(KEYRING.audit_seal_key, SEAL_EVERY)
    cipher = FieldCipher(KEYRING.field_keys, KEYRING.active_field_key)
    store = FileSegments(archive_dir(vault.path))
    # About ten segments; a visiting subject's 50 events lie in one of them.
    segment_events = max(SEAL_EVERY, size // 10 // SEAL_EVERY * SEAL_EVERY)
    trail = AuditTrail(vault, seals=seals, archive=AuditArchive(vault, cipher, store, seals,
                                                                 segment_events=segment_events))
    half, visitor = size // 2, "f" * 64
    fill_compact(vault, half, people, seals)
    trail.record_many([(Actor("tok_bench", "service"), "read", {"subject_hash": visitor})] * 50)
    fill_compact(vault, size - half - 50, people, seals, first_seq=half + 51)
    before = file_bytes(vault)
    last_seal_at = T0_US + (size - SEAL_EVERY) * STEP_US
    archive_s, run = timed(lambda: trail.archive_older_than(iso_time(last_seal_at + 1)))
    after = file_bytes(vault)
    archived = sum(p.stat().st_size for p in store.directory.glob("*.ltaa"))
    print(f"archival at {size:,} events: {run.events:,} events into {run.segments} segments in {archive_s:.1f} s "
          f"({run.events / archive_s:,.0f} events/s); vault {before / 1e6:.1f} MB before, {after / 1e6:.1f} MB after "
          f"(ratio {after / before:.3f}); archive {archived / 1e6:.1f} MB ({archived / max(run.events, 1):.1f} B/event, "
          f"ratio to the live form {archived / before:.2f})")
    full_s, full = timed(lambda: trail.verify(full=True))
    quick_s, quick = timed(lambda: trail.verify(full=False))
    assert full.ok and quick.ok, (full, quick)
    print(f"verify after archival: full (every segment read) {full_s:.2f} s, from the newest seal "
          f"{quick_s * 1000:.0f} ms, ratio {quick_s / full_s:.4f}")
    subject = visitor
    with vault.transaction(immediate=False) as conn:
        lookup_s, events = timed(lambda: list(trail.archive.subject_events(conn, subject)))
        scan_s, scanned = timed(lambda: [row for seg in archive_index.listed(conn)
                                         for _, row in trail.archive.read(conn, seg).events
                                         if row["subject_hash"] == subject])
    assert len(events) == len(scanned) > 0, (len(events), len(scanned))
    print(f"one subject's archived disclosures at {size:,} events: {lookup_s * 1000:.0f} ms for {len(events)} "
          f"events in one of {run.segments} segments through the subject index; reading every segment "
          f"{scan_s * 1000:.0f} ms, "
          f"ratio {lookup_s / scan_s:.3f}")
    vault.close_all()
    shutil.rmtree(vault.path.parent, ignore_errors=True)


def iso_time(us: int):
    from datetime import datetime, timedelta, timezone
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=us)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--sizes", default="100000,1000000,10000000", help="verify sizes, comma-separated")
    args = parser.parse_args()
    sizes = [10_000, 50_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    root = Path(tempfile.mkdtemp(prefix="twin-bench-audit-"))
    started = time.perf_counter()
    try:
        bytes_per_event(root, 20_000 if args.quick else 1_000_000)
        append_throughput(root, 2_000 if args.quick else 40_000)
        verify_and_lookup(root, sizes)
        archival(root, 50_000 if args.quick else 1_000_000)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"whole run {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
