"""Fitting a skill's BKT parameters by EM (Baum-Welch for the two-state HMM) over all learners.

BKT is a hidden Markov model with states "unmastered" and "mastered": initial distribution
(1 − prior, prior), transitions learn (U→L) and forget (L→U), emissions guess / slip. EM
alternates a forward-backward pass over every learner's sequence (the posterior of the state at
each step and of each transition) with closed-form re-estimates of the parameters from those
expected counts; each iteration cannot lower the likelihood.

Vectorised: sequences are right-padded into one (steps x learners) array, and all restarts run
at once as a (restarts x learners) batch, so one Python loop over time steps does the work of
every learner and restart; padded steps have emission 1 in both states (no information) and are
masked out of the counts. A fractional score s counts as s of a correct response (bkt.py).

Identifiability: the likelihood is unchanged if the two states swap meaning, and it has ridges
(a high guess trades against a high prior). slip and guess are kept below 0.5 (so "mastered"
always means more likely correct), every probability is kept within [1e-4, 1 − 1e-4] so none
collapses to a boundary it cannot leave, and several restarts (one from the defaults, the others
random within the bounds, from a fixed seed) keep the one with the highest likelihood.

Minimum evidence: a skill is fitted only with at least ``MIN_LEARNERS`` learners and
``MIN_OBSERVATIONS`` observations; below that the defaults (parameters.DEFAULT_PARAMETERS)
apply and the result says so. Measured on synthetic skills drawn from the benchmark's ranges
(60 skills per row, fixed seeds): mean absolute parameter error of a fit and of the defaults,
and how often the fit is the better of the two:

    learners x steps   10x5  10x20  25x10  25x20  50x5  50x10  50x20  100x5  100x20
    fit               0.130  0.082  0.058  0.049  0.058  0.040  0.037  0.037  0.023
    defaults          0.067  0.070  0.073  0.074  0.074  0.074  0.069  0.070  0.067
    fit better          20%    50%    72%    78%    72%    88%    85%    90%    97%

A fit of ten learners is worse than knowing nothing; from 50 learners and 500 observations it
is better for nearly nine skills in ten, and by almost half (tests/learner_model/test_fitting.py
checks both sides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import InvalidObservationError, InvalidParametersError
from .parameters import DEFAULT_PARAMETERS, SkillParameters

MIN_LEARNERS = 50
MIN_OBSERVATIONS = 500
RESTARTS = 5
MAX_ITERATIONS = 200
TOLERANCE = 1e-7          # stop when no restart's log-likelihood improves by this fraction
_FLOOR = 1e-4
_NAMES = ("prior", "learn", "slip", "guess", "forget")
_UPPER = {"prior": 1 - _FLOOR, "learn": 1 - _FLOOR, "slip": 0.5 - _FLOOR, "guess": 0.5 - _FLOOR,
          "forget": 1 - _FLOOR}


@dataclass(frozen=True, slots=True)
class FitResult:
    parameters: SkillParameters
    fitted: bool              # False: too little evidence, the defaults apply
    learners: int
    observations: int
    log_likelihood: float | None
    iterations: int
    converged: bool
    reason: str               # one line: what was done and why

    def to_dict(self) -> dict:
        return {"parameters": self.parameters.to_dict(), "fitted": self.fitted,
                "learners": self.learners, "observations": self.observations,
                "log_likelihood": self.log_likelihood, "iterations": self.iterations,
                "converged": self.converged, "reason": self.reason}


def pad(sequences: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(outcomes, mask), each (steps x learners); learners without observations are dropped."""
    rows = []
    for index, sequence in enumerate(sequences):
        row = np.asarray(sequence, dtype=float).reshape(-1)
        if row.size and not (np.all(np.isfinite(row)) and row.min() >= 0.0 and row.max() <= 1.0):
            raise InvalidObservationError("outcomes must be numbers within 0..1", field="outcome",
                                          index=index)
        if row.size:
            rows.append(row)
    steps = max((row.size for row in rows), default=0)
    outcomes = np.zeros((steps, len(rows)))
    mask = np.zeros((steps, len(rows)), dtype=bool)
    for column, row in enumerate(rows):
        outcomes[: row.size, column] = row
        mask[: row.size, column] = True
    return outcomes, mask


