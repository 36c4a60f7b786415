"""The privacy vault as a personal-data provider: a subject's export carries their record of
disclosures, every audit event naming them and no one else's, oldest first, read from the trail
batch by batch and sent in batches; the section keeps its name whatever the descriptor says."""

from __future__ import annotations

import dataclasses

from compliance.audit import Actor
from compliance.vault_provider import VaultProvider

SERVICE = Actor("tok_test_service", "service")
ALICE, BOB = "a" * 64, "b" * 64


def record(runtime, subject: str, *request_ids: str) -> None:
    runtime.audit.record_many([(SERVICE, "read", {"subject_hash": subject, "request_id": r})
                               for r in request_ids])
    runtime.audit.flush()


def provider_with_trail(runtime, **trail) -> VaultProvider:
    """The runtime's vault provider, its audit_events descriptor changed by ``trail``."""
    tables = [dataclasses.replace(t, **trail) if t.name == "audit_events" else t
              for t in runtime.registry.for_database(runtime.vault_db.name)]
    return VaultProvider(runtime.vault_db, tables, runtime.audit)


def exported(provider: VaultProvider, subject: str, batch: int) -> tuple[str, list[list[str]]]:
    """The provider's one export section: its name and the request ids of each batch sent."""
    ((name, batches),) = list(provider.export(subject, None, batch))
    return name, [[event["request_id"] for event in rows] for rows in batches]


def test_the_export_holds_every_event_naming_the_subject_and_none_about_anyone_else(runtime):
    record(runtime, ALICE, "a1")
    record(runtime, BOB, "b1")
    record(runtime, ALICE, "a2", "a3")

    disclosures = runtime.dsr.export(ALICE)["disclosures"]

    assert [e["request_id"] for e in disclosures] == ["a1", "a2", "a3"]
    assert {e["subject_hash"] for e in disclosures} == {ALICE}
    assert [e["request_id"] for e in runtime.dsr.export(BOB)["disclosures"]] == ["b1"]


def test_the_record_is_sent_in_batches_of_the_exports_size(runtime):
    record(runtime, ALICE, "a1", "a2", "a3", "a4", "a5")

    assert exported(provider_with_trail(runtime), ALICE, batch=2) == \
        ("disclosures", [["a1", "a2"], ["a3", "a4"], ["a5"]])
    assert exported(provider_with_trail(runtime), ALICE, batch=5)[1] == [["a1", "a2", "a3", "a4", "a5"]]


def test_the_trail_is_read_a_batch_at_a_time_so_an_event_recorded_while_the_export_streams_is_in_it(
        runtime):
    record(runtime, ALICE, "a1", "a2", "a3", "a4", "a5")
    ((_, batches),) = list(provider_with_trail(runtime).export(ALICE, None, 2))

    first = next(batches)
    record(runtime, ALICE, "a6")  # past what the export has read so far
    rest = list(batches)

    assert [e["request_id"] for e in first] == ["a1", "a2"]
    assert [[e["request_id"] for e in rows] for rows in rest] == [["a3", "a4"], ["a5", "a6"]]


def test_the_section_is_named_as_the_trails_descriptor_says_and_disclosures_when_it_says_nothing(runtime):
    record(runtime, ALICE, "a1")

    assert exported(provider_with_trail(runtime, export_as="record_of_disclosures"), ALICE, 10) == \
        ("record_of_disclosures", [["a1"]])
    assert exported(provider_with_trail(runtime, export_as=None), ALICE, 10) == ("disclosures", [["a1"]])
