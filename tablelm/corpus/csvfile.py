"""CSV / TSV reader: a header row, then one entity per row, fields named by a :class:`FieldMap`.

The header names the columns; :class:`~tablelm.corpus.jsonl.FieldMap` says which hold the id
(``_id``, then ``id`` by default), text, title, category, tags and related ids, exactly as
for JSON Lines. Cells of the category, tags and related columns are lists split on
``FieldMap.list_separators`` (``;`` and ``|`` by default): a category cell
``Geometry; Polyhedra`` is the path ``("Geometry", "Polyhedra")``. Every other non-empty
column goes to ``metadata``.

The delimiter is a tab for ``.tsv`` / ``.tab``; for ``.csv`` the one of ``,`` ``;`` ``\\t``
found most often in the header line. Quoted cells may span lines; ``source`` is
``file:line`` of the row's first line. A row with more or fewer cells than the header is an
error naming its line (usually an unquoted delimiter or newline inside a cell).
"""

from __future__ import annotations

import csv
import io
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

from tablelm.corpus._text import decode_text
from tablelm.corpus.entity import TextEntity
from tablelm.corpus.jsonl import FieldMap, record_to_entity
from tablelm.corpus.stats import ReadStats, check_on_error, handle_error
from tablelm.errors import CorpusError

CSV_SUFFIXES = (".csv", ".tsv", ".tab")
_QUOTE_HINT = "fix: quote cells that hold the delimiter or a newline (\"a, b\")"


def _delimiter(path: Path, header: str) -> str:
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t"
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _split(value: str, seps: str) -> list[str]:
    if not seps:
        return [value]
    return [v.strip() for v in re.split("[" + re.escape(seps) + "]", value) if v.strip()]


def read_csv(path: str | Path, *, field_map: FieldMap | None = None, encoding: str = "utf-8",
             on_error: str = "fail", stats: ReadStats | None = None) -> Iterator[TextEntity]:
    """Read a CSV/TSV file into entities, in row order (see the module notes).

    Raises
    ------
    CorpusError
        Undecodable bytes, a missing header, a row of the wrong width, a missing id or text
        column (with the column names found and the option to pass).
    """
    check_on_error(on_error)
    path = Path(path)
    fm = field_map or FieldMap()
    try:
        text = decode_text(path, path.read_bytes(), encoding)
    except CorpusError as err:
        handle_error(err, on_error, stats)
        return
    lines = text.split("\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        if stats is not None:
            stats.empty += 1
        return
    delim = _delimiter(path, lines[first])
    reader = csv.reader(io.StringIO(text), delimiter=delim, strict=True)
    header: list[str] | None = None
    list_fields = {f for f in (fm.category_field, fm.tags_field, fm.related_field) if f}
    fm_rows = replace(fm, beir_metadata=False)
    old_limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        line_no = 0
        while True:
            start = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as err:
                handle_error(CorpusError(path, f"malformed CSV ({err}); {_QUOTE_HINT}",
                                         line=reader.line_num or start), on_error, stats)
                if on_error == "skip":
                    return  # the parser's state is lost: the rest of the file is not reliable
                return
            line_no = start
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [h.strip().lstrip("\ufeff") for h in row]
                counts = Counter(header)  # header.count per column was quadratic in the columns
                dupes = sorted(h for h, n in counts.items() if n > 1 and h)
                if dupes:
                    handle_error(CorpusError(path, f"the header repeats column(s) "
                                             f"{', '.join(dupes)}; fix: give every column a "
                                             "unique name", line=line_no), on_error, stats)
                    return
                continue
            try:
                if len(row) != len(header):
                    raise CorpusError(path, f"{len(row)} cells but the header has {len(header)} "
                                      f"columns; {_QUOTE_HINT}", line=line_no)
                record: dict = {}
                for name, cell in zip(header, row):
                    if not name:
                        continue
                    cell = cell.strip()
                    if not cell:
                        continue
                    record[name] = _split(cell, fm.list_separators) if name in list_fields else cell
                yield record_to_entity(record, fm_rows, path, line_no, f"{path.name}:{line_no}")
            except CorpusError as err:
                handle_error(err, on_error, stats)
    finally:
        csv.field_size_limit(old_limit)
