"""JSON Lines reader: one JSON object per line, BEIR ``corpus.jsonl`` included.

The BEIR layout is ``{"_id", "title", "text", "metadata"}``. Other layouts are read by naming
their fields in a :class:`FieldMap`. With BEIR metadata the knowledge-graph fields come for
free: ``metadata.keywords`` and ``metadata.cr_categories`` become tags and the citation links
``metadata.links`` (``[docid, type, self]`` triples, as in CACM) become related ids.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tablelm.corpus._text import iter_lines
from tablelm.corpus.entity import TextEntity
from tablelm.corpus.stats import ReadStats, check_on_error, handle_error
from tablelm.errors import CorpusError

_MISSING = object()
DEFAULT_ID_FIELDS = ("_id", "id")


@dataclass(frozen=True)
class FieldMap:
    """Which record fields hold the entity's fields.

    Every name may be a dotted path into nested objects (``"metadata.keywords"``); a key
    that literally contains a dot is tried first. The CLI option of a field is its name
    with dashes: ``text_field`` is ``--text-field`` (see :meth:`option`).

    Parameters
    ----------
    id_field : str, optional
        Field of the unique id; by default ``_id``, then ``id``. Strings and integers.
    text_field : str
        Field of the body text (a string).
    title_field : str
        Field of the title (a string). A record needs a text or a title.
    category_field, tags_field, related_field : str, optional
        Fields of the category path, tags and related ids: a string, or a list of strings
        (a category list is a path, most general first).
    beir_metadata : bool
        When ``tags_field`` / ``related_field`` are not given, take tags from
        ``metadata.keywords`` + ``metadata.cr_categories`` and related ids from
        ``metadata.links`` (``[docid, type, self]``: the distinct docids other than self,
        sorted numerically).
    list_separators : str
        CSV only: the characters that split a cell of the category, tags or related column
        into a list (``"a; b | c"`` → ``a``, ``b``, ``c``). ``""`` keeps cells whole.
    """

    id_field: str | None = None
    text_field: str = "text"
    title_field: str = "title"
    category_field: str | None = None
    tags_field: str | None = None
    related_field: str | None = None
    beir_metadata: bool = True
    list_separators: str = ";|"

    @staticmethod
    def option(name: str) -> str:
        """The CLI option of field ``name``: ``option("text_field") == "--text-field"``."""
        return "--" + name.replace("_", "-")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the fields that map record keys (everything but ``beir_metadata``)."""
        return tuple(f.name for f in fields(cls) if f.name.endswith("_field"))


def _lookup(record: dict, path: str) -> Any:
    """``record[path]``, else follow ``a.b.c`` through nested objects; _MISSING if absent."""
    if path in record:
        return record[path]
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def natural_key(value: str):
    """Sort key putting ``"9"`` before ``"10"`` and numbers before other strings."""
    return (0, int(value), value) if value.isdigit() else (1, 0, value)


def _found(record: dict, limit: int = 20) -> str:
    """The field names of a record for an error message, the first ``limit`` of them."""
    names = [str(k)[:60] for k, _ in zip(record, range(limit))]
    more = len(record) - len(names)
    return (", ".join(names) + (f", ... ({more:,} more)" if more > 0 else "")) or "no fields"


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _strings(value: Any, what: str, option: str, path, line: int) -> tuple[str, ...]:
    """A string or list of scalars as a tuple of non-empty stripped strings, order kept, no repeats."""
    if value is _MISSING or value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out: dict[str, None] = {}  # ordered set: a list's `in` made 50k tags quadratic
    for item in items:
        if isinstance(item, (dict, list)):
            raise CorpusError(
                path,
                f"{what} must be a string or a list of strings, found {_kind(value)} holding "
                f"{_kind(item)}; fix: point {option} at a field of strings",
                line=line,
            )
        if item is None:
            continue
        text = str(item).strip()
        if text:
            out[text] = None
    return tuple(out)


def _guess(record: dict, skip: set, want_id: bool = False) -> str | None:
    """The key a user most likely meant: an id-like key, or the longest string value."""
    keys = [k for k in record if k not in skip]
    if want_id:
        for k in keys:
            if str(k).lower().endswith("id") and isinstance(record[k], (str, int)):
                return k
        return None
    texts = [(len(record[k]), k) for k in keys if isinstance(record[k], str) and record[k].strip()]
    return max(texts, key=lambda t: t[0])[1] if texts else None


def _beir_tags(record: dict) -> tuple[str, ...]:
    tags: dict[str, None] = {}  # ordered set, linear in the number of keywords
    for key in ("metadata.keywords", "metadata.cr_categories"):
        value = _lookup(record, key)
        values = value if isinstance(value, list) else [value] if isinstance(value, str) else []
        for v in values:
            if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                t = str(v).strip()
                if t:
                    tags[t] = None
    return tuple(tags)


def _beir_related(record: dict, own_id: str) -> tuple[str, ...]:
    links = _lookup(record, "metadata.links")
    if not isinstance(links, list):
        return ()
    out = set()
    for link in links:
        if isinstance(link, list) and link and isinstance(link[0], (str, int)):
            this = str(link[2]) if len(link) >= 3 and isinstance(link[2], (str, int)) else own_id
            target = str(link[0]).strip()
            if target and target != this and target != own_id:
                out.add(target)
    return tuple(sorted(out, key=natural_key))


