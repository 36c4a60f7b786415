"""The BKT update, against values computed by hand."""

import pytest

from twin.learner_model import MasteryTrace, SkillParameters
from twin.learner_model.bkt import predict_correct, update

from .conftest import obs


def test_a_short_sequence_matches_the_hand_computed_posterior(params):
    # prior 0.4, learn 0.2, slip 0.1, guess 0.25
    # correct: P(L|c) = .4*.9 / (.4*.9 + .6*.25) = 12/17;  then learn: 12/17 + 5/17*.2 = 13/17
    # wrong:   P(L|w) = 13/17*.1 / (13/17*.1 + 4/17*.75) = 13/43;  13/43 + 30/43*.2 = 19/43
    # correct: P(L|c) = 19/43*.9 / (19/43*.9 + 24/43*.25) = 57/77; 57/77 + 20/77*.2 = 61/77
    trace = MasteryTrace(params)
    expected = [13 / 17, 19 / 43, 61 / 77]
    for i, (correct, value) in enumerate(zip([True, False, True], expected)):
        trace.observe(obs(f"e{i}", i, correct=correct))
        assert trace.mastery_level == pytest.approx(value, abs=1e-12)
    assert [after for _, _, after in trace.steps()] == pytest.approx(expected, abs=1e-12)


def test_the_prediction_before_a_response_mixes_slip_and_guess(params):
    assert predict_correct(0.4, params) == pytest.approx(0.4 * 0.9 + 0.6 * 0.25)
    assert predict_correct(1.0, params) == pytest.approx(1 - params.slip)
    assert predict_correct(0.0, params) == pytest.approx(params.guess)


def test_correct_answers_raise_mastery_towards_one_and_a_slip_lowers_it(params):
    p, history = params.prior, []
    for _ in range(8):
        p = update(p, 1.0, params)
        history.append(p)
    assert history == sorted(history) and history[-1] > 0.999
    after_slip = update(p, 0.0, params)
    # a mastered learner slips with probability 0.1, so one wrong answer dents but does not
    # erase it: P(L|w) = p*.1 / (p*.1 + (1-p)*.75)
    expected = p * 0.1 / (p * 0.1 + (1 - p) * 0.75)
    assert after_slip == pytest.approx(expected + (1 - expected) * 0.2)
    assert 0.5 < after_slip < p


def test_repeated_wrong_answers_settle_where_learning_balances_the_evidence(params):
    p = params.prior
    for _ in range(50):
        p = update(p, 0.0, params)
    # fixed point of p = q + (1-q)*learn with q = p*slip/(p*slip + (1-p)*(1-guess))
    q = p * 0.1 / (p * 0.1 + (1 - p) * 0.75)
    assert p == pytest.approx(q + (1 - q) * 0.2, abs=1e-9)
    assert p < params.prior


def test_a_score_is_soft_evidence_between_a_wrong_and_a_correct_answer(params):
    p = 0.5
    wrong, right = update(p, 0.0, params), update(p, 1.0, params)
    scores = [update(p, s, params) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert scores[0] == pytest.approx(wrong) and scores[-1] == pytest.approx(right)
    assert scores == sorted(scores)
    # s = 0.7: likelihoods (1-slip)^.7 slip^.3 and guess^.7 (1-guess)^.3
    e_l, e_u = 0.9 ** 0.7 * 0.1 ** 0.3, 0.25 ** 0.7 * 0.75 ** 0.3
    q = p * e_l / (p * e_l + (1 - p) * e_u)
    assert update(p, 0.7, params) == pytest.approx(q + (1 - q) * 0.2)


def test_forgetting_pulls_a_mastered_learner_down_between_opportunities():
    keep = SkillParameters(prior=0.9, learn=0.1, slip=0.1, guess=0.2, forget=0.0, version="a")
    forget = SkillParameters(prior=0.9, learn=0.1, slip=0.1, guess=0.2, forget=0.2, version="b")
    assert update(0.9, 1.0, forget) < update(0.9, 1.0, keep)
    q = 0.9 * 0.9 / (0.9 * 0.9 + 0.1 * 0.2)
    assert update(0.9, 1.0, forget) == pytest.approx(q * 0.8 + (1 - q) * 0.1)


def test_a_response_the_model_calls_impossible_leaves_the_estimate_to_learning_alone():
    certain = SkillParameters(prior=1.0, learn=0.1, slip=0.0, guess=0.2, version="c")
    # slip 0 and p = 1: a wrong answer has likelihood 0 in both states
    assert update(1.0, 0.0, certain) == pytest.approx(1.0)
