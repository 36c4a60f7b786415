"""scripts/dsr_export.py: an export that fails midway leaves no decrypted personal data behind."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from compliance.audit import Actor
from compliance.dsr import DataSubjectRequests
from twin.config import Config
from twin.runtime import Runtime

ROOT = Path(__file__).resolve().parents[2]


def _load_script():
    spec = importlib.util.spec_from_file_location("dsr_export_script", ROOT / "scripts" / "dsr_export.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    script = _load_script()
    out = tmp_path / "export.json"
    args = script.build_parser().parse_args(["--user-id", "subject-9", "--out", str(out)])
    with pytest.raises(RuntimeError, match="mid-export"):
        script.main(args)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("export")) == []
