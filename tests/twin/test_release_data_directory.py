"""A data directory written by release b8c13d3 opens, migrates in place and serves what it held.

The fixture (tests/fixtures/release_b8c13d3/, see its README) was made by that release's code
through its public services; its keyring is a throwaway test keyring packed with it.
"""

from __future__ import annotations

import json
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest

from compliance.audit import Actor
from twin.catalog import DATABASES, migrator_for, open_database
from twin.config import Config
from twin.learners.errors import NotFoundError
from twin.runtime import Runtime
from twin.storage.timestamps import from_db

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "release_b8c13d3" / "data.tar.gz"
READER = Actor("tok_release_test", "service")


@pytest.fixture
def release(tmp_path):
    """(config, keyring, expected) of the unpacked fixture, with a clock one day after it was made."""
    with tarfile.open(FIXTURE) as tar:
        tar.extractall(tmp_path, filter="data")
    expected = json.loads((tmp_path / "expected.json").read_text())
    config = Config(env="test", data_dir=tmp_path / "data", keyring_path=tmp_path / "keys" / "keyring.json",
                    model_dir=tmp_path / "data" / "models", environ={})
    made = from_db(expected["adult"]["created_at"])
    return config, expected, (lambda: made + timedelta(days=1))


def test_every_database_of_the_release_migrates_in_place_to_the_current_schema(release):
    config, _, _ = release
    runtime = Runtime.open(config)  # loads the packed keyring, migrates, re-applies tombstones
    try:
        for name in DATABASES:
            db = open_database(name, config, runtime.keyring.database_keys)
            try:
                status = migrator_for(db).status()
                assert status.up_to_date, name
                assert [r[0] for r in db.query("PRAGMA integrity_check")] == ["ok"], name
            finally:
                db.close_all()
    finally:
        runtime.close()


def test_the_release_learner_data_reads_back_through_the_current_services(release):
    config, expected, clock = release
    runtime = Runtime.open(config, clock=clock)
    try:
        adult = expected["adult"]
        view, _ = runtime.profiles.get(READER, None, adult["profile_id"])
        assert view == adult
        session, _ = runtime.sessions.get(READER, None, expected["session_id"])
        assert session["topics_covered"] == ["fractions", "ratios"]
        assert session["performance_metrics"] == {"score": 0.75}
        (state,) = runtime.knowledge.list(READER, None, adult["profile_id"])
        assert (state["domain"], state["learning_trajectory"]) == ("math", {"steps": [0.2, 0.4, 0.6]})
        assert runtime.profiles.get(READER, None, expected["child"]["profile_id"])[0] == expected["child"]
        (consent,) = runtime.consents.list(READER, None, expected["child"]["profile_id"])
        assert consent["method"] == "signed_form"
        assert runtime.holds.list_active() == [expected["hold"]]
        with pytest.raises(NotFoundError):
            runtime.profiles.get(READER, None, expected["erased_profile_id"])
        assert runtime.tokens.verify(expected["admin_token"]).role == "admin"
        assert runtime.tokens.verify(expected["learner_token"]).subject_hash == runtime.hasher.hash("fixture-adult")

        doc = runtime.dsr.export(runtime.hasher.hash("fixture-adult"))
        assert doc["profiles"][0]["personal"] == {"name": "Ada Fixture"}
        assert doc["knowledge_states"][0]["learning_trajectory"] == {"steps": [0.2, 0.4, 0.6]}
        assert {"create", "read", "update"} <= {e["action"] for e in doc["disclosures"]}

        result = runtime.audit.verify()
        assert result.ok and result.checked >= expected["audit_events"]
    finally:
        runtime.close()


def test_a_knowledge_state_of_the_release_is_a_manual_value_its_new_evidence_continues_from(release):
    config, expected, clock = release
    runtime = Runtime.open(config, clock=clock)
    try:
        pid = expected["adult"]["profile_id"]
        (state,) = runtime.knowledge.list(READER, None, pid)
        assert (state["source"], state["parameters_version"]) == ("manual", None)  # set by a PUT then
        domain, topic = state["domain"], state["topic"]

        explained = runtime.knowledge.explanation(READER, None, pid, domain, topic)
        assert [s["kind"] for s in explained["steps"]] == ["manual"]
        assert explained["mastery_level"] == explained["steps"][0]["after"] == state["mastery_level"]

        runtime.evidence.ingest(READER, None, pid, [
            {"evidence_id": "after-upgrade", "domain": domain, "topic": topic, "item_id": "q",
             "correct": True, "observed_at": clock()}])
        (after,) = runtime.knowledge.list(READER, None, pid)
        explained = runtime.knowledge.explanation(READER, None, pid, domain, topic)
        assert [s["kind"] for s in explained["steps"]] == ["manual", "observation"]
        assert explained["steps"][1]["before"] == state["mastery_level"]
        assert explained["steps"][-1]["after"] == after["mastery_level"] and after["source"] == "evidence"
        assert after["learning_trajectory"] == state["learning_trajectory"]  # kept as it was
    finally:
        runtime.close()


