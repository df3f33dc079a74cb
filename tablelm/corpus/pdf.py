"""PDF reader (pypdf, pure Python): paragraph or page entities, the page number in every one.

Units (``pdf_unit``):

* ``"paragraph"`` (default): id ``relpath#page=3&para=2``. Lines are rebuilt from pypdf's
  text fragments (position and font size); a paragraph ends at a vertical gap larger than
  1.5 lines, a change of font size, or a heading line. A heading (a short line set larger than
  the body text) is not an entity of its own: it becomes the ``title`` of the paragraphs under
  it.
* ``"page"``: id ``relpath#page=3``, the page's text.

Every entity has ``source`` ``relpath#page=N`` (the PDF open parameter that viewers follow)
and ``metadata["page"]`` (1-based), so a citation always names its page.

Title of the document: the ``/Title`` of its metadata (unless a placeholder such as
"untitled" or "Microsoft Word - x.doc"), else the largest line of page 1, else the file name.
``category``: the folder path, the document title, then the outline (bookmarks) path of the
entry that covers the page. Tags: ``/Keywords`` (split on ``,`` / ``;``). Metadata: author,
subject, page count.

Errors (:class:`~tablelm.errors.CorpusError`, with the file, the page and a fix): a file that
is not a PDF or is damaged beyond pypdf's repair, an encrypted file that does not open with
an empty password, a page whose text cannot be extracted (with ``on_error="skip"`` only that
page is skipped). A PDF without any text (scanned images) is listed in
``ReadStats.skipped_files`` with an OCR hint.
"""

from __future__ import annotations

import io
import logging
import math
import re
import warnings
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tablelm.corpus.entity import TextEntity
from tablelm.corpus.stats import ReadStats, handle_error
from tablelm.errors import CorpusError, ParamError

PDF_SUFFIXES = (".pdf",)
PDF_UNITS = ("paragraph", "page")
#: A line at least this much larger than the body text is a heading.
HEADING_RATIO = 1.15
MAX_HEADING_CHARS = 120
_PLACEHOLDER_TITLE = re.compile(r"^(untitled|microsoft word - .*|document\d*|slide \d+|"
                                r".*\.(docx?|pdf|tex|dvi|odt|indd))$", re.I)
_REPAIR_HINT = "fix: repair it (qpdf in.pdf out.pdf, or print it to a new PDF) or remove it"


def check_pdf_unit(unit: str) -> str:
    if unit not in PDF_UNITS:
        raise ParamError(f"The 'pdf_unit' parameter must be one of "
                         f"{', '.join(repr(u) for u in PDF_UNITS)}. Got {unit!r}.")
    return unit


@contextmanager
def _quiet():
    """pypdf logs and warns about every repaired object: our errors say what matters."""
    logger = logging.getLogger("pypdf")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
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


def _lines(page) -> list[tuple[str, float, float]]:
    """``(text, y, font size)`` of each line of a page, top to bottom as pypdf reads it."""
    frags: list[tuple[str, float, float]] = []

    def visit(text, cm, tm, font_dict, font_size):
        if not text:
            return
        try:
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            scale = math.hypot(tm[2], tm[3]) * (math.hypot(cm[2], cm[3]) or 1.0)
            size = abs(float(font_size) * (scale or 1.0))
        except Exception:
            y, size = 0.0, 0.0
        frags.append((text, float(y), size))

    text = page.extract_text(visitor_text=visit)
    lines: list[list] = []
    cur = None
    for t, y, size in frags:
        for k, piece in enumerate(t.split("\n")):
            if k > 0:
                cur = None
            if not piece.strip():
                continue
            if cur is not None and y == 0.0 and size == 0.0:
                cur[0] += piece
                continue
            if cur is None or abs(y - cur[1]) > max(cur[2], size, 1.0) * 0.5:
                cur = [piece, y, size]
                lines.append(cur)
            else:
                cur[0] += piece
                cur[2] = max(cur[2], size)
    result = [(" ".join(t.split()), y, s) for t, y, s in lines if t.strip()]
    if not result and text and text.strip():  # no usable positions: pypdf's own lines
        result = [(" ".join(t.split()), 0.0, 0.0) for t in text.split("\n") if t.strip()]
    return result


