"""Named errors of the RAG index; all subclass ``RagError``."""


class RagError(Exception):
    """Base class of RAG-index errors."""


class InvalidChunkingError(RagError, ValueError):
    """Chunk size, overlap or unit that cannot produce chunks (e.g. overlap >= size)."""


class InvalidDocumentError(RagError, ValueError):
    """A document that cannot be stored: empty content, metadata that is not a JSON object."""


class DocumentNotFoundError(RagError, KeyError):
    """No document with that id."""

    def __str__(self) -> str:
        return f"no document {self.args[0]!r}" if self.args else "document not found"


class ChunkNotFoundError(RagError, KeyError):
    """No chunk with that id."""

    def __str__(self) -> str:
        return f"no chunk {self.args[0]!r}" if self.args else "chunk not found"


class InvalidVectorError(RagError, ValueError):
    """A vector that is not a finite, non-zero, one-dimensional sequence of numbers."""


class DimensionMismatchError(RagError, ValueError):
    """A vector (or an index configuration) whose dimension differs from the model's."""


class ModelMismatchError(RagError, ValueError):
    """Vectors declared as coming from a model other than the index's embedding model."""


class EmbeddingCountError(RagError, ValueError):
    """Supplied embeddings do not match the document's chunks one to one."""
