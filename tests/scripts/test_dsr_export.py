"""scripts/dsr_export.py (``twin dsr export``): an export that fails midway leaves no
decrypted personal data behind."""

from __future__ import annotations

from click.testing import CliRunner

from compliance.audit import Actor
from compliance.dsr import DataSubjectRequests
from twin.cli import cli
from twin.config import Config
from twin.runtime import Runtime


def test_an_export_failing_midway_removes_its_partial_file(env, keyring, tmp_path, monkeypatch):
    for name in ("TWIN_DATA_DIR", "TWIN_KEYRING_PATH"):
        monkeypatch.setenv(name, env[name])
    rt = Runtime.open(Config.from_env())
    rt.profiles.create(Actor("t", "admin"), None, {"user_id": "subject-9", "personal": {"nickname": "Numbat"}})
    rt.close()

    real_export = DataSubjectRequests.export_chunks

    def export_then_fail(self, *args, **kwargs):
        chunks = real_export(self, *args, **kwargs)
        yield next(chunks)
        raise RuntimeError("disk vanished mid-export")

    monkeypatch.setattr(DataSubjectRequests, "export_chunks", export_then_fail)
    out = tmp_path / "export.json"
    result = CliRunner().invoke(cli, ["dsr", "export", "--user-id", "subject-9", "--out", str(out)])
    assert result.exit_code == 2
    assert "unexpected RuntimeError: disk vanished mid-export" in result.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("export")) == []
