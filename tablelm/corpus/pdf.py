"""PDF reader: pdfminer.six's layout analysis, pypdf for the document; the page in every entity.

Units (``pdf_unit``):

* ``"paragraph"`` (default): id ``relpath#page=3&para=2``. The text boxes of pdfminer.six's
  layout analysis (characters grouped into lines and lines into boxes by their positions, and
  boxes put in reading order, so that the columns of a page are read one after the other) are
  split into paragraphs at a change of font size or a vertical gap larger than 1.5 lines. A
  heading (a short line set larger than the body text) is not an entity of its own: it becomes
  the ``title`` of the paragraphs under it. Table cells (short boxes side by side on a common
  baseline) become one paragraph, a row per line and ``" | "`` between cells
  (``metadata["table"]``). Running headers and footers (a box in the top or bottom
  :data:`MARGIN` of the page whose text, digits aside, recurs on another page, or a bare page
  number there) are left out.
* ``"page"``: id ``relpath#page=3``, the page's paragraphs and headings, one per line.

Every entity has ``source`` ``relpath#page=N`` (the PDF open parameter that viewers follow)
and ``metadata["page"]`` (1-based), so a citation always names its page.

Title of the document: the ``/Title`` of its metadata (unless a placeholder such as
"untitled" or "Microsoft Word - x.doc"), else the largest line of page 1, else the file name.
``category``: the folder path, the document title, then the outline (bookmarks) path of the
entry that covers the page. Tags: ``/Keywords`` (split on ``,`` / ``;``). Metadata: author,
subject, page count.

Errors (:class:`~tablelm.errors.CorpusError`, with the file, the page and a fix): a file that
is not a PDF or is damaged beyond repair, an encrypted file that does not open with an empty
password, a page whose text cannot be extracted (with ``on_error="skip"`` only that page is
skipped). A PDF without any text (scanned images) is listed in ``ReadStats.skipped_files``
with an OCR hint.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from tablelm import params
from tablelm.corpus.entity import TextEntity
from tablelm.corpus.stats import ReadStats, handle_error
from tablelm.errors import CorpusError

PDF_SUFFIXES = (".pdf",)
PDF_UNITS = params.REGISTRY["pdf_unit"].constraint.choices
#: A line at least this much larger than the body text is a heading.
HEADING_RATIO = 1.15
MAX_HEADING_CHARS = 120
#: Share of the page height, at the top and at the bottom, where running headers and footers are.
MARGIN = 0.08
#: A box of at most this many lines, of at most MAX_CELL_CHARS characters each, may be a table cell.
MAX_CELL_LINES = 3
MAX_CELL_CHARS = 40
_ENDS_SENTENCE = re.compile(r"[.!?:;]['\")\]]*$")
_PAGE_NUMBER = re.compile(r"^(?:page\s*)?[\divxlc]+(?:\s*(?:of|/)\s*\d+)?$|^[-–—]\s*\d+\s*[-–—]$", re.I)
_PLACEHOLDER_TITLE = re.compile(r"^(untitled|\(anonymous\)|\(unspecified\)|microsoft word - .*|document\d*|slide \d+|"
                                r".*\.(docx?|pdf|tex|dvi|odt|indd))$", re.I)
_REPAIR_HINT = "fix: repair it (qpdf in.pdf out.pdf, or print it to a new PDF) or remove it"


def check_pdf_unit(unit: str) -> str:
    """Validate ``pdf_unit`` (the registry's rule) and return it unchanged."""
    return params.check("pdf_unit", unit)


@contextmanager
def _quiet():
    """pypdf logs and warns about every repaired object: our errors say what matters."""
    loggers = [logging.getLogger(name) for name in ("pypdf", "pdfminer")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _open(path, data: bytes):
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    if not data.lstrip()[:1024].startswith(b"%PDF") and b"%PDF" not in data[:1024]:
        raise CorpusError(path, "not a PDF file (no %PDF header); fix: check the file, or give "
                          "it its real extension")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except DependencyError as err:
                raise CorpusError(path, f"encrypted with AES, which needs the 'cryptography' "
                                  f"package ({err}); fix: pip install cryptography, or decrypt "
                                  "it (qpdf --decrypt in.pdf out.pdf)") from None
            if not ok:
                raise CorpusError(path, "encrypted with a password; fix: decrypt it "
                                  "(qpdf --decrypt --password=PASSWORD in.pdf out.pdf) or "
                                  "remove it")
        n = len(reader.pages)
    except CorpusError:
        raise
    except FileNotDecryptedError:
        raise CorpusError(path, "encrypted with a password; fix: decrypt it (qpdf --decrypt "
                          "--password=PASSWORD in.pdf out.pdf) or remove it") from None
    except (PdfReadError, Exception) as err:  # pypdf raises many types on damaged files
        if isinstance(err, (MemoryError, KeyboardInterrupt)):
            raise
        raise CorpusError(path, f"damaged PDF ({type(err).__name__}: {str(err)[:120]}); "
                          f"{_REPAIR_HINT}") from None
    return reader, n


def _meta_str(info, key: str) -> str:
    try:
        value = info.get(key) if info is not None else None
    except Exception:
        return ""
    if value is None:
        return ""
    try:
        return " ".join(str(value).split())
    except Exception:
        return ""


def _outline(reader) -> list[tuple[int, tuple[str, ...]]]:
    """``(0-based page, title path)`` of every outline entry, in page order."""
    out: list[tuple[int, tuple[str, ...]]] = []

    def walk(items, path):
        last = None
        for item in items:
            if isinstance(item, list):
                if last is not None:
                    walk(item, path + (last,))
                continue
            try:
                title = " ".join(str(item.title).split())
                page = reader.get_destination_page_number(item)
            except Exception:
                continue
            if title and page is not None and page >= 0:
                out.append((page, path + (title,)))
                last = title

    try:
        walk(reader.outline, ())
    except Exception:
        return []
    out.sort(key=lambda x: x[0])
    return out


class _Line(NamedTuple):
    text: str
    x0: float
    y0: float  # baseline side (bottom) of the line, in PDF points from the page's bottom
    x1: float
    size: float  # the most common character size of the line


def _layout_pages(path, data: bytes):
    """Yield ``(page index, page height, boxes or an exception)``; a box is a list of _Line.

    pdfminer.six's layout analysis with its default parameters; boxes come in its reading
    order (``boxes_flow``), which reads the columns of a page one after the other.
    """
    from pdfminer.converter import PDFPageAggregator
    from pdfminer.layout import LAParams, LTChar, LTTextBox, LTTextLine
    from pdfminer.pdfdocument import PDFDocument
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfminer.pdfpage import PDFPage
    from pdfminer.pdfparser import PDFParser

    try:
        document = PDFDocument(PDFParser(io.BytesIO(data)), password="")
        pages = PDFPage.create_pages(document)
    except Exception as err:  # pdfminer raises many types on damaged files
        if isinstance(err, (MemoryError, KeyboardInterrupt)):
            raise
        raise CorpusError(path, f"damaged PDF ({type(err).__name__}: {str(err)[:120]}); "
                          f"{_REPAIR_HINT}") from None
    resources = PDFResourceManager(caching=True)
    device = PDFPageAggregator(resources, laparams=LAParams())
    interpreter = PDFPageInterpreter(resources, device)
    i = 0
    while True:
        try:
            page = next(pages)
        except StopIteration:
            return
        except Exception as err:  # a damaged page tree: the pages after it are lost
            if isinstance(err, (MemoryError, KeyboardInterrupt)):
                raise
            yield i, 0.0, err
            return
        try:
            interpreter.process_page(page)
            layout = device.get_result()
            boxes = []
            for item in layout:
                if not isinstance(item, LTTextBox):
                    continue
                lines = []
                for line in item:
                    if not isinstance(line, LTTextLine):
                        continue
                    text = " ".join(line.get_text().split())
                    if not text:
                        continue
                    sizes = Counter(round(c.size, 1) for c in line if isinstance(c, LTChar))
                    size = sizes.most_common(1)[0][0] if sizes else 0.0
                    lines.append(_Line(text, line.x0, line.y0, line.x1, size))
                if lines:
                    boxes.append(lines)
            yield i, float(layout.height), boxes
        except Exception as err:
            if isinstance(err, (MemoryError, KeyboardInterrupt)):
                raise
            yield i, 0.0, err
        i += 1


def _running_key(box: list[_Line]) -> str:
    """A box's text with its digits masked: "Page 3" and "Page 4" are one running footer."""
    return re.sub(r"\d+", "#", " ".join(line.text for line in box).lower())


def _drop_running(pages: list[tuple[int, float, list]]) -> None:
    """Remove running headers and footers (see the module notes) from every page, in place."""
    def margin_boxes(height, boxes):
        for k, box in enumerate(boxes):
            top, bottom = max(ln.y0 + ln.size for ln in box), min(ln.y0 for ln in box)
            if height and (bottom >= height * (1 - MARGIN) or top <= height * MARGIN):
                yield k, box

    seen: Counter = Counter()
    for _, height, boxes in pages:
        seen.update({_running_key(box) for _, box in margin_boxes(height, boxes)})
    for n, (i, height, boxes) in enumerate(pages):
        drop = {k for k, box in margin_boxes(height, boxes)
                if seen[_running_key(box)] >= 2 or (len(box) == 1 and _PAGE_NUMBER.match(box[0].text))}
        if drop:
            pages[n] = (i, height, [b for k, b in enumerate(boxes) if k not in drop])


def _is_heading(line: _Line, body_size: float) -> bool:
    return body_size > 0 and line.size >= body_size * HEADING_RATIO and len(line.text) <= MAX_HEADING_CHARS


def _tables(boxes: list[list[_Line]], body_size: float) -> list[list[int]]:
    """The tables of a page: lists of box indexes (in reading order), one list per table.

    A cell is a short box (lines of at most :data:`MAX_CELL_CHARS` characters, at most
    :data:`MAX_CELL_LINES` lines unless they are all very short: a column of cells), no heading.
    Cells that share a baseline side by side form a row; rows that overlap horizontally and
    follow each other within 2.5 lines form one table; a table needs two rows of two cells, so
    that two short paragraphs of two columns that happen to share a baseline are no table.
    """
    def is_cell(box):
        if any(_is_heading(ln, body_size) or len(ln.text) > MAX_CELL_CHARS for ln in box):
            return False
        return len(box) <= MAX_CELL_LINES or all(len(ln.text) <= MAX_CELL_CHARS // 2 for ln in box)

    cand = [k for k, box in enumerate(boxes) if is_cell(box)]
    parent = {k: k for k in cand}

    def find(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    # rows: a sweep over the cells' lines by baseline (a page of a thousand cells stays fast)
    lines = sorted(((ln.y0, ln, k) for k in cand for ln in boxes[k]), key=lambda t: t[0])
    paired: set[int] = set()  # baselines where two cells stand side by side
    for i, (y, la, a) in enumerate(lines):
        for y2, lb, b in lines[i + 1:]:
            if y2 - y > 0.3 * max(la.size, lb.size, 1.0):
                break
            if a != b and (la.x1 <= lb.x0 or lb.x1 <= la.x0):
                parent[find(a)] = find(b)
                paired.update((round(y), round(y2)))
    groups: dict[int, list[int]] = {}
    for k in cand:
        groups.setdefault(find(k), []).append(k)
    comps = [g for g in groups.values() if len(g) > 1]

    # rows that touch (x ranges overlap, y within 2.5 lines) are one table
    extents = []
    for g in comps:
        ls = [ln for k in g for ln in boxes[k]]
        lead = max(ln.size for ln in ls) or 1.0
        extents.append((min(ln.x0 for ln in ls), max(ln.x1 for ln in ls),
                        min(ln.y0 for ln in ls) - 2.5 * lead, max(ln.y0 for ln in ls) + 2.5 * lead))
    for i, ea in enumerate(extents):
        for j in range(i + 1, len(extents)):
            eb = extents[j]
            if ea[0] < eb[1] and eb[0] < ea[1] and ea[2] < eb[3] and eb[2] < ea[3]:
                parent[find(comps[i][0])] = find(comps[j][0])
    groups = {}
    for g in comps:
        groups.setdefault(find(g[0]), []).extend(g)
    comps = list(groups.values())
    tables = []
    for g in comps:
        rows = {round(ln.y0) for k in g for ln in boxes[k]} & paired
        if len(rows) >= 2:
            tables.append(sorted(g))
    return sorted(tables)


def _table_text(boxes: list[list[_Line]]) -> str:
    """Cells as rows (lines on one baseline, left to right, ``" | "`` between), top to bottom."""
    lines = sorted((ln for box in boxes for ln in box), key=lambda ln: (-ln.y0, ln.x0))
    rows: list[list[_Line]] = []
    for line in lines:
        if rows and abs(rows[-1][0].y0 - line.y0) <= 0.3 * max(line.size, 1.0):
            rows[-1].append(line)
        else:
            rows.append([line])
    return "\n".join(" | ".join(ln.text for ln in sorted(row, key=lambda ln: ln.x0)) for row in rows)


def _paragraphs(boxes: list[list[_Line]], body_size: float) -> list[tuple[str, str]]:
    """Group a page's boxes into ``(text, kind)``, kind ``"heading"``, ``"text"`` or ``"table"``."""
    out: list[tuple[str, str]] = []
    tables = _tables(boxes, body_size)
    table_at = {t[0]: t for t in tables}  # a table is read where its first cell is
    in_table = {k for t in tables for k in t}
    buf: list[str] = []

    def flush():
        if buf:
            out.append((_join(buf), "text"))
            buf.clear()

    for k in range(len(boxes)):
        if k in in_table:
            if k in table_at:
                flush()
                out.append((_table_text([boxes[j] for j in table_at[k]]), "table"))
            continue
        flush()
        prev = None
        if out and out[-1][1] == "text" and not _ENDS_SENTENCE.search(out[-1][0]) \
                and boxes[k][0].text[:1].islower() and not _is_heading(boxes[k][0], body_size):
            # a paragraph that goes on at the top of the next column: one paragraph
            buf.append(out.pop()[0])  # (prev stays None: no gap between columns to measure)
        for line in boxes[k]:
            if _is_heading(line, body_size):
                flush()
                if out and out[-1][1] == "heading" and prev is not None and abs(prev.size - line.size) < 0.5:
                    out[-1] = (out[-1][0] + " " + line.text, "heading")  # a heading on two lines
                else:
                    out.append((line.text, "heading"))
                prev = line
                continue
            if prev is not None and buf:
                gap = prev.y0 - line.y0
                lead = max(prev.size, line.size, 1.0)
                if (prev.size and line.size and abs(prev.size - line.size) > 0.15 * lead) \
                        or gap > 1.5 * lead * 1.2 or gap < -lead:
                    flush()
            buf.append(line.text)
            prev = line
        flush()
    return out


def _join(lines: list[str]) -> str:
    """Lines of a paragraph as one text; a hyphen at a line end joins the word."""
    text = ""
    for line in lines:
        if text.endswith("-") and line[:1].islower():
            text = text[:-1] + line
        else:
            text = f"{text} {line}" if text else line
    return text


def read_pdf(path: str | Path, relpath: str | None = None, dir_parts: tuple[str, ...] = (), *,
             unit: str = "paragraph", on_error: str = "fail",
             stats: ReadStats | None = None) -> Iterator[TextEntity]:
    """Read one PDF into entities (see the module notes).

    Parameters
    ----------
    path : str or Path
    relpath : str, optional
        The id prefix (the file's path in its corpus folder); the file name by default.
    dir_parts : tuple of str
        Folder path, the start of every category.
    unit : {"paragraph", "page"}
    on_error : {"fail", "skip"}
        A page whose text cannot be extracted raises, or is recorded in ``stats`` and skipped.
    """
    check_pdf_unit(unit)
    path = Path(path)
    relpath = relpath or path.name
    data = path.read_bytes()
    with _quiet():
        reader, n_pages = _open(path, data)
        info = None
        try:
            info = reader.metadata
        except Exception:
            info = None
        outline = _outline(reader)
        pages: list[tuple[int, float, list]] = []
        for i, height, boxes in _layout_pages(path, data):
            if isinstance(boxes, RecursionError):
                handle_error(CorpusError(path, f"page {i + 1}: nested too deeply to extract; "
                                         f"{_REPAIR_HINT}"), on_error, stats)
            elif isinstance(boxes, Exception):
                handle_error(CorpusError(path, f"page {i + 1}: text not extractable "
                                         f"({type(boxes).__name__}: {str(boxes)[:100]}); "
                                         f"{_REPAIR_HINT}"), on_error, stats)
            else:
                pages.append((i, height, boxes))
    _drop_running(pages)
    sizes: Counter = Counter()
    for _, _, boxes in pages:
        for box in boxes:
            for line in box:
                sizes[line.size] += len(line.text)
    body = sizes.most_common(1)[0][0] if sizes else 0.0
    title = _meta_str(info, "/Title")
    if not title or _PLACEHOLDER_TITLE.match(title):
        title = ""
        first = [line for box in pages[0][2] for line in box] if pages and pages[0][0] == 0 else []
        if first:
            big = max(first, key=lambda ln: ln.size)
            if big.size > body and len(big.text) <= MAX_HEADING_CHARS:
                title = big.text
    title = title or path.stem
    tags = tuple(dict.fromkeys(t.strip() for t in re.split(r"[,;]", _meta_str(info, "/Keywords"))
                               if t.strip()))
    base_meta = {"path": relpath, "pages": n_pages}
    for key, name in (("/Author", "author"), ("/Subject", "subject")):
        value = _meta_str(info, key)
        if value and not _PLACEHOLDER_TITLE.match(value):
            base_meta[name] = value

    def section_of(page_index: int) -> tuple[str, ...]:
        best: tuple[str, ...] = ()
        for p, trail in outline:
            if p > page_index:
                break
            best = trail
        return best

    produced = 0
    heading = ""
    for i, _, boxes in pages:
        page_no = i + 1
        category = dir_parts + (title,) + section_of(i)
        source = f"{relpath}#page={page_no}"
        paragraphs = _paragraphs(boxes, body)
        if unit == "page":
            text = "\n".join(t for t, _ in paragraphs).strip()
            if not text:
                continue
            produced += 1
            head = next((t for t, kind in paragraphs if kind == "heading"), "")
            yield TextEntity(id=source, text=text, title=head or f"{title}, page {page_no}",
                             category=category, tags=tags, source=source,
                             metadata=dict(base_meta, page=page_no))
            continue
        k = 0
        for text, kind in paragraphs:
            if kind == "heading":
                heading = text
                continue
            k += 1
            produced += 1
            meta = dict(base_meta, page=page_no, paragraph=k)
            if kind == "table":
                meta["table"] = True
            yield TextEntity(id=f"{source}&para={k}", text=text,
                             title=heading or f"{title}, page {page_no}", category=category,
                             tags=tags, source=source, metadata=meta)
    if not produced and stats is not None:
        stats.skipped_files.append((str(path), f"no extractable text in {n_pages} pages "
                                    "(scanned images?); fix: OCR it first (ocrmypdf in.pdf "
                                    "out.pdf)"))
