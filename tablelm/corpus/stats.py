"""Counters shared by every corpus reader, and the one place that applies ``on_error``."""

from __future__ import annotations

from dataclasses import dataclass, field

from tablelm import params
from tablelm.errors import CorpusError

#: Accepted values of the ``on_error`` option, in the order the help lists them.
ON_ERROR_CHOICES = params.REGISTRY["on_error"].constraint.choices


def check_on_error(on_error: str) -> str:
    """Validate ``on_error`` (the registry's rule) and return it unchanged."""
    return params.check("on_error", on_error)


@dataclass
class ReadStats:
    """What the readers did with a corpus, for the caller to report.

    Attributes
    ----------
    read : int
        Entities produced (after dropping duplicates).
    skipped : int
        Bad records skipped because ``on_error="skip"``; their errors are in ``errors``.
    duplicates : int
        Records dropped because an earlier record had the same id (any reader) or the same
        normalized content (see :func:`tablelm.corpus.read_corpus`).
    duplicate_ids : list of (dropped id, kept id)
        The content duplicates found by :func:`tablelm.corpus.read_corpus`.
    empty : int
        Files or Markdown sections dropped because they have no body text.
    repaired : int
        xllm records whose dict literal only parsed after escaping stray quotes
        (``'company's'``): read, but worth fixing at the source.
    errors : list of (path, line, message)
        Every error met with ``on_error="skip"``, in reading order.
    truncated : list of (path, line, message)
        Records cut to the per-record caps (``tablelm.corpus.MAX_TEXT_CHARS``, ...): read, but
        not all of them.
    skipped_files : list of (path, reason)
        Files of a folder that no reader handles (unknown extension, ...).
    sources : dict
        Entities produced per source (path as given, or ``"python-docs"``).
    """

    read: int = 0
    skipped: int = 0
    duplicates: int = 0
    empty: int = 0
    repaired: int = 0
    errors: list = field(default_factory=list)
    duplicate_ids: list = field(default_factory=list)
    skipped_files: list = field(default_factory=list)
    truncated: list = field(default_factory=list)
    sources: dict = field(default_factory=dict)

    def record_error(self, error: CorpusError) -> None:
        """Count one skipped record and keep its error."""
        self.skipped += 1
        self.errors.append((error.path, error.line, error.message))

    def to_dict(self) -> dict:
        """A JSON-serializable copy."""
        return {
            "read": self.read,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "empty": self.empty,
            "repaired": self.repaired,
            "errors": [list(e) for e in self.errors],
            "duplicate_ids": [list(d) for d in self.duplicate_ids],
            "skipped_files": [list(s) for s in self.skipped_files],
            "truncated": [list(t) for t in self.truncated],
            "sources": dict(self.sources),
        }

    def reasons(self, limit: int = 10) -> list[str]:
        """Why records or files were left out, one line each (skipped records, then files
        not read), at most ``limit`` lines plus one saying how many more."""
        lines = [f"{p}{'' if ln is None else f' line {ln}'}: {m}" for p, ln, m in self.errors]
        lines += [f"{p}: {r}" for p, r in self.skipped_files]
        if len(lines) > limit:
            lines = lines[:limit] + [f"... and {len(lines) - limit:,} more"]
        return lines

    def summary(self) -> str:
        """One line for a CLI: ``3204 entities read, 2 skipped, 0 duplicates, ...``."""
        parts = [f"{self.read} entities read"]
        for name in ("skipped", "duplicates", "empty", "repaired"):
            value = getattr(self, name)
            if value:
                parts.append(f"{value} {name}")
        if self.skipped_files:
            parts.append(f"{len(self.skipped_files)} files ignored")
        if self.truncated:
            parts.append(f"{len(self.truncated)} records cut to the size limits")
        return ", ".join(parts)


def handle_error(error: CorpusError, on_error: str, stats: ReadStats | None) -> None:
    """Raise ``error`` (``on_error="fail"``) or record it in ``stats`` and return (``"skip"``)."""
    if on_error == "fail":
        raise error
    if stats is not None:
        stats.record_error(error)
