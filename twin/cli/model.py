"""``twin model fit|recompute|parameters``: the learner model's skill parameters."""

from __future__ import annotations

import json

import click

from ..storage.progress import report
from .plumbing import CommandError, command, group, load_deployment, open_runtime

model = group("model", "Fit the learner model's skill parameters from the evidence, and list them.")


def _actor():  # -> compliance.audit.Actor
    from compliance.audit import Actor
    return Actor("script:model_fit", "operator")


def _skills(values: tuple[str, ...]) -> list[tuple[str, str]] | None:
    skills = []
    for value in values:
        domain, sep, topic = value.partition("/")
        if not sep or not domain or not topic:
            raise CommandError(f"--skill takes DOMAIN/TOPIC, got {value!r}")
        skills.append((domain, topic))
    return skills or None


@command(model, "fit")
@click.option("--skill", "skills", multiple=True, metavar="DOMAIN/TOPIC",
              help="fit only this skill (repeatable; default: every skill with evidence)")
@click.option("--min-learners", type=click.IntRange(min=1), default=None,
              help="fewer learners than this: the defaults apply (default 50)")
@click.option("--min-observations", type=click.IntRange(min=1), default=None,
              help="fewer observations than this: the defaults apply (default 500)")
@click.option("--no-recompute", is_flag=True,
              help="adopt the new parameters without recomputing existing estimates now")
def fit(skills: tuple[str, ...], min_learners: int | None, min_observations: int | None,
        no_recompute: bool) -> int:
    """Fit each skill's BKT parameters by EM over every learner's evidence, store new versions,
    then recompute the estimates made under older ones (in batches, with progress). Reads the
    evidence through the normal decryption path into memory only; records one audit event per
    run. Prints the report as JSON. Safe next to a running service."""
    options = {name: value for name, value in (("min_learners", min_learners),
                                               ("min_observations", min_observations)) if value}
    chosen = _skills(skills)
    runtime = open_runtime(load_deployment())
    try:
        result = runtime.model_fitting.fit(_actor(), skills=chosen, progress=report, **options).to_dict()
        if not no_recompute:
            result["recomputed"] = runtime.model_fitting.recompute(_actor(), progress=report)
    finally:
        runtime.close()
    click.echo(json.dumps(result, indent=2))
    return 0


@command(model, "recompute")
@click.option("--batch-size", type=click.IntRange(min=1), default=200, show_default=True,
              help="knowledge states per transaction")
def recompute(batch_size: int) -> int:
    """Recompute every estimate made under an older version of its skill's parameters (what
    `fit` does after adopting new ones; run it if a fit was stopped before). Prints counts."""
    runtime = open_runtime(load_deployment())
    try:
        counts = runtime.model_fitting.recompute(_actor(), batch_size=batch_size, progress=report)
    finally:
        runtime.close()
    click.echo(json.dumps(counts, indent=2))
    return 0


@command(model, "parameters")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def parameters(as_json: bool) -> int:
    """The fitted parameters each skill uses now (skills not listed use the defaults)."""
    from ..learner_model import DEFAULT_PARAMETERS

    runtime = open_runtime(load_deployment())
    try:
        rows = runtime.skill_parameters.all_current()
    finally:
        runtime.close()
    if as_json:
        click.echo(json.dumps({"defaults": DEFAULT_PARAMETERS.to_dict(), "skills": rows}, indent=2))
        return 0
    d = DEFAULT_PARAMETERS
    click.echo(f"defaults {d.version}: prior {d.prior} learn {d.learn} slip {d.slip} guess {d.guess} "
               f"forget {d.forget}")
    for r in rows:
        click.echo(f"{r['domain']}/{r['topic']}  {r['version']}  prior {r['prior']:.3f} learn {r['learn']:.3f} "
                   f"slip {r['slip']:.3f} guess {r['guess']:.3f} forget {r['forget']:.3f}  "
                   f"({r['learners']} learners, {r['observations']} observations, since {r['since']})")
    return 0


COMMAND = model
