"""Folder reader: every file of a folder by its type; ``.txt`` and Markdown files read here.

A folder is walked recursively in sorted order; hidden files and folders (``.git``) are not
read. :func:`read_folder` chooses the reader of each file (its table lists them); files of
other types are listed in ``ReadStats.skipped_files`` with the reason. A ``.txt`` file in the
reference record format (``ID~~{...}`` lines) is read by :mod:`tablelm.corpus.xllm`, a crawl
file (``URL<TAB>(...)<TAB>~HTML``) by :mod:`tablelm.corpus.crawl`.

Markdown is read from markdown-it-py's CommonMark token stream, whose block tokens carry
their line ranges: headings (ATX ``#`` .. ``######`` and setext underlines, top-level ones
only: not in lists, quotes or code) split a file into sections. A section's entity has

* ``id`` ``relpath#slug`` (GitHub-style slug, repeats numbered ``-2``, ``-3``); text before the
  first heading is the entity ``relpath``;
* ``title`` the heading text, ``category`` the folder parts, then the file title, then the
  enclosing headings: ``("guide", "Install", "Linux")`` for ``### Debian`` under
  ``## Linux`` in ``guide/install.md`` titled ``# Install``;
* ``related`` the targets of the section's links (inline, reference-style and ``<scheme:...>``
  autolinks; not images, not code), in order; relative targets are resolved against the file
  (``../api.md#load`` → ``api.md#load``) so that they name other entities;
* ``text`` the section's lines as written (Markdown kept, heading and front matter removed), so
  that citations are spans of the file's own text; ``source`` ``relpath:line``.

Front matter (``---`` ... ``---`` or ``...`` at the top) is YAML, read with PyYAML's
``safe_load`` (block scalars, nesting, quoting as YAML has them): ``title`` is the file title,
``tags`` (a list, or a comma-separated string) the tags of every section; the other keys go to
``metadata["front_matter"]`` (dates as ISO strings). Front matter that is not valid YAML, not a
mapping, or expands to more than :data:`MAX_FRONT_MATTER_NODES` values (nested aliases) is a
:class:`~tablelm.errors.CorpusError` naming the line. Sections with an empty body are dropped
(``ReadStats.empty``).

The work is linear in the file's size: slugs are numbered with a counter per slug (a heading
repeated 10,000 times) and links are de-duplicated with a dict (a section with 5,000 links).
"""

from __future__ import annotations

import bisect
import os
import posixpath
import re
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote

from tablelm.corpus._text import decode_text, first_content_line
from tablelm.corpus.entity import TextEntity
from tablelm.corpus.stats import ReadStats, check_on_error, handle_error
from tablelm.errors import CorpusError

TEXT_SUFFIXES = (".txt",)
MARKDOWN_SUFFIXES = (".md", ".markdown")
SUFFIXES = TEXT_SUFFIXES + MARKDOWN_SUFFIXES
#: Longest first line still taken as a .txt file's title.
MAX_TITLE_CHARS = 120

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:|^//")
#: Largest number of values front matter may expand to (YAML aliases can nest exponentially).
MAX_FRONT_MATTER_NODES = 10_000


def slugify(text: str) -> str:
    """GitHub-style anchor: lower case, punctuation dropped, blanks to ``-``."""
    slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
    return slug or "section"


def plain_heading(text: str) -> str:
    """Heading text without Markdown markup: links → their text, no backquotes or bold."""
    return _inline_text(_markdown().parseInline(text)[0].children or [])


def _inline_text(children) -> str:
    """The text a reader sees of inline tokens: text, code spans, image descriptions."""
    parts = [c.content for c in children if c.type in ("text", "code_inline", "image")
             or c.type in ("softbreak", "hardbreak")]
    return " ".join("".join(p if p else " " for p in parts).split())


@lru_cache(maxsize=1)
def _markdown():
    from markdown_it import MarkdownIt

    class _TargetsAsWritten(MarkdownIt):
        def normalizeLink(self, url: str) -> str:
            return url  # targets as written: resolve_link reads them as paths

    return _TargetsAsWritten("commonmark")


