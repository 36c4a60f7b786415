"""The audit archive in a backup set: the segments the backed-up vault lists, copied and checked.

On SQLCipher the archive's segments are files beside the vault (``compliance.audit_archive``;
on PostgreSQL they are rows of the vault, in its dump already). A backup set of the vault holds
the segments its copy of the vault lists, in ``privacy_vault.audit-archive/``, each checked
against that index's SHA-256 as it is copied, with the checksums in the manifest
(``attached["audit_archive"]``). So a restore brings back the archive the restored vault
refers to, even after retention deleted those segments from the live archive.

The vault is copied first, then the segments its copy lists: an archive run meanwhile only adds
segments of events the copy still holds live. Retention can unlist and delete a listed segment
in between: the copy is then taken again.

A restore stages the set's segments beside the live archive (``.restoring``), checks them, and
swaps the directories once the vault's file is in place: the live archive becomes exactly the
set's, as the databases become the set's (segments archived after the backup hold events the
restored vault has live, or events the restore rewinds, as it rewinds every table).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from compliance.audit_archive_index import Listed, listed
from compliance.audit_archive_segments import archive_dir, segment_name, wrap_version

from ..storage import BackupError, BackupVerificationError, Database, Manifest
from ..storage.backup import sha256_file
from ..storage.paths import fsync_path

SET_DIR = "privacy_vault.audit-archive"  # where the set keeps the segments
ATTACHED = "audit_archive"                # the manifest's record of them

Record = dict[str, Any]  # one segment: file, first_seq, last_seq, sha256, size, field_key (version)


class ArchiveChangedError(BackupError):
    """A segment the vault's copy lists is gone from the live archive or other bytes than listed
    (retention or a rewrap since the vault was copied, or damage)."""


def _listed_in(db: Database, vault_copy: Path) -> list[Listed]:
    conn = db.open_file(vault_copy, read_only=True)
    try:
        has_index = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                 "AND name = 'audit_archive_segments'").fetchone()
        return listed(conn) if has_index else []
    finally:
        conn.close()


def _copy(source: Path, dest: Path) -> None:
    """Copy durably: a temporary name, fsync, rename (a partial copy never has the final name)."""
    partial = dest.with_name(f".{dest.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(source, "rb") as src, open(fd, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(partial, dest)


def back_up(vault: Database, vault_copy: Path, out: Path) -> list[Record]:
    """Copy into ``out/SET_DIR`` every segment the vault's copy lists, each checked against the
    index's checksum; returns their records for the manifest. Raises ``ArchiveChangedError``
    when a listed segment is gone from the live archive or does not match the index: retention
    or a rewrap changed it since the vault was copied (take the vault again), or it is damaged
    (never backed up as sound: ``twin audit verify --full`` names it)."""
    live, dest = archive_dir(vault.path), Path(out) / SET_DIR
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    copied = []
    for seg in _listed_in(vault, vault_copy):
        name = segment_name(seg.first_seq)
        if not (live / name).exists():
            raise ArchiveChangedError(f"archive segment {name} left the live archive during the backup")
        _copy(live / name, dest / name)
        digest = sha256_file(dest / name)
        if bytes.fromhex(digest) != seg.checksum or (dest / name).stat().st_size != seg.bytes:
            # A rewrap can replace it meanwhile (the vault is then taken again); else it is damaged.
            raise ArchiveChangedError(f"privacy_vault: archive segment {name} does not match the vault's "
                                      "index (altered or damaged: run `twin audit verify --full`)")
        with open(dest / name, "rb") as fh:
            header = fh.read(4096)
        copied.append({"file": name, "first_seq": seg.first_seq, "last_seq": seg.last_seq,
                       "sha256": digest, "size": seg.bytes, "field_key": wrap_version(header)})
    wanted = {r["file"] for r in copied}
    for stale in dest.iterdir():  # an earlier attempt's copy of a segment retention took
        if stale.name not in wanted:
            stale.unlink()
    fsync_path(dest)
    return copied


def records(manifest: Manifest) -> list[Record] | None:
    """The set's archive segments, or None for a set taken before the archive was backed up."""
    return manifest.attached.get(ATTACHED)


def problems(directory: Path, manifest: Manifest, vault: Database, vault_file: str) -> list[str]:
    """What is wrong with the set's archive, one line each: a segment missing or altered in the
    set, or the set's vault listing another archive than the manifest. None for a set taken
    before the archive was backed up (its manifest records none: the live archive is kept)."""
    listed_in_set = records(manifest)
    if listed_in_set is None:
        return []
    found = []
    for rec in listed_in_set:
        path = Path(directory) / SET_DIR / rec["file"]
        if not path.exists():
            found.append(f"privacy_vault: archive segment {rec['file']} is missing from the backup set")
        elif path.stat().st_size != rec["size"] or sha256_file(path) != rec["sha256"]:
            found.append(f"privacy_vault: archive segment {rec['file']} fails its checksum "
                         "(changed since the backup)")
    in_index = {(s.first_seq, s.checksum.hex()) for s in _listed_in(vault, Path(directory) / vault_file)}
    if in_index != {(r["first_seq"], r["sha256"]) for r in listed_in_set}:
        found.append("privacy_vault: the backed-up vault lists other archive segments than the "
                     "backup set holds")
    return found


def _staging(live: Path) -> Path:
    return live.with_name(live.name + ".restoring")


def stage(directory: Path, manifest: Manifest, vault_path: Path) -> Path | None:
    """Copy the set's segments beside the live archive, each checked again after the copy;
    returns the staged directory (None: the set records no archive, the live one stays)."""
    listed_in_set = records(manifest)
    if listed_in_set is None:
        return None
    staged = _staging(archive_dir(vault_path))
    shutil.rmtree(staged, ignore_errors=True)  # an interrupted restore's
    staged.mkdir(mode=0o700, parents=True)
    for rec in listed_in_set:
        _copy(Path(directory) / SET_DIR / rec["file"], staged / rec["file"])
        if sha256_file(staged / rec["file"]) != rec["sha256"]:
            raise BackupVerificationError(f"privacy_vault: archive segment {rec['file']} changed while "
                                          "being restored")
    fsync_path(staged)
    return staged


def swap_in(staged: Path, vault_path: Path) -> None:
    """Make the staged segments the live archive (the vault's restored file refers to them)."""
    live = archive_dir(vault_path)
    replaced = live.with_name(live.name + ".replaced")
    shutil.rmtree(replaced, ignore_errors=True)
    if live.exists():
        os.replace(live, replaced)
    os.replace(staged, live)
    fsync_path(live.parent)
    shutil.rmtree(replaced, ignore_errors=True)
