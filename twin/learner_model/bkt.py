"""The Bayesian Knowledge Tracing update: pure arithmetic, no I/O, a few floating-point operations.

Mastery ``p`` is P(L_n): the probability that the learner has mastered the skill at their next
opportunity. One observation with outcome ``o`` moves it in two steps (Corbett & Anderson 1995):

1. condition on the response (Bayes)::

       P(L | o) = p · e_L(o) / (p · e_L(o) + (1 − p) · e_U(o))

   with the emission likelihoods e_L(1) = 1 − slip, e_L(0) = slip, e_U(1) = guess,
   e_U(0) = 1 − guess;
2. the opportunity to learn (or forget)::

       p' = P(L | o) · (1 − forget) + (1 − P(L | o)) · learn

A fractional ``score`` s in 0..1 enters as soft evidence: s of a correct response and 1 − s of a
wrong one, e_L(s) = (1 − slip)^s · slip^(1 − s) and e_U(s) = guess^s · (1 − guess)^(1 − s). Its
log-likelihood is the soft-label cross-entropy, so s = 1 and s = 0 are exactly the boolean
updates, s = 0.7 moves the estimate part of the way a correct answer would, and EM (fitting.py)
counts s as the expected number of correct responses, the same likelihood in both places.

A response the model calls impossible (zero likelihood in both states, e.g. slip = 0 and a
wrong answer from p = 1) carries no usable information: the response step leaves p as it is.
"""

from __future__ import annotations

from .parameters import SkillParameters


def predict_correct(p: float, params: SkillParameters) -> float:
    """P(next response correct) for mastery ``p``: the model's prediction before it sees it."""
    return p * (1.0 - params.slip) + (1.0 - p) * params.guess


def update(p: float, outcome: float, params: SkillParameters) -> float:
    """Mastery after one observation (``outcome`` 1.0, 0.0 or a score in between)."""
    slip, guess = params.slip, params.guess
    if outcome == 1.0:
        mastered, unmastered = p * (1.0 - slip), (1.0 - p) * guess
    elif outcome == 0.0:
        mastered, unmastered = p * slip, (1.0 - p) * (1.0 - guess)
    else:
        miss = 1.0 - outcome
        mastered = p * (1.0 - slip) ** outcome * slip ** miss
        unmastered = (1.0 - p) * guess ** outcome * (1.0 - guess) ** miss
    total = mastered + unmastered
    posterior = mastered / total if total > 0.0 else p
    return posterior * (1.0 - params.forget) + (1.0 - posterior) * params.learn