def record_to_entity(record: Any, field_map: FieldMap, path, line: int,
                     source: str) -> TextEntity:
    """Map one decoded JSON value to a :class:`TextEntity`, or raise :class:`CorpusError`."""
    fm = field_map
    if not isinstance(record, dict):
        raise CorpusError(
            path,
            f"expected a JSON object, found {_kind(record)}; fix: write one object per line, "
            'e.g. {"_id": "1", "title": "...", "text": "..."}',
            line=line,
        )
    # id
    id_fields = (fm.id_field,) if fm.id_field else DEFAULT_ID_FIELDS
    raw_id = _MISSING
    for id_key in id_fields:  # the first that is present
        raw_id = _lookup(record, id_key)
        if raw_id is not _MISSING:
            break
    if raw_id is _MISSING or raw_id is None:
        tried = ", ".join(repr(k) for k in id_fields)
        guess = _guess(record, set(), want_id=True)
        raise CorpusError(
            path,
            f"no id field (tried {tried}; found: {_found(record)}); "
            f"fix: pass {FieldMap.option('id_field')} {guess or 'NAME'}",
            line=line,
        )
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or not str(raw_id).strip():
        raise CorpusError(
            path,
            f"the id field {id_key!r} must be a non-empty string or an integer, found "
            f"{_kind(raw_id)} {json.dumps(raw_id)[:40]}; fix: give every record a unique id",
            line=line,
        )
    entity_id = str(raw_id).strip()
    # text and title
    text = _lookup(record, fm.text_field)
    title = _lookup(record, fm.title_field)
    text = _MISSING if text is None else text
    title = _MISSING if title is None else title
    if text is _MISSING and title is _MISSING:
        guess = _guess(record, {id_key})
        raise CorpusError(
            path,
            f"no {fm.text_field!r} field (found: {_found(record)}); "
            f"fix: pass {FieldMap.option('text_field')} {guess or 'NAME'}",
            line=line,
        )
    for value, name, attr in ((text, fm.text_field, "text_field"),
                              (title, fm.title_field, "title_field")):
        if value is not _MISSING and not isinstance(value, str):
            raise CorpusError(
                path,
                f"the {name!r} field must be a string, found {_kind(value)}; "
                f"fix: point {FieldMap.option(attr)} at a string field",
                line=line,
            )
    text = text if isinstance(text, str) else ""  # a string, or missing (checked above)
    title = title.strip() if isinstance(title, str) else ""
    # knowledge-graph fields
    category: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    if fm.category_field:
        category = _strings(_lookup(record, fm.category_field), f"the {fm.category_field!r} field",
                            FieldMap.option("category_field"), path, line)
    if fm.tags_field:
        tags = _strings(_lookup(record, fm.tags_field), f"the {fm.tags_field!r} field",
                        FieldMap.option("tags_field"), path, line)
    elif fm.beir_metadata:
        tags = _beir_tags(record)
    if fm.related_field:
        related = _strings(_lookup(record, fm.related_field), f"the {fm.related_field!r} field",
                           FieldMap.option("related_field"), path, line)
    elif fm.beir_metadata:
        related = _beir_related(record, entity_id)
    # everything else is metadata; BEIR's own "metadata" object is flattened into it
    used = {id_key, fm.text_field, fm.title_field}
    for field_name in (fm.category_field, fm.tags_field, fm.related_field):
        if field_name and field_name in record:
            used.add(field_name)
    metadata: dict = {}
    nested = record.get("metadata")
    if isinstance(nested, dict) and "metadata" not in used:
        metadata.update(nested)
        used.add("metadata")
    for key, value in record.items():
        if key not in used:
            metadata[key] = value
    return TextEntity(id=entity_id, text=text, title=title, category=category, tags=tags,
                      related=related, source=source, metadata=metadata)


def _json_hint(first: bool, line_text: str) -> str:
    stripped = line_text.strip()
    if first and stripped.startswith("["):
        return ("fix: this looks like a JSON array, not JSON Lines; convert it with "
                "jq -c '.[]' FILE > FILE.jsonl")
    if first and stripped == "{":
        return ("fix: this looks like pretty-printed JSON; write one object per line "
                "(jq -c . FILE > FILE.jsonl)")
    return "fix: each line must hold one complete JSON object (check quotes, commas, brackets)"


def read_jsonl(path: str | Path, *, field_map: FieldMap | None = None, encoding: str = "utf-8",
               on_error: str = "fail", stats: ReadStats | None = None) -> Iterator[TextEntity]:
    """Read a JSON Lines file into entities, in file order.

    Parameters
    ----------
    path : str or Path
        The ``.jsonl`` file.
    field_map : FieldMap, optional
        Names of the fields; the default reads BEIR ``corpus.jsonl``.
    encoding : str
        Codec of the file (``--encoding``); a UTF-8 BOM is skipped.
    on_error : {"fail", "skip"}
        Raise the first :class:`~tablelm.errors.CorpusError`, or record it in ``stats`` and
        go on with the next line.
    stats : ReadStats, optional
        Receives skipped lines.

    Yields
    ------
    TextEntity
        ``source`` is ``"<file name>:<line>"``. Blank lines are skipped.
    """
    check_on_error(on_error)
    path = Path(path)
    fm = field_map or FieldMap()
    first = True
    for number, line in iter_lines(path, encoding):
        if isinstance(line, CorpusError):
            handle_error(line, on_error, stats)
            first = False
            continue
        if not line.strip():
            continue
        try:
            try:
                record = json.loads(line)
            except RecursionError:
                raise CorpusError(path, "JSON nested too deeply; fix: flatten the record",
                                  line=number) from None
            except ValueError as err:  # JSONDecodeError, and int() of a huge number
                where = f" at column {err.colno}" if isinstance(err, json.JSONDecodeError) else ""
                msg = err.msg if isinstance(err, json.JSONDecodeError) else str(err)
                raise CorpusError(path, f"invalid JSON ({msg}{where}); {_json_hint(first, line)}",
                                  line=number) from None
            yield record_to_entity(record, fm, path, number, f"{path.name}:{number}")
        except CorpusError as err:
            handle_error(err, on_error, stats)
        first = False
