"""EM fitting per skill: recovers known parameters, falls back to defaults on thin evidence."""

import math

import numpy as np
import pytest

from twin.learner_model import (DEFAULT_PARAMETERS, MIN_LEARNERS, MIN_OBSERVATIONS,
                                InvalidObservationError, InvalidParametersError, LearnerModelError,
                                MasteryTrace, Observation, SkillParameters, fit_skill)
from twin.learner_model.bkt import predict_correct
from twin.learner_model.fitting import _Data, _em_step, _starts, pad
from twin.learner_model.synthetic import draw_parameters, simulate

from .conftest import at

NAMES = ("prior", "learn", "slip", "guess")


def mae(fitted: SkillParameters, true: SkillParameters) -> float:
    return float(np.mean([abs(getattr(fitted, n) - getattr(true, n)) for n in NAMES]))


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_fitted_parameters_recover_the_ones_that_generated_the_data(seed):
    # 500 learners x 20 observations (issue 16's benchmark size). The target is a mean absolute
    # error of at most 0.05; the fit's own standard error at 10,000 observations is about
    # 0.01-0.02 per parameter, so 0.05 holds with room while still catching a biased fit, and no
    # single parameter may be off by more than 0.08.
    rng = np.random.default_rng(seed)
    true = draw_parameters(rng)
    skill = simulate(true, 500, 20, rng)
    result = fit_skill(list(skill.outcomes))
    assert result.fitted and result.converged
    assert (result.learners, result.observations) == (500, 10_000)
    assert mae(result.parameters, true) <= 0.05
    for name in NAMES:
        assert getattr(result.parameters, name) == pytest.approx(getattr(true, name), abs=0.08)


def test_forgetting_can_be_fitted_too():
    rng = np.random.default_rng(5)
    true = SkillParameters(prior=0.3, learn=0.2, slip=0.1, guess=0.2, forget=0.1, version="x")
    result = fit_skill(list(simulate(true, 500, 20, rng).outcomes), fit_forget=True)
    assert result.parameters.forget == pytest.approx(0.1, abs=0.04)
    assert fit_skill(list(simulate(true, 100, 10, rng).outcomes)).parameters.forget == 0.0


def test_the_fit_and_the_online_update_are_one_model():
    # the log-likelihood EM reports is the sum of log P(response | earlier responses) that the
    # online trace predicts, step by step, under the fitted parameters
    rng = np.random.default_rng(3)
    skill = simulate(draw_parameters(rng), 60, 12, rng)
    result = fit_skill(list(skill.outcomes))
    total = 0.0
    for row in skill.outcomes:
        trace = MasteryTrace(result.parameters)
        for step, outcome in enumerate(row):
            predicted = predict_correct(trace.mastery_level, result.parameters)
            total += math.log(predicted if outcome == 1.0 else 1 - predicted)
            trace.observe(Observation(f"e{step}", at(step), correct=bool(outcome)))
    assert result.log_likelihood == pytest.approx(total, rel=1e-9)


def test_each_em_iteration_raises_the_likelihood_of_every_restart():
    rng = np.random.default_rng(4)
    outcomes, mask = pad(list(simulate(draw_parameters(rng), 200, 15, rng).outcomes))
    data = _Data.of(outcomes, mask)
    params = _starts(4, 0, False, DEFAULT_PARAMETERS)
    history = []
    for _ in range(15):
        params, log_likelihood = _em_step(data, params, False)
        history.append(log_likelihood)
    assert np.all(np.diff(np.array(history), axis=0) >= -1e-9)
    for name in ("slip", "guess"):
        assert np.all(params[name] < 0.5)


def test_ragged_sequences_are_fitted():
    rng = np.random.default_rng(8)
    true = draw_parameters(rng)
    skill = simulate(true, 500, 20, rng)
    lengths = rng.integers(5, 21, size=500)
    ragged = [list(row[:n]) for row, n in zip(skill.outcomes, lengths)] + [[]]
    result = fit_skill(ragged)
    assert result.learners == 500 and result.observations == int(lengths.sum())
    assert mae(result.parameters, true) <= 0.05