def _plain(value, budget: list[int]):
    """YAML values as JSON values (dates → ISO strings), counting every value against ``budget``."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"it expands to more than {MAX_FRONT_MATTER_NODES} values (nested aliases?)")
    if isinstance(value, dict):
        return {str(k): _plain(v, budget) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v, budget) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def parse_front_matter(text: str, path: str = "front matter", line: int = 2) -> dict:
    """Front matter as a dict, with PyYAML's ``safe_load``.

    Raises
    ------
    CorpusError
        Not valid YAML (with the line of the problem), not a mapping, or too large.
    """
    import yaml

    try:
        # safe_load's loader, in C when PyYAML has libyaml
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ValueError(f"it is a {type(data).__name__}, not a mapping of keys to values")
        return _plain(data, [MAX_FRONT_MATTER_NODES])
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = line + mark.line if mark is not None else line
        what = " ".join(str(getattr(err, "problem", None) or err).split())
        raise CorpusError(path, f"front matter is not valid YAML ({what}); fix: correct it (quote "
                          "values that contain ': ' or start with '[', '{', '*', '&', '!', '%', '@')",
                          line=where) from None
    except (ValueError, RecursionError) as err:
        raise CorpusError(path, f"front matter is not usable ({err}); fix: write it as 'key: value' "
                          "lines", line=line) from None


def _front_matter(lines: list[str], relpath: str) -> tuple[dict, int]:
    """(front matter, index of the first body line)."""
    if not lines or lines[0].rstrip() != "---":
        return {}, 0
    for j in range(1, len(lines)):
        if lines[j].rstrip() in ("---", "..."):
            return parse_front_matter("\n".join(lines[1:j]), relpath, 2), j + 1
    return {}, 0


def resolve_link(target: str, relpath: str) -> str:
    """``../api.md#load`` seen in ``guide/x.md`` → ``api.md#load``; URLs are kept as they are."""
    if not target or _SCHEME.match(target):
        return target
    if target.startswith("#"):
        return f"{relpath}#{target[1:]}" if len(target) > 1 else relpath
    path, _, anchor = target.partition("#")
    path = unquote(path.split("?", 1)[0])
    if not path:
        return target
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(relpath), path))
    if joined.startswith("../") or joined == ".." or path.startswith("/"):
        return target
    return f"{joined}#{anchor}" if anchor else joined


def _tags(front: dict) -> tuple[str, ...]:
    value = front.get("tags") or ()
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    out: dict[str, None] = {}
    for item in items:
        item = " ".join(str(item).split()) if not isinstance(item, (dict, list)) else ""
        if item:
            out[item] = None
    return tuple(out)


def _blocks(body: str, offset: int):
    """Top-level headings and the links of every other block, from markdown-it's tokens.

    Returns ``(headings, links)``: ``headings`` as ``(first line, line after, level, text)``,
    ``links`` as ``(line, target)`` in document order; lines are 0-based in the whole file.
    """
    tokens = _markdown().parse(body)
    headings: list[tuple[int, int, int, str]] = []
    links: list[tuple[int, str]] = []
    for k, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.level == 0 and tok.map:
            text = _inline_text(tokens[k + 1].children or []) if k + 1 < len(tokens) else ""
            headings.append((tok.map[0] + offset, tok.map[1] + offset, int(tok.tag[1]), text))
        elif tok.type == "inline" and tok.map and tok.children and not (
                k > 0 and tokens[k - 1].type == "heading_open"):
            line = tok.map[0] + offset
            links.extend((line, c.attrs["href"]) for c in tok.children
                         if c.type == "link_open" and c.attrs.get("href"))
    return headings, links


