"""What the data-subject request tests (``test_dsr_*.py``) share: the actors, an export over
HTTP and what a complete or empty export holds, a restart of the service from its keyring
file, an HTTP client on a restarted runtime, and a restore of digital_twin.db from before an
erasure (or any backup: ``stop_and_restore``)."""

from __future__ import annotations

import json
from pathlib import Path

from compliance.audit import Actor
from twin.runtime import Runtime
from twin.storage import BackupEntry, Database, backup_database, restore_database

ADMIN_ACTOR = Actor("tok_test_admin", "admin")
SERVICE_ACTOR = Actor("tok_test_service", "service")


def export_http(client, headers, user_id: str) -> dict:
    response = client.post("/v1/dsr/export", json={"user_id": user_id}, headers=headers)
    assert response.status_code == 200
    return json.loads(response.get_data())


def assert_export_empty(doc: dict) -> None:
    for key in ("profiles", "sessions", "knowledge_states", "evidence", "consents", "legal_holds"):
        assert doc[key] == [], key


def assert_export_complete(doc: dict, subject) -> None:
    """Every datum ``make_subject`` wrote about ``subject`` is in ``doc``, decrypted."""
    m = subject.marker
    (profile,) = doc["profiles"]
    assert profile["profile_id"] == subject.profile_id
    assert profile["personal"] == {"name": f"Name-{m}", "email": f"{m.lower()}@example.org"}
    assert profile["learning_goals"] == [f"goal-{m}"]
    assert profile["learning_style"] == f"visual-{m}"
    assert profile["knowledge_domains"] == [f"domain-{m}"]
    assert profile["privacy_settings"] == {"share": False}
    assert profile["birth_date"] is not None
    assert sorted(s["session_id"] for s in doc["sessions"]) == sorted(subject.session_ids)
    by_topic = {s["topics_covered"][0]: s for s in doc["sessions"]}
    assert by_topic[f"topic-{m}-1"]["performance_metrics"] == {"score": 1, "note": f"note-{m}-1"}
    assert {(k["knowledge_domain"], k["topic"]) for k in doc["knowledge_states"]} == set(subject.knowledge)
    assert {k["learning_trajectory"]["path"] for k in doc["knowledge_states"]} == \
        {f"traj-{m}-{i}" for i in range(len(subject.knowledge))}
    assert [c["consent_id"] for c in doc["consents"]] == subject.consent_ids
    assert doc["consents"][0]["details"]["consenter_name"] == f"Parent-{m}"
    assert {"create", "consent_grant"} <= {e["action"] for e in doc["disclosures"]}


def restart(runtime: Runtime, keyring, clock) -> Runtime:
    """Stop the service and start it again from its keyring file (``Runtime.open``: the start
    that re-applies tombstones)."""
    runtime.close()
    keyring.save(runtime.config.keyring_path)
    return Runtime.open(runtime.config, clock=clock)


def client_of(rt: Runtime):
    """The real HTTP app on ``rt``; ``client.service`` holds a service token's headers."""
    from twin.api.app import create_app
    client = create_app(rt.config, runtime=rt).test_client()
    client.service = {"Authorization": f"Bearer {rt.tokens.issue('service').token}"}
    return client


def stop_and_restore(runtime: Runtime, keyring, backup_dir: Path, entry: BackupEntry,
                     database: str = "twin_db") -> None:
    """Stop the service and put the backup ``entry`` back over the runtime's ``database``
    (``twin_db`` or ``vault_db``), as an operator's restore would."""
    runtime.close()
    db = getattr(runtime, database)
    restore_database(backup_dir, entry, Database(db.path, keyring.database_key, name=db.name))


def erase_then_restore_an_older_backup(runtime: Runtime, keyring, subject, tmp_path) -> None:
    """Back digital_twin.db up, erase the subject, stop the service and restore the backup."""
    backup_dir = tmp_path / "backup"
    entry = backup_database(runtime.twin_db, backup_dir)
    runtime.subject_requests.erase(ADMIN_ACTOR, None, user_id=subject.user_id)
    stop_and_restore(runtime, keyring, backup_dir, entry)
