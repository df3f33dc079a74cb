"""A small error hierarchy.

Every error a user can cause says what went wrong, where, and how to fix it.
The CLI prints ``str(error)`` without a traceback and exits with status 1.
"""

from __future__ import annotations


class TablelmError(Exception):
    """Base class of the errors tablelm raises for a user's input."""


class CorpusError(TablelmError):
    """A corpus record or file that cannot be read.

    Parameters
    ----------
    path : str
        The file the problem is in.
    message : str
        What is wrong and how to fix it.
    line : int, optional
        1-based line number (or record number) of the problem, when known.
    """

    def __init__(self, path, message: str, line: int | None = None):
        self.path = str(path)
        self.line = line
        self.message = message
        where = self.path if line is None else f"{self.path} line {line}"
        super().__init__(f"{where}: {message}")


class ParamError(TablelmError, ValueError):
    """A parameter value that breaks its declared constraint.

    ``details`` (name, value, rule) is filled in by the HTTP server for its error envelope.
    """

    details: dict | None = None


class ModelError(TablelmError):
    """A model directory that is missing, incomplete or of another format version."""