def split_markdown(text: str, relpath: str, dir_parts: tuple[str, ...] = (),
                   stats: ReadStats | None = None) -> list[TextEntity]:
    """Split one Markdown document into section entities (see the module notes).

    ``text`` must already use ``\\n`` newlines; ``relpath`` is the file's path relative to
    the corpus folder, POSIX style.
    """
    lines = text.split("\n")
    front, start = _front_matter(lines, relpath)
    headings, links = _blocks("\n".join(lines[start:]), start)

    stem = posixpath.splitext(posixpath.basename(relpath))[0]
    fm_title = front.get("title")
    fm_title = " ".join(str(fm_title).split()) if isinstance(fm_title, (str, int, float)) else ""
    title_heading = None
    if headings and headings[0][2] == 1 and headings[0][3] and (
            not fm_title or fm_title.casefold() == headings[0][3].casefold()):
        title_heading = headings[0][0]
    file_title = fm_title or (headings[0][3] if title_heading is not None else stem)
    tags = _tags(front)
    extra = {k: v for k, v in front.items() if k not in ("title", "tags")}

    # the links of each section (section 0: before the first heading), one pass
    starts = [h[0] for h in headings]
    section_links: list[dict[str, None]] = [{} for _ in range(len(headings) + 1)]
    for line, target in links:
        target = resolve_link(target.strip(), relpath)
        if target:
            section_links[bisect.bisect_right(starts, line)][target] = None

    def make(eid, title, category, level, first, last, line_no, related):
        body = "\n".join(lines[first:last]).strip("\n")
        if not body.strip():
            if stats is not None and (level or not headings):  # an empty preamble is no section
                stats.empty += 1
            return None
        meta = {"path": relpath, "level": level}
        if extra:
            meta["front_matter"] = extra
        return TextEntity(id=eid, text=body, title=title, category=category, tags=tags,
                          related=tuple(r for r in related if r != eid),
                          source=f"{relpath}:{line_no}", metadata=meta)

    entities: list[TextEntity] = []
    first_heading = headings[0][0] if headings else len(lines)
    pre_first = next((j for j in range(start, first_heading) if lines[j].strip()), start)
    pre = make(relpath, file_title, dir_parts, 0, start, first_heading, pre_first + 1, section_links[0])
    if pre is not None:
        entities.append(pre)

    used: set[str] = set()
    next_n: dict[str, int] = {}  # per slug, the last number tried: repeats cost O(1) each
    stack: list[tuple[int, str, int]] = []  # enclosing (level, text, line index)
    for k, (i, after, level, title) in enumerate(headings):
        while stack and stack[-1][0] >= level:
            stack.pop()
        base = slugify(title)
        slug, n = base, next_n.get(base, 1)
        if n > 1:
            slug = f"{base}-{n}"
        while slug in used:
            n += 1
            slug = f"{base}-{n}"
        next_n[base] = n
        used.add(slug)
        top = stack[0][2] if stack else i
        if top == title_heading:
            category = dir_parts + tuple(s[1] for s in stack)
        else:
            category = dir_parts + (file_title,) + tuple(s[1] for s in stack)
        end = headings[k + 1][0] if k + 1 < len(headings) else len(lines)
        entity = make(f"{relpath}#{slug}", title or file_title, category, level, after, end, i + 1,
                      section_links[k + 1])
        if entity is not None:
            entities.append(entity)
        stack.append((level, title, i))
    return entities


def read_text_file(path: Path, relpath: str, dir_parts: tuple[str, ...] = (), *,
                   encoding: str = "utf-8", stats: ReadStats | None = None) -> list[TextEntity]:
    """A ``.txt`` file as one entity; raises :class:`CorpusError` on undecodable bytes."""
    text = decode_text(path, Path(path).read_bytes(), encoding).strip()
    if not text:
        if stats is not None:
            stats.empty += 1
        return []
    first = next(line.strip() for line in text.split("\n") if line.strip())
    title = first if len(first) < MAX_TITLE_CHARS else Path(relpath).stem
    return [TextEntity(id=relpath, text=text, title=title, category=dir_parts,
                       source=f"{relpath}:1", metadata={"path": relpath})]


def read_markdown_file(path: Path, relpath: str, dir_parts: tuple[str, ...] = (), *,
                       encoding: str = "utf-8", stats: ReadStats | None = None) -> list[TextEntity]:
    """A Markdown file as section entities; raises :class:`CorpusError` on undecodable bytes."""
    text = decode_text(path, Path(path).read_bytes(), encoding)
    return split_markdown(text, relpath, dir_parts, stats)