def test_scores_are_fitted_as_the_same_soft_evidence_the_online_update_uses():
    rng = np.random.default_rng(8)
    skill = simulate(draw_parameters(rng), 300, 15, rng)
    binary = fit_skill(list(skill.outcomes)).parameters
    nearly = fit_skill([[0.99 if o else 0.01 for o in row] for row in skill.outcomes]).parameters
    assert mae(nearly, binary) < 0.02
    # EM's log-likelihood of scored data is the online trace's: sum of log P(score | earlier),
    # P(s) = p·(1-slip)^s·slip^(1-s) + (1-p)·guess^s·(1-guess)^(1-s)
    scored = [[float(x) for x in np.clip(row * 0.8 + rng.random(15) * 0.2, 0, 1)]
              for row in skill.outcomes]
    result = fit_skill(scored)
    assert result.converged
    params, total = result.parameters, 0.0
    for row in scored:
        trace = MasteryTrace(params)
        for step, s in enumerate(row):
            p = trace.mastery_level
            total += math.log(p * (1 - params.slip) ** s * params.slip ** (1 - s)
                              + (1 - p) * params.guess ** s * (1 - params.guess) ** (1 - s))
            trace.observe(Observation(f"e{step}", at(step), score=s))
    assert result.log_likelihood == pytest.approx(total, rel=1e-9)


def test_the_soft_evidence_path_equals_the_boolean_one_on_boolean_data():
    rng = np.random.default_rng(9)
    outcomes, mask = pad(list(simulate(draw_parameters(rng), 50, 10, rng).outcomes))
    exact = _Data.of(outcomes, mask)
    general = _Data(exact.o, exact.miss, exact.weight, False, exact.correct, exact.observed,
                    exact.transitions)
    params = _starts(3, 1, False, DEFAULT_PARAMETERS)
    a, la = _em_step(exact, params, False)
    b, lb = _em_step(general, params, False)
    assert np.allclose(la, lb) and all(np.allclose(a[n], b[n]) for n in a)


def test_too_little_evidence_gives_the_documented_defaults():
    rng = np.random.default_rng(1)
    skill = simulate(draw_parameters(rng), MIN_LEARNERS - 1, 40, rng)
    result = fit_skill(list(skill.outcomes))
    assert result.parameters is DEFAULT_PARAMETERS and result.fitted is False
    assert "below the minimum" in result.reason
    sparse = fit_skill([[1.0, 0.0]] * 100)               # enough learners, too few observations
    assert sparse.observations == 200 < MIN_OBSERVATIONS and sparse.fitted is False


def test_the_minimum_is_where_fitting_starts_to_beat_the_defaults():
    def mean_error(learners: int, steps: int) -> tuple[float, float]:
        rng = np.random.default_rng(2024)
        fitted, default = [], []
        for _ in range(20):
            true = draw_parameters(rng)
            outcomes = list(simulate(true, learners, steps, rng).outcomes)
            fitted.append(mae(fit_skill(outcomes, min_learners=1, min_observations=1).parameters, true))
            default.append(mae(DEFAULT_PARAMETERS, true))
        return float(np.mean(fitted)), float(np.mean(default))

    fitted, default = mean_error(10, 5)
    assert fitted > default                       # ten learners: a fit is worse than nothing
    fitted, default = mean_error(MIN_LEARNERS, MIN_OBSERVATIONS // MIN_LEARNERS)
    assert fitted < 0.75 * default                # at the minimum: clearly better


def test_a_fit_is_versioned_by_its_values_unless_named():
    rng = np.random.default_rng(6)
    outcomes = list(simulate(draw_parameters(rng), 100, 10, rng).outcomes)
    first, again = fit_skill(outcomes), fit_skill(outcomes)
    assert first.parameters.version.startswith("em-")
    assert first.parameters == again.parameters
    named = fit_skill(outcomes, version="math/fractions@3")
    assert named.parameters.version == "math/fractions@3"
    assert named.parameters.values() == first.parameters.values()
    assert first.to_dict()["parameters"]["version"] == first.parameters.version


def test_bad_fitting_input_is_refused_with_the_learner_named():
    with pytest.raises(InvalidObservationError) as caught:
        fit_skill([[1.0, 0.0], [1.0, 1.5]])
    assert caught.value.index == 1 and isinstance(caught.value, LearnerModelError)
    with pytest.raises(InvalidObservationError):
        fit_skill([[float("nan")]])
    with pytest.raises(InvalidParametersError):
        fit_skill([[1.0]], restarts=0)
