"""Synthetic learners drawn from known BKT parameters, for tests and the benchmark.

Each learner starts mastered with probability ``prior``; at every step they answer (correct with
probability 1 − slip if mastered, guess if not) and then learn (or forget) with the parameter's
probability, exactly the generative model that bkt.py and fitting.py invert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .parameters import SkillParameters

#: The ranges parameters are drawn from (issue 16's benchmark): prior, learn, slip, guess.
RANGES = {"prior": (0.1, 0.6), "learn": (0.05, 0.3), "slip": (0.05, 0.2), "guess": (0.1, 0.3)}


@dataclass(frozen=True)
class SyntheticSkill:
    parameters: SkillParameters
    outcomes: np.ndarray   # (learners, steps) of 0.0 / 1.0
    mastered: np.ndarray   # (learners, steps) bool: the hidden state when each answer was given


def draw_parameters(rng: np.random.Generator, name: str = "synthetic") -> SkillParameters:
    return SkillParameters(**{key: float(rng.uniform(*bounds)) for key, bounds in RANGES.items()},
                           version=name)


def simulate(params: SkillParameters, learners: int, steps: int,
             rng: np.random.Generator) -> SyntheticSkill:
    mastered = np.empty((learners, steps), dtype=bool)
    state = rng.random(learners) < params.prior
    for t in range(steps):
        mastered[:, t] = state
        draw = rng.random(learners)
        state = np.where(state, draw >= params.forget, draw < params.learn)
    p_correct = np.where(mastered, 1.0 - params.slip, params.guess)
    outcomes = (rng.random((learners, steps)) < p_correct).astype(float)
    return SyntheticSkill(params, outcomes, mastered)
