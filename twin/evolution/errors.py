"""Named errors of the evolution-metrics store."""


class EvolutionError(Exception):
    """Base class of evolution-metrics errors."""


class EvolutionValidationError(EvolutionError, ValueError):
    """A value the store refuses before it reaches SQL (bad score, unknown status, ...).

    ``index`` is the position of the offending row in a batch, when the error is about one.
    """

    def __init__(self, message: str, *, index: int | None = None) -> None:
        super().__init__(message if index is None else f"row {index}: {message}")
        self.index = index


class UnknownRoundError(EvolutionError, LookupError):
    """No evolution round with that id."""


class DuplicateRoundError(EvolutionError):
    """A round with that (round_number, generation) already exists."""


class DuplicateFitnessError(EvolutionError):
    """An agent already has a fitness row in that round (the whole batch was rolled back)."""
