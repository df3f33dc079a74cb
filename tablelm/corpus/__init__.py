"""Corpus readers: sources → :class:`TextEntity` stream.

One call, :func:`read_corpus`, picks the reader of each source:

========================================  =====================================================
source                                    reader
========================================  =====================================================
``None`` or ``[]``                        the built-in corpus: Python's documentation
                                          (:mod:`tablelm.corpus.pydocs`)
a folder                                  ``.txt`` / ``.md`` files, recursively
                                          (:mod:`tablelm.corpus.folder`)
``*.jsonl``, ``*.json``, ``*.ndjson``     JSON Lines, BEIR layout by default
                                          (:mod:`tablelm.corpus.jsonl`)
a file whose first line is ``ID~~{...}``  the reference system's records (:mod:`tablelm.corpus.xllm`)
``*.txt``, ``*.md``, ``*.markdown``       that one file, as in a folder
another file starting with ``{``          JSON Lines
========================================  =====================================================

Every reader is deterministic (sorted file order, no network, no writes) and raises
:class:`~tablelm.errors.CorpusError` with the file, the line and a fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from tablelm.corpus.entity import TextEntity
from tablelm.corpus.folder import MARKDOWN_SUFFIXES, TEXT_SUFFIXES, read_folder, split_markdown
from tablelm.corpus.jsonl import FieldMap, read_jsonl
from tablelm.corpus.pydocs import builtin_corpus_id, python_docs_fingerprint, read_python_docs
from tablelm.corpus.stats import ON_ERROR_CHOICES, ReadStats, check_on_error, handle_error
from tablelm.corpus.xllm import RECORD_LINE, read_xllm
from tablelm.corpus._text import codec_name, first_content_line
from tablelm.errors import CorpusError, ParamError

__all__ = [
    "TextEntity",
    "ReadStats",
    "FieldMap",
    "CorpusError",
    "ON_ERROR_CHOICES",
    "JSONL_SUFFIXES",
    "read_corpus",
    "detect_format",
    "read_jsonl",
    "read_folder",
    "read_xllm",
    "read_python_docs",
    "split_markdown",
    "builtin_corpus_id",
    "python_docs_fingerprint",
]

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


def detect_format(path: str | Path) -> str:
    """The reader of one source: ``"folder"``, ``"jsonl"``, ``"xllm"`` or ``"text"``.

    Raises
    ------
    CorpusError
        The path does not exist, cannot be read, or has no known format.
    """
    path = Path(path)
    if not path.exists():
        raise CorpusError(path, "no such file or folder; fix: check the path (a source is a "
                          "folder of .txt/.md files, a .jsonl file, or an ID~~{...} records file)")
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    try:
        first = first_content_line(path)
    except OSError as err:
        raise CorpusError(path, f"cannot read the file ({err.strerror or err}); "
                          "fix: check its permissions") from None
    if RECORD_LINE.match(first):
        return "xllm"
    if suffix in TEXT_SUFFIXES + MARKDOWN_SUFFIXES:
        return "text"
    if first.startswith("{"):
        return "jsonl"
    known = ", ".join(JSONL_SUFFIXES + TEXT_SUFFIXES + MARKDOWN_SUFFIXES)
    raise CorpusError(path, f"unknown corpus format (extension {suffix or 'none'!r}, first line "
                      f"not JSON nor ID~~{{...}}); fix: pass a folder or a file ending in {known}")


def read_corpus(sources: Iterable[str | Path] | str | Path | None = None, *,
                field_map: FieldMap | None = None, encoding: str = "utf-8",
                on_error: str = "fail", stats: ReadStats | None = None) -> Iterator[TextEntity]:
    """Read every source into one stream of entities with unique ids.

    Parameters
    ----------
    sources : list of str or Path, optional
        Files and folders, read in the order given (see the module table). ``None`` or an
        empty list reads the built-in corpus (:func:`builtin_corpus_id`).
    field_map : FieldMap, optional
        Field names for JSON Lines sources (``--id-field``, ``--text-field``, ...).
    encoding : str
        Codec of text sources (``--encoding``), ``"utf-8"`` by default; a BOM is skipped.
    on_error : {"fail", "skip"}
        ``"fail"`` raises the first :class:`CorpusError`. ``"skip"`` records it in
        ``stats.errors`` (path, line, message), counts it in ``stats.skipped`` and goes on.
    stats : ReadStats, optional
        Filled while the iterator is consumed: entities read per source, skipped records,
        duplicates, ignored files. An empty corpus is not an error here.

    Returns
    -------
    Iterator[TextEntity]
        Lazily read. An id seen before is a duplicate: with ``"skip"`` it is dropped and
        counted in ``stats.duplicates``; with ``"fail"`` it raises a CorpusError naming both
        places.

    Raises
    ------
    CorpusError
        At call time when a source does not exist (always) or has no known format (with
        ``on_error="fail"``); while iterating for bad records.
    ParamError
        ``on_error`` or ``encoding`` is not valid.
    """
    check_on_error(on_error)
    try:
        codec_name("<options>", encoding)
    except CorpusError:
        raise ParamError(f"The 'encoding' parameter must be a Python codec name such as "
                         f"'utf-8' or 'cp1252'. Got {encoding!r}.") from None
    stats = stats if stats is not None else ReadStats()
    if sources is None:
        sources = []
    elif isinstance(sources, (str, Path)):
        sources = [sources]
    sources = list(sources)
    plan: list[tuple[str, Path | None]] = []
    for source in sources:
        path = Path(source)
        if not path.exists():
            detect_format(path)  # raises "no such file or folder", whatever on_error says
        try:
            plan.append((detect_format(path), path))
        except CorpusError as err:
            handle_error(err, on_error, stats)
    if not sources:
        plan.append(("builtin", None))
    return _read_all(plan, field_map, encoding, on_error, stats)


def _entities(kind: str, path: Path | None, field_map, encoding, on_error, stats):
    if kind == "builtin":
        return read_python_docs(stats=stats)
    if kind == "jsonl":
        return read_jsonl(path, field_map=field_map, encoding=encoding, on_error=on_error,
                          stats=stats)
    if kind == "xllm":
        return read_xllm(path, encoding=encoding, on_error=on_error, stats=stats)
    return read_folder(path, encoding=encoding, on_error=on_error, stats=stats)


def _line_of(source: str) -> int | None:
    tail = source.rpartition(":")[2]
    return int(tail) if tail.isdigit() else None


def _read_all(plan, field_map, encoding, on_error, stats: ReadStats) -> Iterator[TextEntity]:
    seen: dict[str, str] = {}  # id -> where it was first read
    for kind, path in plan:
        label = builtin_corpus_id() if path is None else str(path)
        stats.sources.setdefault(label, 0)
        for entity in _entities(kind, path, field_map, encoding, on_error, stats):
            where = f"{label} ({entity.source})" if entity.source else label
            first = seen.get(entity.id)
            if first is not None:
                if on_error == "fail":
                    raise CorpusError(
                        label,
                        f"duplicate id {entity.id!r}: first read at {first}, again at {where}; "
                        "fix: make ids unique, or pass --on-error skip to keep the first",
                        line=_line_of(entity.source),
                    )
                stats.duplicates += 1
                continue
            seen[entity.id] = where
            stats.read += 1
            stats.sources[label] += 1
            yield entity
