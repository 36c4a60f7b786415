"""What the audit journal's tests look at (``compliance.audit_journal``, its recovery and
``compliance.audit_staging``): events staged through a real journal, its segment files on
disk, the vault's chain and import markers, and processes that die (or end) with events
staged. The fixtures (``vault``, ``cipher``, ``journal_dir``, ``make_trail``) are in the
compliance conftest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from compliance.audit import Actor, AuditTrail
from compliance.audit_journal import SUFFIX

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE = Actor("tok_service1", "service")
ALICE = "a" * 64


def in_vault(vault) -> int:
    return vault.query_one("SELECT count(*) FROM audit_log")[0]


def segment_files(journal_dir: Path) -> list[Path]:
    return sorted(journal_dir.glob("*" + SUFFIX))


def stage_reads(trail: AuditTrail, count: int, prefix: str = "req") -> None:
    for i in range(count):
        trail.stage(SERVICE, "read", subject_hash=ALICE, resource=f"profile:prf_{prefix}{i}",
                    request_id=f"{prefix}-{i}")


def imported_markers(vault) -> list[str]:
    return [row[0] for row in vault.query("SELECT segment FROM audit_journal_imports")]


def run_child(tmp_path: Path, keyring, vault_path: Path, journal_dir: Path, body: str, *,
              die: bool = True, timeout: float = 60) -> None:
    """Run ``body`` in another Python process with ``trail`` (staging into journal_dir) bound,
    then let the process die without closing anything (``die=False``: end as a script does,
    still without closing the trail)."""
    keyring_file = tmp_path / "child-keyring.json"
    keyring.save(keyring_file)
    script = textwrap.dedent("""
        import os, sys
        from pathlib import Path
        from compliance.audit import Actor, AuditTrail
        from compliance.audit_journal import AuditJournal
        from compliance.field_crypto import FieldCipher
        from compliance.keyring import Keyring
        from twin.storage import Database
        keyring = Keyring.from_json(Path(sys.argv[1]).read_text())
        cipher = FieldCipher(keyring.field_keys, keyring.active_field_key)
        vault = Database(sys.argv[2], keyring.database_key, name="privacy_vault")
        journal = AuditJournal(sys.argv[3], cipher)
        trail = AuditTrail(vault, journal=journal, flush_delay=3600)
        actor = Actor("tok_child", "service")
    """) + textwrap.dedent(body) + ("\nos._exit(0)\n" if die else "")
    subprocess.run([sys.executable, "-c", script, str(keyring_file), str(vault_path), str(journal_dir)],
                   cwd=REPO_ROOT, check=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


CHILD_STAGES_THREE = """
for i in range(3):
    trail.stage(actor, "read", subject_hash="c" * 64, request_id=f"child-{i}")
"""
