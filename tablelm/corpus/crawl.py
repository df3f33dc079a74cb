"""Reader of the reference system's crawl files: ``URL<TAB>('Title', 'Category ', depth)<TAB>~HTML``.

One crawled page per line (Wolfram MathWorld in the reference). Each page is one entity:

* ``id`` the URL, ``title`` the page's ``<h1>`` (else the crawl tuple's title);
* ``text`` the content between ``<!-- Begin Content -->`` and ``<!-- End Content -->`` (formula
  images give their ``alt`` text); a page whose content is empty but that points elsewhere
  (``<p class="CrossRefs">``, MathWorld's "See" pages) gets ``See: <target titles>``;
* ``category`` a breadcrumb path (``<ul class="breadcrumb">``): the one whose last item is the
  crawl tuple's category (a page may be classified under several), else the first one; the
  other paths are kept in ``metadata["classifications"]``;
* ``related`` the "See also" links (``<!-- Begin See Also -->`` ... ``<!-- End See Also -->``),
  the CrossRefs links, then the content's links to pages of the same site, as absolute URLs:
  a URL that is another page of the crawl is that page's entity id;
* ``metadata``: ``url``, ``depth``, ``crawl_category``, ``description``, the ``DC.*`` meta
  tags (``DC.Subject`` lists), the references (``<cite>``), ``see_also`` titles.

Detected by content (the first line starts with ``http(s)://...<TAB>(``), whatever the file's
extension. Errors name the line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

from tablelm.corpus._text import content_lines
from tablelm.corpus.entity import TextEntity
from tablelm.corpus.html import _clean, _meta, _parse, _text_of, parse_page
from tablelm.corpus.stats import ReadStats, check_on_error, handle_error
from tablelm.errors import CorpusError

#: A line of a crawl file: a URL, a tab, a tuple literal.
CRAWL_LINE = re.compile(r"^https?://\S+\t\(")
_CONTENT = re.compile(r"<!--\s*Begin Content\s*-->(.*?)<!--\s*End Content\s*-->", re.S | re.I)
_SEE_ALSO = re.compile(r"<!--\s*Begin See Also\s*-->(.*?)<!--\s*End See Also\s*-->", re.S | re.I)
_REFERENCES = re.compile(r"<!--\s*Begin References\s*-->(.*?)<!--\s*End References\s*-->",
                         re.S | re.I)
_FORMAT_HINT = ("fix: each line must be URL<TAB>('Title', 'Category', depth)<TAB>~HTML, "
                "or remove the line")


def _crumb_paths(doc) -> list[tuple[str, ...]]:
    paths = []
    for ul in doc.iter("ul"):
        if "breadcrumb" in (ul.get("class") or "").split():
            items = tuple(t for t in (_clean(_text_of(li)) for li in ul.iterfind(".//li")) if t)
            if items and items not in paths:
                paths.append(items)
    return paths


def _links(fragment_doc, base: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if fragment_doc is None:
        return out
    for a in fragment_doc.iter("a"):
        href = (a.get("href") or "").strip()
        if href and not href.lower().startswith(("javascript:", "mailto:")):
            out.append((urldefrag(urljoin(base, href))[0], _clean(_text_of(a))))
    return out


def parse_crawl_line(line: str, path, number: int) -> tuple[TextEntity, list[str]]:
    """One line → ``(entity, links)``; ``links`` are (absolute URL, text), resolved later."""
    parts = line.split("\t", 2)
    if len(parts) < 3:
        raise CorpusError(path, f"expected 3 tab-separated fields, found {len(parts)}; "
                          f"{_FORMAT_HINT}", line=number)
    url, info, html = (p.strip() for p in parts)
    try:
        value = ast.literal_eval(info)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        value = None
    if not isinstance(value, tuple) or len(value) < 2 or not all(isinstance(v, str) for v in value[:2]):
        raise CorpusError(path, f"the second field is not a ('Title', 'Category', depth) tuple "
                          f"({info[:60]!r}); {_FORMAT_HINT}", line=number)
    crawl_title, crawl_category = value[0].strip(), value[1].strip()
    depth = value[2] if len(value) > 2 and isinstance(value[2], int) else None
    html = html[1:] if html.startswith("~") else html
    doc = _parse(path, html)
    if doc is None:
        raise CorpusError(path, f"no HTML after the tuple; {_FORMAT_HINT}", line=number)
    meta, tags = _meta(doc)
    h1 = next((_clean(_text_of(h)) for h in doc.iter("h1")), "")
    title = h1 or crawl_title
    paths = _crumb_paths(doc)
    category = next((p for p in paths if p[-1].casefold() == crawl_category.casefold()),
                    paths[0] if paths else ((crawl_category,) if crawl_category else ()))
    # content text, through the generic HTML walker (alt text of formulas, blocks, pre)
    m = _CONTENT.search(html)
    content_html = m.group(1) if m else ""
    text, content_links = "", []
    if content_html.strip():
        page = parse_page(path, f"<html><body><main>{content_html}</main></body></html>", url)
        if page is not None:
            text = "\n\n".join(s.text() for s in page.sections if s.text()).strip()
        content_links = _links(_parse(path, content_html), url)
    see = _SEE_ALSO.search(html)
    see_links = _links(_parse(path, see.group(1)), url) if see else []
    cross = []
    for p in doc.iter("p"):
        if "CrossRefs" in (p.get("class") or "").split():
            cross += _links(p, url)
    if not text and cross:
        text = "See: " + "; ".join(t for _, t in cross if t)
    refs = _REFERENCES.search(html)
    references = []
    if refs:
        rdoc = _parse(path, refs.group(1))
        if rdoc is not None:
            references = [r for r in (_clean(_text_of(c)) for c in rdoc.iter("cite")) if r]
    metadata: dict = {"url": url, "crawl_category": crawl_category}
    if depth is not None:
        metadata["depth"] = depth
    metadata.update(meta)
    if see_links:
        metadata["see_also"] = [t for _, t in see_links if t]
    others = [" > ".join(p) for p in paths if p != category]
    if others:
        metadata["classifications"] = others
    if references:
        metadata["references"] = references
    entity = TextEntity(id=url, text=text, title=title, category=tuple(category), tags=tags,
                        source=f"{Path(path).name}:{number}", metadata=metadata)
    host = urlsplit(url).netloc
    links = [u for u, _ in see_links] + [u for u, _ in cross] \
        + [u for u, _ in content_links if urlsplit(u).netloc == host]
    return entity, links


def read_crawl(path: str | Path, *, encoding: str = "utf-8", on_error: str = "fail",
               stats: ReadStats | None = None) -> Iterator[TextEntity]:
    """Read a crawl file (see the module notes); related URLs resolved once all lines are read.

    Parameters
    ----------
    path : str or Path
        The crawl file.
    encoding : str
        Codec of the file (``--encoding``).
    on_error : {"fail", "skip"}
        Raise the first error, or record it in ``stats`` and go on with the next line.
    stats : ReadStats, optional
        Receives skipped lines, ``empty`` pages (no text at all) and ``duplicates`` (a URL seen
        before in the file).
    """
    check_on_error(on_error)
    path = Path(path)
    pages: list[tuple[TextEntity, list[str]]] = []
    seen: set[str] = set()
    for number, line in content_lines(path, encoding, on_error, stats):
        try:
            entity, links = parse_crawl_line(line, path, number)
        except CorpusError as err:
            handle_error(err, on_error, stats)
            continue
        if not entity.text.strip():
            if stats is not None:
                stats.empty += 1
            continue
        if entity.id in seen:
            if stats is not None:
                stats.duplicates += 1
            continue
        seen.add(entity.id)
        pages.append((entity, links))
    for entity, links in pages:
        related = [u for u in dict.fromkeys(links) if u != entity.id]  # order kept, linear
        in_crawl = [u for u in related if u in seen]
        if related:
            entity.metadata["links_in_crawl"] = len(in_crawl)
        yield TextEntity(id=entity.id, text=entity.text, title=entity.title,
                         category=entity.category, tags=entity.tags, related=tuple(related),
                         source=entity.source, metadata=entity.metadata)