def walk_files(root: Path) -> list[tuple[Path, str]]:
    """``(path, relpath)`` of every non-hidden file under ``root``, sorted by relative path.

    Sorting the whole list (not each folder) makes ``a/x.md`` come before ``b.md`` whatever
    the file system's order.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith("."):
                full = Path(dirpath, name)
                found.append((full.relative_to(root).parts, full))
    found.sort(key=lambda item: item[0])
    return [(full, "/".join(parts)) for parts, full in found]


def is_xllm_file(path: Path) -> bool:
    """Whether the first non-blank line looks like ``ID~~{...}``."""
    from tablelm.corpus.xllm import RECORD_LINE

    return bool(RECORD_LINE.match(first_content_line(path)))


#: Folders of a Sphinx build that copy the pages' sources or hold theme files: next to HTML
#: pages they are not read (the pages are).
SPHINX_SIDE_DIRS = frozenset({"_sources", "_static"})


def _plan(root: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """Files to read under ``root`` and the folders left out, with the reason."""
    from tablelm.corpus.html import HTML_SUFFIXES

    files = walk_files(root)
    html_dirs = {rel.rpartition("/")[0] for _, rel in files
                 if rel.lower().endswith(HTML_SUFFIXES)}
    kept: list[tuple[Path, str]] = []
    left_out: dict[str, int] = {}
    for full, rel in files:
        parts = rel.split("/")
        side = next((k for k in range(len(parts) - 1) if parts[k] in SPHINX_SIDE_DIRS
                     and "/".join(parts[:k]) in html_dirs), None)
        if side is None:
            kept.append((full, rel))
        else:
            d = "/".join(parts[:side + 1])
            left_out.setdefault(d, 0)
            left_out[d] += 1
    reasons = [(str(root / d), f"Sphinx build folder next to HTML pages ({n} files): the "
                f"pages are read instead") for d, n in sorted(left_out.items())]
    return kept, reasons


def read_folder(path: str | Path, *, encoding: str = "utf-8", on_error: str = "fail",
                stats: ReadStats | None = None, field_map=None, pdf_unit: str = "paragraph",
                max_file_mb: float | None = None) -> Iterator[TextEntity]:
    """Read a folder (recursively) or one file, choosing the reader of each file by type.

    ==============================  =========================================================
    file                            reader
    ==============================  =========================================================
    ``.md``, ``.markdown``          Markdown sections (this module)
    ``.txt``                        one entity; ``ID~~{...}`` records (:mod:`.xllm`) and
                                    ``URL<TAB>(...)<TAB>~HTML`` crawls (:mod:`.crawl`) by
                                    their first line
    ``.html``, ``.htm``, ``.xhtml`` pages and sections, links resolved between all the pages
                                    of the folder (:mod:`.html`)
    ``.pdf``                        paragraphs or pages (:mod:`.pdf`, ``pdf_unit``)
    ``.jsonl``, ``.json``, ...      JSON Lines (:mod:`.jsonl`, ``field_map``)
    ``.csv``, ``.tsv``              rows (:mod:`.csvfile`, ``field_map``)
    ==============================  =========================================================

    Other files are listed in ``stats.skipped_files`` with the reason; so are Sphinx's
    ``_sources`` / ``_static`` folders next to HTML pages. Every file is first checked:
    larger than ``max_file_mb`` (default :data:`~tablelm.corpus._text.DEFAULT_MAX_FILE_MB`),
    or binary data (NUL bytes) in a text file, is a :class:`CorpusError` for that file.

    Parameters
    ----------
    path : str or Path
        A folder, or a single file (ids are then relative to its folder).
    encoding : str
        Codec of the text files (``--encoding``); HTML pages follow their ``<meta charset>``.
    on_error : {"fail", "skip"}
        Raise the first :class:`CorpusError`, or record it in ``stats`` and go on with the
        next record or file.
    stats : ReadStats, optional
        Receives ``empty``, ``skipped_files`` and skipped files' errors.

    Yields
    ------
    TextEntity
    """
    from tablelm.corpus._text import DEFAULT_MAX_FILE_MB, check_file
    from tablelm.corpus.crawl import CRAWL_LINE, read_crawl
    from tablelm.corpus.csvfile import CSV_SUFFIXES, read_csv
    from tablelm.corpus.html import HTML_SUFFIXES, read_html_pages
    from tablelm.corpus.jsonl import read_jsonl
    from tablelm.corpus.pdf import PDF_SUFFIXES, check_pdf_unit, read_pdf

    check_on_error(on_error)
    check_pdf_unit(pdf_unit)
    limit = DEFAULT_MAX_FILE_MB if max_file_mb is None else max_file_mb
    path = Path(path)
    if path.is_dir():
        files, left_out = _plan(path)
        if stats is not None:
            stats.skipped_files.extend(left_out)
    else:
        files = [(path, path.name)]
    jsonl_suffixes = (".jsonl", ".json", ".ndjson")

    def checked(full: Path, text: bool = True) -> bool:
        try:
            check_file(full, limit, text=text, encoding=encoding)
            return True
        except CorpusError as err:
            handle_error(err, on_error, stats)
        except OSError as err:
            handle_error(CorpusError(full, f"cannot read the file ({err.strerror or err}); "
                                     "fix: check its permissions"), on_error, stats)
        return False

    # HTML pages first read together (links between them are resolved), emitted in file order
    html_files = [(f, r) for f, r in files if f.suffix.lower() in HTML_SUFFIXES]
    html_entities: dict[str, list[TextEntity]] = {}
    if html_files:
        html_ok = [(f, r) for f, r in html_files if checked(f)]
        for e in read_html_pages(html_ok, encoding=encoding, on_error=on_error, stats=stats):
            html_entities.setdefault(e.metadata.get("path", ""), []).append(e)

    for full, relpath in files:
        suffix = full.suffix.lower()
        parts = tuple(relpath.split("/")[:-1])
        try:
            if suffix in HTML_SUFFIXES:
                yield from html_entities.pop(relpath, [])
                continue
            known = suffix in MARKDOWN_SUFFIXES + TEXT_SUFFIXES + PDF_SUFFIXES + CSV_SUFFIXES \
                + jsonl_suffixes
            if not known:
                if stats is not None:
                    stats.skipped_files.append(
                        (str(full), f"unsupported file type {suffix or '(no extension)'!r}: "
                         "folders are read for .txt .md .html .pdf .jsonl .json .csv .tsv"))
                continue
            if not checked(full, text=suffix not in PDF_SUFFIXES):
                continue
            if suffix in MARKDOWN_SUFFIXES:
                yield from read_markdown_file(full, relpath, parts, encoding=encoding, stats=stats)
            elif suffix in TEXT_SUFFIXES:
                first = first_content_line(full)
                if is_xllm_file(full):
                    from tablelm.corpus.xllm import read_xllm

                    yield from read_xllm(full, encoding=encoding, on_error=on_error, stats=stats)
                elif CRAWL_LINE.match(first):
                    yield from read_crawl(full, encoding=encoding, on_error=on_error, stats=stats)
                else:
                    yield from read_text_file(full, relpath, parts, encoding=encoding, stats=stats)
            elif suffix in PDF_SUFFIXES:
                yield from read_pdf(full, relpath, parts, unit=pdf_unit, on_error=on_error,
                                    stats=stats)
            elif suffix in CSV_SUFFIXES:
                yield from read_csv(full, field_map=field_map, encoding=encoding,
                                    on_error=on_error, stats=stats)
            else:
                yield from read_jsonl(full, field_map=field_map, encoding=encoding,
                                      on_error=on_error, stats=stats)
        except CorpusError as err:
            handle_error(err, on_error, stats)
        except OSError as err:
            handle_error(CorpusError(full, f"cannot read the file ({err.strerror or err}); "
                                     "fix: check its permissions"), on_error, stats)
