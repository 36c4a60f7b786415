"""What a crash leaves of a segment file half-written goes with the segment: a rewrap stopped
before its rewrapped copy was renamed into place leaves that copy's partial file, holding the
segment's events under their new wrapped key, and once retention deletes the segment nothing
of those events is left in the archive's directory."""

from __future__ import annotations

import os

import pytest

from archive_trail import append, at, segments
from compliance.audit_archive_segments import archive_dir, decode, segment_name
from compliance.field_crypto import FieldCipher


@pytest.mark.sqlite_only("segment files beside the vault; PostgreSQL rewraps a segment's row in one transaction")
def test_a_rewrap_stopped_half_written_leaves_nothing_once_retention_takes_the_segment(
        make_archiving_trail, open_catalog_db, keyring, monkeypatch):
    vault = open_catalog_db("privacy_vault")
    append(make_archiving_trail(vault), 25)
    assert make_archiving_trail(vault).archive_older_than(at(100)).segments == 2
    rotated = keyring.with_new_field_key()
    trail = make_archiving_trail(vault, FieldCipher(rotated.field_keys, rotated.active_field_key))
    directory = archive_dir(vault.path)
    half_written = directory / f"..{segment_name(1)}.rewrap.new"
    real_replace = os.replace

    def crash_before_renaming_a_rewrap(src, dst) -> None:
        if str(src).endswith(".rewrap.new"):
            raise OSError("the machine went down")
        real_replace(src, dst)
    monkeypatch.setattr(os, "replace", crash_before_renaming_a_rewrap)
    with pytest.raises(OSError):
        trail.archive.rewrap()
    monkeypatch.undo()
    assert decode(half_written.read_bytes(), 1, trail.archive._keys).last_seq == 10  # noqa: SLF001

    assert trail.purge_older_than(at(15)) == 10

    assert segments(trail) == [(11, 20)]
    assert sorted(p.name for p in directory.iterdir()) == [segment_name(11)]
    assert trail.verify(full=True).ok
