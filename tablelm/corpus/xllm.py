"""Reader of the reference system's record format: ``ID~~{python dict literal}`` per line.

Keys: ``title_text`` → title, ``description_text`` → text, ``tags_list_text`` → tags,
``category_text`` → category, ``link_list_text`` → related; every other key is metadata.

Decisions, documented:

* The literal is parsed with :func:`ast.literal_eval` only, never ``eval``.
* The reference corpus holds records such as ``'... a company's assets ...'``: an apostrophe
  left unescaped inside a single-quoted string (62 of the 1,800 lines of repository3.txt).
  When a line does not parse, we escape every quote that cannot end a string (one not followed
  by ``,`` ``:`` ``}`` or ``]``) and parse again; such records are read and counted in
  ``ReadStats.repaired``. A line that still does not parse is a :class:`CorpusError`.
* Encoding: strict. Bytes that are not valid in ``encoding`` (UTF-8 by default) are an error
  naming the line and byte offset and suggesting ``--encoding cp1252``; we do not guess per
  line, because a wrong guess silently changes the text that answers cite.
* Duplicates: a record whose id, or whose normalized content (title, text, category, tags,
  compared case-insensitively with whitespace collapsed), was seen before in the file is
  dropped and counted in ``ReadStats.duplicates``; the first one is kept.
* A title or description wrapped in a pair of double quotes (``'"It includes ..."'``, an export
  artifact of the reference corpus) loses that outer pair.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tablelm.corpus._text import content_lines
from tablelm.corpus.entity import TextEntity
from tablelm.corpus.stats import ReadStats, check_on_error, handle_error
from tablelm.errors import CorpusError

#: A line in this format: an id without blanks, ``~~``, then a dict literal.
RECORD_LINE = re.compile(r"^\S+?~~\{")

FIELDS = {
    "title_text": "title",
    "description_text": "text",
    "tags_list_text": "tags",
    "category_text": "category",
    "link_list_text": "related",
}
_CLOSERS = ",:}]"
_SPACES = re.compile(r"\s+")


def repair_quotes(literal: str) -> str:
    """Escape quotes that cannot close a string literal (``'company's'`` → ``'company\\'s'``).

    A quote inside a string closes it only when the next non-blank character is one of
    ``, : } ]`` (or the end); any other quote is taken as part of the text.
    """
    out: list[str] = []
    quote = None
    i, n = 0, len(literal)
    while i < n:
        c = literal[i]
        if quote is None:
            if c in "'\"":
                quote = c
            out.append(c)
        elif c == "\\":
            out.append(literal[i:i + 2])
            i += 2
            continue
        elif c == quote:
            j = i + 1
            while j < n and literal[j] in " \t":
                j += 1
            if j == n or literal[j] in _CLOSERS:
                quote = None
                out.append(c)
            else:
                out.append("\\" + c)
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _literal(text: str):
    try:
        return ast.literal_eval(text), None
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as err:
        return None, err


def _jsonable(value: Any) -> Any:
    """Metadata must be JSON-serializable: tuples/sets → lists, other odd values → str."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _strings(value: Any, key: str, path, line: int) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    out: dict[str, None] = {}  # ordered set, linear in the number of items
    for item in items:
        if not isinstance(item, (str, int, float)) or isinstance(item, bool):
            raise CorpusError(path, f"{key!r} must hold strings, found {type(item).__name__}; "
                              "fix: write it as a list of strings", line=line)
        s = str(item).strip()
        if s:
            out[s] = None
    return tuple(out)


def _unwrap(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] == '"' and '"' not in s[1:-1]:
        return s[1:-1].strip()
    return s


def _norm(s: str) -> str:
    return _SPACES.sub(" ", s).strip().casefold()


def parse_record(line: str, path, number: int, stats: ReadStats | None = None) -> TextEntity:
    """Parse one ``ID~~{...}`` line into a :class:`TextEntity` or raise :class:`CorpusError`."""
    head, sep, body = line.partition("~~")
    record_id = head.strip()
    if not sep or not record_id or any(c.isspace() for c in record_id):
        raise CorpusError(path, "expected 'ID~~{...}' (an id without blanks, '~~', then a "
                          "Python dict literal); fix: correct or remove this line", line=number)
    body = body.strip()
    record, err = _literal(body)
    if err is not None:
        record, err2 = _literal(repair_quotes(body))
        if err2 is not None:
            detail = getattr(err, "msg", None) or str(err) or type(err).__name__
            col = getattr(err, "offset", None)
            where = f" at column {col + len(head) + len(sep)}" if isinstance(col, int) else ""
            raise CorpusError(path, f"the record is not a Python literal ({detail}{where}); "
                              "fix: quote strings and escape quotes inside them", line=number)
        if stats is not None:
            stats.repaired += 1
    if not isinstance(record, dict):
        raise CorpusError(path, f"expected a dict literal after '~~', found "
                          f"{type(record).__name__}; fix: write ID~~{{'title_text': ..., "
                          "'description_text': ...}", line=number)
    title, text = record.get("title_text"), record.get("description_text")
    if title is None and text is None:
        found = ", ".join(map(str, record)) or "no keys"
        raise CorpusError(path, f"no 'title_text' nor 'description_text' key (found: {found}); "
                          "fix: give the record a title or a description", line=number)
    for key, value in (("title_text", title), ("description_text", text)):
        if value is not None and not isinstance(value, str):
            raise CorpusError(path, f"{key!r} must be a string, found {type(value).__name__}; "
                              "fix: quote it", line=number)
    category = _strings(record.get("category_text"), "category_text", path, number)[:1]
    metadata = {str(k): _jsonable(v) for k, v in record.items() if k not in FIELDS}
    return TextEntity(
        id=record_id,
        text=_unwrap(text or ""),
        title=_unwrap(title or ""),
        category=category,
        tags=_strings(record.get("tags_list_text"), "tags_list_text", path, number),
        related=_strings(record.get("link_list_text"), "link_list_text", path, number),
        source=f"{Path(path).name}:{number}",
        metadata=metadata,
    )


def content_key(entity: TextEntity) -> tuple:
    """What makes two records the same content: title, text, category, tags, normalized."""
    return (_norm(entity.title), _norm(entity.text), tuple(map(_norm, entity.category)),
            tuple(sorted(set(map(_norm, entity.tags)))))


def read_xllm(path: str | Path, *, encoding: str = "utf-8", on_error: str = "fail",
              stats: ReadStats | None = None) -> Iterator[TextEntity]:
    """Read a file of ``ID~~{dict literal}`` records, dropping repeated records.

    Parameters
    ----------
    path : str or Path
        The records file (``repository3.txt``).
    encoding : str
        Codec of the file (``--encoding``); strict, see the module notes.
    on_error : {"fail", "skip"}
        Raise the first error, or record it in ``stats`` and go on.
    stats : ReadStats, optional
        Receives ``duplicates``, ``repaired`` and skipped lines.

    Yields
    ------
    TextEntity
        ``source`` is ``"<file name>:<line>"``.
    """
    check_on_error(on_error)
    path = Path(path)
    seen_ids: set[str] = set()
    seen_content: set[tuple] = set()
    for number, line in content_lines(path, encoding, on_error, stats):
        try:
            entity = parse_record(line, path, number, stats)
        except CorpusError as err:
            handle_error(err, on_error, stats)
            continue
        key = content_key(entity)
        if entity.id in seen_ids or key in seen_content:
            if stats is not None:
                stats.duplicates += 1
            continue
        seen_ids.add(entity.id)
        seen_content.add(key)
        yield entity
