"""The model registry (``model_registry.db`` + a model file directory): the seed's ModelManager."""

from .errors import (ChecksumMismatchError, DuplicateVersionError, InvalidModelFieldError,
                     InvalidModelNameError, InvalidVersionError, ModelFileMissingError,
                     ModelNotFoundError, ModelRegistryError, PickleNotAllowedError)
from .manager import ModelManager
from .performance import ModelPerformance

__all__ = [
    "ChecksumMismatchError", "DuplicateVersionError", "InvalidModelFieldError",
    "InvalidModelNameError", "InvalidVersionError", "ModelFileMissingError", "ModelManager",
    "ModelNotFoundError", "ModelPerformance", "ModelRegistryError", "PickleNotAllowedError",
]
