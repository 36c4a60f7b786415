"""BKT skill parameters: one immutable, versioned set per (domain, topic).

- ``prior``  P(L0): the learner has mastered the skill before the first observation;
- ``learn``  P(T): an unmastered learner masters it at an opportunity (after the response);
- ``slip``   P(S): a learner who has mastered it answers wrongly;
- ``guess``  P(G): a learner who has not mastered it answers correctly;
- ``forget`` P(F): a mastered learner loses it at an opportunity (0 in standard BKT).

``slip`` and ``guess`` must be below 0.5: above that the "mastered" state would predict worse
answers than the "unmastered" one and the two states swap meaning (the model is not
identifiable without this bound, see fitting.py).

A version names one set for ever: explanations cite it, and a refit makes a new one. Fitted sets
are named by a digest of their values (``em-<12 hex>``) unless the caller names them.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from .errors import InvalidParametersError

_NAMES = ("prior", "learn", "slip", "guess", "forget")
_MAX_VERSION_LENGTH = 64


@dataclass(frozen=True, slots=True)
class SkillParameters:
    prior: float
    learn: float
    slip: float
    guess: float
    forget: float = 0.0
    version: str = ""

    def __post_init__(self) -> None:
        for name in _NAMES:
            value = getattr(self, name)
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or not math.isfinite(value):
                raise InvalidParametersError(f"{name} must be a finite number", field=name)
            if not 0.0 <= value <= 1.0:
                raise InvalidParametersError(f"{name} must be within 0..1, got {value}", field=name)
            object.__setattr__(self, name, float(value))
        for name in ("slip", "guess"):
            if getattr(self, name) >= 0.5:
                raise InvalidParametersError(f"{name} must be below 0.5 (identifiability)", field=name)
        if not isinstance(self.version, str) or not 0 < len(self.version) <= _MAX_VERSION_LENGTH:
            raise InvalidParametersError(
                f"version must be a non-empty string of at most {_MAX_VERSION_LENGTH} characters",
                field="version")

    def values(self) -> dict[str, float]:
        """The five probabilities, without the version."""
        return {name: getattr(self, name) for name in _NAMES}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SkillParameters":
        unknown = set(data) - set(_NAMES) - {"version"}
        if unknown:
            raise InvalidParametersError(f"unknown parameters: {', '.join(sorted(unknown))}",
                                         field=sorted(unknown)[0])
        try:
            return cls(**data)
        except TypeError as exc:  # a missing required field
            raise InvalidParametersError(str(exc)) from None

    @classmethod
    def named_by_content(cls, prefix: str = "em", **values: float) -> "SkillParameters":
        """A set whose version is a digest of its values (rounded to 6 places), so the same fit
        always gets the same name and two different fits never share one."""
        rounded = {name: round(float(values.get(name, 0.0)), 6) for name in _NAMES}
        digest = hashlib.sha256(json.dumps(rounded, sort_keys=True).encode()).hexdigest()[:12]
        return cls(**rounded, version=f"{prefix}-{digest}")


#: Used for a skill until it has enough evidence to fit (see fitting.MIN_LEARNERS and
#: MIN_OBSERVATIONS): round values near the middle of the ranges BKT fits usually find
#: (Corbett & Anderson 1995; Baker et al. 2008 bound guess and slip well below 0.5), so an
#: unfitted skill starts unsure (0.3) and needs a few consistent answers to move far.
DEFAULT_PARAMETERS = SkillParameters(prior=0.3, learn=0.15, slip=0.1, guess=0.2, forget=0.0,
                                     version="default-1")
