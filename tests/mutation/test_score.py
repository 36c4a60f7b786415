"""The mutation score's bookkeeping (mutation/score.py): which survivors count as equivalent."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("mutation_score", ROOT / "mutation" / "score.py")
score = importlib.util.module_from_spec(_spec)
sys.modules["mutation_score"] = score  # dataclasses look their module up there
_spec.loader.exec_module(score)
Diff = score.Diff


def diff(before: str, after: str) -> "score.Diff":
    return Diff(before, after, "")


def test_a_change_of_letter_case_in_sql_text_is_equivalent():
    assert score.sql_letter_case(diff('conn.execute("DELETE FROM subject_keys WHERE user_id_hash = ?", (h,))',
                                      'conn.execute("delete from subject_keys where user_id_hash = ?", (h,))'))


@pytest.mark.parametrize("before, after", [
    ('raise KeyMissing("the subject has no data key")', 'raise KeyMissing("THE SUBJECT HAS NO DATA KEY")'),
    ('x("SELECT a FROM t", "Label")', 'x("SELECT a FROM t", "LABEL")'),           # SQL on the line, not changed
    ('x("SELECT a FROM t")', 'x("SELECT a FROM t WHERE 0")'),                      # not a case change
    ('x("SELECT a FROM t", upper)', 'x("select a from t", lower)'),                # code outside the string too
])
def test_other_changes_near_sql_are_not(before, after):
    assert not score.sql_letter_case(diff(before, after))


def test_a_change_of_letter_case_in_a_row_column_name_is_equivalent_and_nothing_else_is():
    assert score.row_key_letter_case(diff('wrap(row["wrapped_key"], row["user_id_hash"])',
                                          'wrap(row["WRAPPED_KEY"], row["user_id_hash"])'))
    assert not score.row_key_letter_case(diff('f(row["a"], "Message")', 'f(row["a"], "MESSAGE")'))
    assert not score.row_key_letter_case(diff('f(row["a"])', 'f(row["b"])'))


def test_every_listed_equivalent_names_a_scored_module_and_says_why():
    config, equivalents = score.load_config()
    for entry in equivalents:
        assert entry.why.strip()
        if isinstance(entry, score.Equivalent):
            assert entry.module in config["modules"], entry.module
            assert entry.before.strip() != entry.after.strip()
    for module, listed in config["modules"].items():
        assert (ROOT / module).is_file(), module
        assert listed["tests"] and all((ROOT / t).is_file() for t in listed["tests"]), module


def test_the_score_counts_equivalents_as_caught():
    s = score.Score("compliance/x.py", mutants=40, killed=37, equivalent=1)
    assert s.percent == pytest.approx(95.0)


def test_survivors_are_re_run_only_against_the_test_list_of_their_run(tmp_path, monkeypatch):
    """mutmut forgets every result when the tests it selects change: re-running the survivors
    would run the whole module again, so it is refused and the workspace left as it was."""
    root, module = tmp_path / "root", "compliance/m.py"
    for package in ("compliance", "twin", "tests"):
        (root / package).mkdir(parents=True)
    (root / module).write_text("x = 1\n")
    (root / "pyproject.toml").write_text("")
    (root / "setup.cfg").write_text("[tool:pytest]\n")
    monkeypatch.setattr(score, "ROOT", root)
    monkeypatch.setattr(score, "WORK", tmp_path / "work")
    ws = tmp_path / "work" / "m"
    (ws / "compliance").mkdir(parents=True)
    (ws / module).write_text("x = 1\n")
    score.write_config(ws, module, ["tests/test_m.py"], ["-p", "no:cacheprovider"])
    before = (ws / "setup.cfg").read_text()

    with pytest.raises(SystemExit) as refused:
        score.refreshed_workspace(module, ["tests/test_m.py", "tests/test_more.py"], ["-p", "no:cacheprovider"])
    assert str(refused.value) == f"{module}: its tests or pytest_args changed since its last run: run it in full again"
    with pytest.raises(SystemExit):
        score.refreshed_workspace(module, ["tests/test_m.py"], [])
    assert (ws / "setup.cfg").read_text() == before and not (ws / "twin").exists()

    assert score.refreshed_workspace(module, ["tests/test_m.py"], ["-p", "no:cacheprovider"]) == ws
    assert (ws / "setup.cfg").read_text() == before and (ws / "twin").is_dir()
