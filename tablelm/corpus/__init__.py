"""Corpus readers: sources → :class:`TextEntity` stream.

One call, :func:`read_corpus`, picks the reader of each source:

========================================  =====================================================
source                                    reader
========================================  =====================================================
``None`` or ``[]``                        the built-in corpus: Python's documentation
                                          (:mod:`tablelm.corpus.pydocs`)
a folder                                  every file by its type, recursively: .txt, .md, .html,
                                          .pdf, .jsonl, .csv (:func:`tablelm.corpus.folder.read_folder`)
``*.jsonl``, ``*.json``, ``*.ndjson``     JSON Lines, BEIR layout by default
                                          (:mod:`tablelm.corpus.jsonl`)
a file whose first line is ``ID~~{...}``  the reference system's records (:mod:`tablelm.corpus.xllm`)
a file whose first line is                the reference system's crawl (:mod:`tablelm.corpus.crawl`)
``URL<TAB>(...)<TAB>~HTML``
``*.html``, ``*.htm``, ``*.xhtml``        one page and its sections (:mod:`tablelm.corpus.html`)
``*.pdf``                                 paragraphs or pages (:mod:`tablelm.corpus.pdf`)
``*.csv``, ``*.tsv``                      rows, fields named by a FieldMap (:mod:`tablelm.corpus.csvfile`)
``*.txt``, ``*.md``, ``*.markdown``       that one file, as in a folder
another file starting with ``{``          JSON Lines
========================================  =====================================================

Every reader is deterministic (sorted file order, no network, no writes) and raises
:class:`~tablelm.errors.CorpusError` with the file, the line (or page) and a fix.

Duplicates: an id seen before is an error (``on_error="fail"``) or dropped; an entity whose
normalized content (title, text, category, tags, related; case and blanks ignored) equals an
earlier one's is dropped and counted in ``ReadStats.duplicates`` either way, the pair listed in
``ReadStats.duplicate_ids``. Entities without text are never content duplicates.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

from tablelm import params
from tablelm.corpus._text import DEFAULT_MAX_FILE_MB, check_file, check_regular, first_content_line
from tablelm.corpus.crawl import CRAWL_LINE, read_crawl
from tablelm.corpus.csvfile import CSV_SUFFIXES, read_csv
from tablelm.corpus.entity import TextEntity
from tablelm.corpus.folder import MARKDOWN_SUFFIXES, TEXT_SUFFIXES, read_folder, split_markdown
from tablelm.corpus.html import HTML_SUFFIXES, read_html_pages
from tablelm.corpus.jsonl import FieldMap, read_jsonl
from tablelm.corpus.pdf import PDF_SUFFIXES, PDF_UNITS, read_pdf
from tablelm.corpus.pydocs import builtin_corpus_id, python_docs_fingerprint, read_python_docs
from tablelm.corpus.stats import ON_ERROR_CHOICES, ReadStats, handle_error
from tablelm.corpus.xllm import RECORD_LINE, read_xllm
from tablelm.errors import CorpusError

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
    "read_crawl",
    "read_csv",
    "read_pdf",
    "read_html_pages",
    "PDF_UNITS",
    "DEFAULT_MAX_FILE_MB",
    "read_python_docs",
    "split_markdown",
    "builtin_corpus_id",
    "python_docs_fingerprint",
]

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")

#: What one record may cost. A build's memory grows with a record's words (about 400 bytes
#: per character of text) and with the product of its multitokens and its labels (the
#: context tables), so a single 50 MB record or one with 50,000 keywords would need tens of
#: GB. Longer fields are cut at these sizes and the cut is listed in ``ReadStats.truncated``.
MAX_TEXT_CHARS = 1_000_000
MAX_TITLE_CHARS = 2_000
MAX_LABELS = 256          # tags, related items
MAX_LABEL_CHARS = 500     # one tag, related id or category level
MAX_CATEGORY_DEPTH = 32
MAX_METADATA_DEPTH = 64   # nesting of metadata objects and lists (deeper: Python's recursion limit)

_SURROGATE = re.compile("[\ud800-\udfff]")


def detect_format(path: str | Path) -> str:
    """The reader of one source: ``"folder"``, ``"jsonl"``, ``"xllm"``, ``"crawl"``, ``"html"``,
    ``"pdf"``, ``"csv"`` or ``"text"``.

    Raises
    ------
    CorpusError
        The path does not exist, cannot be read, or has no known format.
    """
    path = Path(path)
    if not path.exists():
        raise CorpusError(path, "no such file or folder; fix: check the path (a source is a "
                          "folder, or a .jsonl .csv .html .pdf .md .txt file)")
    if path.is_dir():
        return "folder"
    check_regular(path)  # before anything opens it: a FIFO blocks, /dev/zero never ends
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in PDF_SUFFIXES:
        return "pdf"
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in HTML_SUFFIXES:
        return "html"
    try:
        first = first_content_line(path)
    except OSError as err:
        raise CorpusError(path, f"cannot read the file ({err.strerror or err}); "
                          "fix: check its permissions") from None
    if RECORD_LINE.match(first):
        return "xllm"
    if CRAWL_LINE.match(first):
        return "crawl"
    if suffix in TEXT_SUFFIXES + MARKDOWN_SUFFIXES:
        return "text"
    if first.startswith("{"):
        return "jsonl"
    known = ", ".join(JSONL_SUFFIXES + CSV_SUFFIXES + HTML_SUFFIXES + PDF_SUFFIXES
                      + TEXT_SUFFIXES + MARKDOWN_SUFFIXES)
    raise CorpusError(path, f"unknown corpus format (extension {suffix or 'none'!r}, first line "
                      f"not JSON nor ID~~{{...}}); fix: pass a folder or a file ending in {known}")


def read_corpus(sources: Iterable[str | Path] | str | Path | None = None, *,
                field_map: FieldMap | None = None, encoding: str = "utf-8",
                on_error: str = "fail", stats: ReadStats | None = None,
                pdf_unit: str = "paragraph", max_file_mb: float | None = None,
                dedupe_content: bool = True) -> Iterator[TextEntity]:
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
    pdf_unit : {"paragraph", "page"}
        The entity of a PDF: a paragraph or a page (:mod:`tablelm.corpus.pdf`).
    max_file_mb : float, optional
        Files larger than this are reported (CorpusError) instead of read; default
        :data:`DEFAULT_MAX_FILE_MB` (512).
    dedupe_content : bool
        Drop entities whose normalized content repeats an earlier one's (module notes).

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
    for name, value in (("on_error", on_error), ("pdf_unit", pdf_unit), ("encoding", encoding),
                        ("max_file_mb", max_file_mb)):
        if value is not None:
            params.check(name, value)  # a ParamError naming the rule
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
    options = {"field_map": field_map, "encoding": encoding, "on_error": on_error,
               "pdf_unit": pdf_unit, "max_file_mb": max_file_mb}
    return _read_all(plan, options, stats, dedupe_content)


def _entities(kind: str, path: Path | None, options: dict, stats):
    if path is None:  # the "builtin" entry of the plan, the only one without a path
        return read_python_docs(stats=stats)
    if kind in ("jsonl", "xllm", "crawl"):
        limit = DEFAULT_MAX_FILE_MB if options["max_file_mb"] is None else options["max_file_mb"]
        try:
            check_file(path, limit, text=True, encoding=options["encoding"])
        except CorpusError as err:
            handle_error(err, options["on_error"], stats)
            return iter(())
        common = {"encoding": options["encoding"], "on_error": options["on_error"], "stats": stats}
        if kind == "jsonl":
            return read_jsonl(path, field_map=options["field_map"], **common)
        if kind == "xllm":
            return read_xllm(path, **common)
        return read_crawl(path, **common)
    return read_folder(path, stats=stats, **options)


def _norm(s: str) -> str:
    return " ".join(s.split()).casefold()  # str.split is the fastest whitespace collapse


def content_key(entity: TextEntity) -> str | None:
    """A digest of an entity's normalized content, or None when it has no text.

    Kept on the (frozen) entity once computed: a build computes it while reading (to drop
    duplicates) and again for the entity-content table (~0.15 s on SciFact each time)."""
    got = entity.__dict__.get("_content_key", _UNSET)
    if got is not _UNSET:
        return got
    text = _norm(entity.text)
    key = None
    if text:
        h = hashlib.sha256()
        for part in (_norm(entity.title), text, *map(_norm, entity.category), "\x00",
                     *sorted(map(_norm, entity.tags)), "\x00", *sorted(entity.related)):
            h.update(part.encode("utf-8", "surrogatepass") + b"\x1f")
        key = h.hexdigest()
    object.__setattr__(entity, "_content_key", key)
    return key


_UNSET = object()


def _clean_str(s: str) -> str:
    """``s`` with lone surrogates (from JSON ``\\ud800`` escapes) replaced by U+FFFD: they
    cannot be encoded as UTF-8, so one of them would stop the whole build when saved."""
    return _SURROGATE.sub("\ufffd", s) if _SURROGATE.search(s) else s


def _clean_json(value, depth: int = 0):
    """Metadata made valid strict JSON: NaN and infinities become null, surrogates U+FFFD."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, dict):
        return {_clean_str(str(k)): _clean_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean_json(v, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    return _clean_str(str(value))


def _needs_json_cleaning(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(not isinstance(k, str) or _needs_json_cleaning(k) or _needs_json_cleaning(v)
                   for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return isinstance(value, tuple) or any(_needs_json_cleaning(v) for v in value)
    return not (value is None or isinstance(value, (bool, int)))


def _nested_deeper_than(value, limit: int) -> bool:
    """Whether objects or lists nest more than ``limit`` levels (an explicit stack: no recursion)."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            v = v.values()
        elif not isinstance(v, (list, tuple)):
            continue
        if depth >= limit:
            return True
        stack.extend((x, depth + 1) for x in v)
    return False


def _cut(s: str, limit: int) -> str:
    """``s`` cut to at most ``limit`` characters, at the last blank before the limit if any."""
    if len(s) <= limit:
        return s
    blank = s.rfind(" ", limit // 2, limit + 1)
    return s[: blank if blank > 0 else limit]


def bounded(entity: TextEntity) -> tuple[TextEntity, list[str]]:
    """``entity`` made safe to build: encodable strings, strict-JSON metadata, and no field
    over the per-record caps (:data:`MAX_TEXT_CHARS`, ...); plus a note per cut."""
    notes: list[str] = []
    changes: dict = {}
    for name in ("id", "text", "title", "source"):
        value = getattr(entity, name)
        clean = _clean_str(value)
        limit = {"text": MAX_TEXT_CHARS, "title": MAX_TITLE_CHARS}.get(name)
        if limit and len(clean) > limit:
            clean = _cut(clean, limit)
            notes.append(f"its {name} has {len(value):,} characters; kept the first {len(clean):,} "
                         f"(a record may have {limit:,}; split it to keep all of it)")
        if clean is not value:
            changes[name] = clean
    for name, most in (("category", MAX_CATEGORY_DEPTH), ("tags", MAX_LABELS), ("related", MAX_LABELS)):
        items = getattr(entity, name)
        kept = tuple(_cut(_clean_str(x), MAX_LABEL_CHARS) for x in items[:most])
        if len(items) > most:
            what = {"category": "category levels", "related": "related items"}.get(name, name)
            notes.append(f"it has {len(items):,} {what}; kept the first {most:,}")
        if kept != items:
            changes[name] = kept
    if entity.metadata and _nested_deeper_than(entity.metadata, MAX_METADATA_DEPTH):
        changes["metadata"] = {}
        notes.append(f"its metadata nests deeper than {MAX_METADATA_DEPTH} levels; dropped it (flatten it to keep it)")
    elif entity.metadata and _needs_json_cleaning(entity.metadata):
        changes["metadata"] = _clean_json(entity.metadata)
    return (replace(entity, **changes) if changes else entity), notes


def _line_of(source: str) -> int | None:
    tail = source.rpartition(":")[2]
    return int(tail) if tail.isdigit() else None


def _read_all(plan, options: dict, stats: ReadStats, dedupe_content: bool) -> Iterator[TextEntity]:
    on_error = options["on_error"]
    seen: dict[str, str] = {}  # id -> where it was first read
    contents: dict[str, str] = {}  # content digest -> id of the first entity
    for kind, path in plan:
        label = builtin_corpus_id() if path is None else str(path)
        stats.sources.setdefault(label, 0)
        for entity in _entities(kind, path, options, stats):
            entity, notes = bounded(entity)
            for note in notes:
                stats.truncated.append((label, _line_of(entity.source), f"entity {entity.id[:80]!r}: {note}"))
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
            if dedupe_content:
                key = content_key(entity)
                if key is not None:
                    first_id = contents.get(key)
                    if first_id is not None:
                        stats.duplicates += 1
                        stats.duplicate_ids.append((entity.id, first_id))
                        continue
                    contents[key] = entity.id
            seen[entity.id] = where
            stats.read += 1
            stats.sources[label] += 1
            yield entity