def _starts(restarts: int, seed: int, fit_forget: bool,
            defaults: SkillParameters) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    start = {name: np.empty((restarts, 1)) for name in _NAMES}
    for name in _NAMES:
        start[name][0] = getattr(defaults, name)
    if restarts > 1:
        start["prior"][1:, 0] = rng.uniform(0.05, 0.9, restarts - 1)
        start["learn"][1:, 0] = rng.uniform(0.02, 0.5, restarts - 1)
        start["slip"][1:, 0] = rng.uniform(0.02, 0.4, restarts - 1)
        start["guess"][1:, 0] = rng.uniform(0.02, 0.4, restarts - 1)
        start["forget"][1:, 0] = rng.uniform(0.0, 0.2, restarts - 1) if fit_forget else 0.0
    for name in _NAMES:
        np.clip(start[name], _FLOOR if name != "forget" or fit_forget else 0.0, _UPPER[name],
                out=start[name])
    if not fit_forget:
        start["forget"][:] = 0.0
    return start


@dataclass(frozen=True)
class _Data:
    """Padded outcomes shaped (T, 1, N) to broadcast against (restarts, learners)."""

    o: np.ndarray
    miss: np.ndarray
    weight: np.ndarray        # 1.0 on observed steps, 0.0 on padding
    binary: bool              # every outcome is 0 or 1 (the emissions are a selection)
    correct: float            # total outcome mass
    observed: float           # number of observed steps
    transitions: float        # number of steps that follow another observed step

    @classmethod
    def of(cls, outcomes: np.ndarray, mask: np.ndarray) -> "_Data":
        o = outcomes[:, None, :]
        weight = mask[:, None, :].astype(float)
        return cls(o, 1.0 - o, weight, bool(np.all((outcomes == 0.0) | (outcomes == 1.0))),
                   float((o * weight).sum()), float(weight.sum()), float(weight[1:].sum()))

    def emissions(self, right: np.ndarray, wrong: np.ndarray) -> np.ndarray:
        """right^o · wrong^(1−o) on observed steps, 1 on padded ones; (T, R, N)."""
        if self.binary:
            value = self.o * right + self.miss * wrong
        else:
            value = np.exp(self.o * np.log(right) + self.miss * np.log(wrong))
        return 1.0 + self.weight * (value - 1.0)