def test_the_release_api_serves_its_tokens_and_profiles(release):
    from twin.api.app import create_app

    config, expected, clock = release
    runtime = Runtime.open(config, clock=clock)
    try:
        client = create_app(config, runtime=runtime).test_client()
        admin = {"Authorization": f"Bearer {expected['admin_token']}"}
        learner = {"Authorization": f"Bearer {expected['learner_token']}"}
        pid = expected["adult"]["profile_id"]

        assert client.get(f"/v1/profiles/{pid}", headers=admin).get_json() == expected["adult"]
        assert client.get(f"/v1/profiles/{pid}", headers=learner).status_code == 200
        assert client.get(f"/v1/profiles/{expected['child']['profile_id']}", headers=learner).status_code == 404
        erase = client.post("/v1/dsr/erase", json={"user_id": "fixture-child"}, headers=admin)
        assert erase.status_code == 409  # the release's legal hold is still in force
    finally:
        runtime.close()


def test_the_release_component_stores_read_back(release):
    from twin.evolution.store import EvolutionStore
    from twin.ledger.ledger import DatabaseLedger
    from twin.model_registry.manager import ModelManager
    from twin.rag.index import RagIndex
    from twin.settings_store.store import SettingsStore

    config, expected, _ = release
    runtime = Runtime.open(config)
    keyring = runtime.keyring
    runtime.close()
    opened = {name: open_database(name, config, keyring.database_keys) for name in
              ("ledger", "model_registry", "settings", "evolution_metrics", "rag_index")}
    try:
        ledger = DatabaseLedger(opened["ledger"])
        assert [e["id"] for e in ledger.read_ledger()] == expected["ledger_ids"]
        assert ledger.verify_chain()
        models = ModelManager(opened["model_registry"], config.model_dir)
        assert models.load_model("fixture_model") == b"fixture model bytes"
        assert models.get_active("fixture_model")["version"] == expected["model_version"]
        settings = SettingsStore.from_keyring(opened["settings"], keyring)
        assert settings.get_config("fixture_secret") == "s3cret-value"
        assert settings.get_app_setting("fixture_flag") == {"enabled": True}
        evolution = EvolutionStore(opened["evolution_metrics"])
        assert [e.agent_id for e in evolution.leaderboard(expected["evolution_round_id"])] == ["agent-a", "agent-b"]
        rag = RagIndex(opened["rag_index"], dimension=4, embedding_model="fixture-model")
        assert [r.document_id for r in rag.keyword_search("fractions")] == [expected["rag_document_id"]]
    finally:
        for db in opened.values():
            db.close_all()


def test_the_release_audit_trail_keeps_verifying_and_continues_in_the_compact_form(release):
    config, expected, clock = release
    runtime = Runtime.open(config, clock=clock)
    try:
        legacy = runtime.vault_db.query_one("SELECT count(*), max(seq) FROM audit_events")
        assert legacy[0] >= expected["audit_events"] > 0  # the release's rows, left as they were
        adult = runtime.hasher.hash("fixture-adult")
        before = [e.to_dict() for e in runtime.audit.iter_subject(adult)]

        runtime.profiles.get(READER, None, expected["adult"]["profile_id"])
        runtime.audit.flush()

        (new,) = runtime.vault_db.query("SELECT seq FROM audit_log")
        assert new[0] == legacy[1] + 1  # one sequence across both tables
        after = list(runtime.audit.iter_subject(adult))
        assert [e.to_dict() for e in after[:-1]] == before
        assert after[-1].prev_hash == runtime.audit.query(after_seq=legacy[1] - 1)[0].event_hash
        assert (after[-1].action, after[-1].subject_hash) == ("read", adult)
        result = runtime.audit.verify()
        assert result.ok and result.checked == legacy[0] + 1
        exported = runtime.dsr.export(adult)["disclosures"]
        assert exported[:len(after)] == [e.to_dict() for e in after]  # then the export's own event

        # Retention cuts through the legacy rows into the compact ones; the rest still verifies.
        assert runtime.audit.purge_older_than(clock() + timedelta(days=1)) == legacy[0] + 1
        assert runtime.vault_db.query("SELECT * FROM audit_subjects") == []
        runtime.profiles.get(READER, None, expected["adult"]["profile_id"])
        runtime.audit.flush()
        assert runtime.audit.verify().ok and runtime.audit.verify().checked == 1
    finally:
        runtime.close()