def _paragraphs(lines, body_size: float) -> list[tuple[str, bool]]:
    """Group lines into ``(paragraph text, is_heading)``."""
    out: list[tuple[str, bool]] = []
    buf: list[str] = []
    prev = None

    def flush():
        if buf:
            out.append((_join(buf), False))
            buf.clear()

    for text, y, size in lines:
        heading = (body_size > 0 and size >= body_size * HEADING_RATIO
                   and len(text) <= MAX_HEADING_CHARS)
        if heading:
            flush()
            if out and out[-1][1] and prev is not None and abs(prev[2] - size) < 0.5:
                out[-1] = (out[-1][0] + " " + text, True)  # a heading on two lines
            else:
                out.append((text, True))
            prev = (text, y, size)
            continue
        if prev is not None and buf:
            gap = prev[1] - y
            lead = max(prev[2], size, 1.0)
            if (prev[2] and size and abs(prev[2] - size) > 0.15 * lead) \
                    or (gap and (gap > 1.5 * lead * 1.2 or gap < -lead)):
                flush()
        buf.append(text)
        prev = (text, y, size)
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
        pages: list[tuple[int, list]] = []
        for i in range(n_pages):
            try:
                pages.append((i, _lines(reader.pages[i])))
            except RecursionError:
                handle_error(CorpusError(path, f"page {i + 1}: nested too deeply to extract; "
                                         f"{_REPAIR_HINT}"), on_error, stats)
            except Exception as err:
                if isinstance(err, (MemoryError, KeyboardInterrupt)):
                    raise
                handle_error(CorpusError(path, f"page {i + 1}: text not extractable "
                                         f"({type(err).__name__}: {str(err)[:100]}); "
                                         f"{_REPAIR_HINT}"), on_error, stats)
    sizes: Counter = Counter()
    for _, lines in pages:
        for text, _, size in lines:
            sizes[round(size, 1)] += len(text)
    body = sizes.most_common(1)[0][0] if sizes else 0.0
    title = _meta_str(info, "/Title")
    if not title or _PLACEHOLDER_TITLE.match(title):
        title = ""
        first = pages[0][1] if pages and pages[0][0] == 0 else []
        if first:
            big = max(first, key=lambda l: l[2])
            if big[2] > body and len(big[0]) <= MAX_HEADING_CHARS:
                title = big[0]
    title = title or path.stem
    tags = tuple(dict.fromkeys(t.strip() for t in re.split(r"[,;]", _meta_str(info, "/Keywords"))
                               if t.strip()))
    base_meta = {"path": relpath, "pages": n_pages}
    for key, name in (("/Author", "author"), ("/Subject", "subject")):
        value = _meta_str(info, key)
        if value:
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
    for i, lines in pages:
        page_no = i + 1
        category = dir_parts + (title,) + section_of(i)
        source = f"{relpath}#page={page_no}"
        if unit == "page":
            text = "\n".join(t for t, _, _ in lines).strip()
            if not text:
                continue
            produced += 1
            head = next((t for t, _, s in lines if body and s >= body * HEADING_RATIO), "")
            yield TextEntity(id=source, text=text, title=head or f"{title}, page {page_no}",
                             category=category, tags=tags, source=source,
                             metadata=dict(base_meta, page=page_no))
            continue
        k = 0
        for text, is_heading in _paragraphs(lines, body):
            if is_heading:
                heading = text
                continue
            k += 1
            produced += 1
            yield TextEntity(id=f"{source}&para={k}", text=text,
                             title=heading or f"{title}, page {page_no}", category=category,
                             tags=tags, source=source,
                             metadata=dict(base_meta, page=page_no, paragraph=k))
    if not produced and stats is not None:
        stats.skipped_files.append((str(path), f"no extractable text in {n_pages} pages "
                                    "(scanned images?); fix: OCR it first (ocrmypdf in.pdf "
                                    "out.pdf)"))