def _em_step(data: _Data, p: dict[str, np.ndarray], fit_forget: bool
             ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One forward-backward pass and re-estimate for every restart at once: returns (new
    parameters, log-likelihood of each restart under the old ones). Arrays are (T, R, N)."""
    prior, learn, forget, slip, guess = p["prior"], p["learn"], p["forget"], p["slip"], p["guess"]
    e_l = data.emissions(1 - slip, slip)
    e_u = data.emissions(guess, 1 - guess)
    diff = e_l - e_u
    keep = 1 - forget - learn                   # p' = learn + P(L | o) · keep
    steps = e_l.shape[0]
    filtered = np.empty_like(e_l)               # P(L_t | o_1..t)
    scale = np.empty_like(e_l)                  # P(o_t | o_1..t-1)
    state = prior
    for t in range(steps):
        scale[t] = state * diff[t] + e_u[t]
        filtered[t] = state * e_l[t] / scale[t]
        state = learn + filtered[t] * keep
    e_l /= scale                                # from here on: emissions over scales
    e_u /= scale
    x_l = np.empty_like(e_l)                    # scaled backward message times emission
    x_u = np.empty_like(e_l)
    gamma = np.empty_like(e_l)                  # P(L_t | all of the learner's observations)
    gamma[-1] = filtered[-1]
    back_l = back_u = np.ones(e_l.shape[1:])
    for t in range(steps - 1, 0, -1):
        np.multiply(e_l[t], back_l, out=x_l[t])
        np.multiply(e_u[t], back_u, out=x_u[t])
        back_l = x_l[t] + forget * (x_u[t] - x_l[t]) if fit_forget else x_l[t]
        back_u = x_u[t] + learn * (x_l[t] - x_u[t])
        gamma[t - 1] = filtered[t - 1] * back_l
    log_likelihood = np.log(scale).sum(axis=(0, 2))
    into = data.weight[1:]                      # a transition counts only into an observed step
    mastered_before = (gamma[:-1] * into).sum(axis=(0, 2))
    mastered = (gamma * data.weight).sum(axis=(0, 2))
    mastered_correct = (gamma * data.weight * data.o).sum(axis=(0, 2))
    learned = learn[:, 0] * ((1 - filtered[:-1]) * x_l[1:] * into).sum(axis=(0, 2))
    new = {
        "prior": gamma[0].mean(axis=1),
        "learn": learned / np.maximum(data.transitions - mastered_before, 1e-12),
        "slip": (mastered - mastered_correct) / np.maximum(mastered, 1e-12),
        "guess": (data.correct - mastered_correct) / np.maximum(data.observed - mastered, 1e-12),
        "forget": np.zeros(prior.shape[0]),
    }
    if fit_forget:
        forgotten = forget[:, 0] * (filtered[:-1] * x_u[1:] * into).sum(axis=(0, 2))
        new["forget"] = forgotten / np.maximum(mastered_before, 1e-12)
    for name in _NAMES:
        new[name] = new[name][:, None]
        if name != "forget" or fit_forget:
            np.clip(new[name], _FLOOR, _UPPER[name], out=new[name])
    return new, log_likelihood


def fit_skill(sequences: Sequence[Sequence[float]], *, fit_forget: bool = False,
              restarts: int = RESTARTS, max_iterations: int = MAX_ITERATIONS,
              tolerance: float = TOLERANCE, seed: int = 0,
              defaults: SkillParameters = DEFAULT_PARAMETERS, version: str | None = None,
              min_learners: int = MIN_LEARNERS, min_observations: int = MIN_OBSERVATIONS) -> FitResult:
    """Fit one skill from every learner's outcomes on it (each learner's in time order: 1.0
    correct, 0.0 wrong, or a score). ``version`` names the result; by default it is named by
    its values (``em-<digest>``). Too little evidence gives the defaults, ``fitted=False``."""
    if restarts < 1 or max_iterations < 1 or not tolerance > 0:
        raise InvalidParametersError("restarts and max_iterations must be >= 1, tolerance > 0")
    outcomes, mask = pad(sequences)
    learners, observations = outcomes.shape[1], int(mask.sum())
    if learners < min_learners or observations < min_observations:
        return FitResult(defaults, False, learners, observations, None, 0, False,
                         f"{learners} learners and {observations} observations are below the "
                         f"minimum ({min_learners} and {min_observations}): defaults apply")
    params = _starts(restarts, seed, fit_forget, defaults)
    data = _Data.of(outcomes, mask)
    previous = np.full(restarts, -np.inf)
    converged = False
    for iteration in range(1, max_iterations + 1):
        candidate, log_likelihood = _em_step(data, params, fit_forget)
        if np.all(log_likelihood - previous <= tolerance * np.abs(log_likelihood)):
            converged = True      # log_likelihood is that of params: keep them
            break
        params, previous = candidate, log_likelihood
    else:
        _, log_likelihood = _em_step(data, params, fit_forget)
    best = int(np.argmax(log_likelihood))
    values = {name: round(float(params[name][best, 0]), 6) for name in _NAMES}
    fitted = (SkillParameters(**values, version=version) if version
              else SkillParameters.named_by_content("em", **values))
    final = float(log_likelihood[best])
    return FitResult(fitted, True, learners, observations, final, iteration, converged,
                     f"EM over {learners} learners and {observations} observations, "
                     f"{restarts} restarts, {iteration} iterations"
                     + ("" if converged else " (iteration limit reached before convergence)"))
