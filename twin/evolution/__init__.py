"""Evolution metrics (``evolution_metrics.db``): rounds, fitness, resources, selection outcomes."""

from .errors import (DuplicateFitnessError, DuplicateRoundError, EvolutionError,
                     EvolutionValidationError, UnknownRoundError)
from .records import (FitnessPoint, FitnessRecord, LeaderboardEntry, LineageLink, ResourceSample,
                      Round, SelectionOutcome)
from .store import EvolutionStore

__all__ = [
    "DuplicateFitnessError", "DuplicateRoundError", "EvolutionError", "EvolutionStore",
    "EvolutionValidationError", "FitnessPoint", "FitnessRecord", "LeaderboardEntry", "LineageLink",
    "ResourceSample", "Round", "SelectionOutcome", "UnknownRoundError",
]
