"""The README's Operations section says what the code does: the `twin serve` flags are the
command's real ones, every problem type and metric is documented."""

from __future__ import annotations

import re
import subprocess
import sys

from live_service import REPO

README = (REPO / "README.md").read_text()


def _serve_usage() -> str:
    section = README[README.index("### Serving: `twin serve`"):]
    return section[section.index("```") + 3:section.index("```", section.index("```") + 3)]


def test_the_serve_flags_in_the_readme_are_the_commands_real_flags():
    done = subprocess.run([sys.executable, "-m", "twin.cli", "serve", "--help"], capture_output=True,
                          text=True, timeout=60, cwd=REPO)
    assert done.returncode == 0, done.stderr
    real = set(re.findall(r"--[a-z][a-z-]+", done.stdout)) - {"--help"}

    assert set(re.findall(r"--[a-z][a-z-]+", _serve_usage())) == real


def test_every_problem_type_and_metric_is_documented(config):
    from twin.api.problems import PROBLEM_TYPES
    from twin.metrics import observe_request, render, scrape_registry

    for slug in PROBLEM_TYPES:
        assert f"| `{slug}` |" in README, slug
    observe_request("GET", "/healthz", 200, 0.001)  # the metrics exist once something was counted
    exposed = re.findall(r"^# TYPE (twin_\w+) ", render(scrape_registry(config)).decode(), re.M)
    assert len(exposed) >= 8
    for metric in exposed:
        if not metric.endswith("_created"):  # prometheus-client's companion series
            assert f"`{metric}`" in README, metric
