"""HTML reader: a local website (a folder of pages) → page and section entities.

A page gives

* a **page entity**, id ``relpath`` (``library/json.html``): the title (the first ``<h1>``,
  else ``<title>`` without its site suffix), the text before the first sub-heading (or, when
  there is none, the list of the page's section titles), ``category`` the breadcrumb path;
* a **section entity** per later heading, id ``relpath#anchor`` (the heading's ``id``, its
  enclosing ``<section id>``, else a slug of its text): the text up to the next heading of
  any level, ``category`` the breadcrumb path + the page title + the enclosing headings, as
  the Markdown reader does.

Knowledge graph, taken from the page before its boilerplate is dropped:

* **breadcrumbs** → category path: an element whose class or ``aria-label`` says
  ``breadcrumb`` (its ``<li>`` items, else its links), or Sphinx's navigation bar
  (``div.related`` ``li.nav-item-N``); without one, the folder path. A leading "Home" and
  a trailing crumb equal to the page title are dropped.
* ``<meta name="keywords">`` → tags (split on ``,`` / ``;``); ``description`` and the other
  named ``<meta>`` tags (Dublin Core ``DC.*``, ``og:*``) → ``metadata``.
* **related** → "See also" links first (Sphinx ``div.seealso``, a heading "See also" /
  "Related ..."), then every other internal link of the entity in order, each resolved to the
  target's entity id (``../library/os.html#os.walk`` → the section of ``library/os.html``
  that holds the anchor ``os.walk``). Links to pages outside the corpus are dropped (their
  count is ``metadata["unresolved_links"]``); external links are kept in
  ``metadata["external_links"]`` as ``{"href", "text"}`` objects.

Boilerplate left out: the page's main element is used (``<main>``, ``[role=main]``, Sphinx's
``div.body``, a single ``<article>``, else ``<body>``), and inside it ``script``, ``style``,
``nav``, ``aside``, ``form``, navigation roles, sidebars, breadcrumbs and ``¶`` header links
are dropped (``header`` / ``footer`` too when the main element is ``<body>``). Index pages
(more than :data:`MAX_LINK_DENSITY` of their text is link text, or 85% of a short page:
Sphinx's ``genindex``, tables of contents) give no entity and are listed in ``ReadStats.skipped_files``.

Decoding: a byte-order mark, else the ``<meta charset>`` of the page, else the ``encoding``
option; strict, as in every reader. Broken markup is repaired by lxml's HTML parser (as a
browser would) and is not an error; a page without any text is counted in ``ReadStats.empty``.
"""

from __future__ import annotations

import codecs
import posixpath
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict
from urllib.parse import unquote, urlsplit

from tablelm.corpus._text import decode_text
from tablelm.corpus.entity import TextEntity
from tablelm.corpus.stats import ReadStats, check_on_error, handle_error
from tablelm.errors import CorpusError

HTML_SUFFIXES = (".html", ".htm", ".xhtml")
#: Pages whose text is more than this share of link text are indexes, not content.
MAX_LINK_DENSITY = 0.6
#: Pages with less text than this are never taken for indexes.
MIN_INDEX_CHARS = 400

_BLOCK = frozenset("""address article aside blockquote body br caption dd details dialog div dl dt
fieldset figcaption figure footer form h1 h2 h3 h4 h5 h6 header hr li main nav ol p pre section
summary table tbody tfoot thead tr ul""".split())
_DROP_TAGS = frozenset("""script style noscript template nav aside form button input select
textarea iframe object embed canvas svg math audio video map head title""".split())
_DROP_ROLES = frozenset({"navigation", "search", "banner", "contentinfo", "complementary"})
_DROP_CLASSES = frozenset({"sphinxsidebar", "sphinxsidebarwrapper", "headerlink", "sidebar",
                           "breadcrumb", "breadcrumbs", "navbar", "skip-link", "skiplink",
                           "mobile-nav", "footer", "copybutton"})
_HEADING = re.compile(r"^h([1-6])$")
_SEE_ALSO = re.compile(r"^\s*(see also|related( (pages|articles|topics|links|items))?|"
                       r"further reading)\s*:?\s*$", re.I)
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANKS = re.compile(r"\n\s*\n+")
_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_TITLE_SEPARATORS = (" \u2014 ", " -- ", " | ", " \u2013 ", " - ")
_HOME = frozenset({"home", "start", "main page", "homepage"})


def _classes(el) -> set[str]:
    return set((el.get("class") or "").split())


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text.replace("\u00b6", "")).strip()


def slugify(text: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
    return slug or "section"


@dataclass
class Section:
    """One heading's part of a page, before its links are resolved."""

    anchor: str                     # "" for the page entity
    title: str
    level: int
    path: tuple[str, ...]           # enclosing heading titles, below the page title
    line: int
    parts: list = field(default_factory=list)
    links: list = field(default_factory=list)     # (href, text) in order
    see_also: list = field(default_factory=list)  # hrefs
    anchors: list = field(default_factory=list)   # ids inside the section

    def text(self) -> str:
        cached = getattr(self, "_text", None)
        if cached is not None:
            return cached
        lines = [_clean(x) if not x.startswith("\x00pre") else x[4:] for x in
                 "".join(self.parts).split("\n")]
        self._text = _BLANKS.sub("\n\n", "\n".join(lines)).strip()
        return self._text


@dataclass
class Page:
    """What one HTML page holds: title, breadcrumb, meta, sections (links unresolved)."""

    relpath: str
    title: str
    breadcrumb: tuple[str, ...]
    tags: tuple[str, ...]
    meta: dict
    sections: list
    index_page: bool = False
    link_density: float = 0.0


class _WalkState(TypedDict):
    """What :func:`parse_page`'s walk carries from one element to the next."""

    pending: list[str]  # ids met since the last text, given to the next section or heading
    h1: str  # the first <h1>'s text
    see_also_level: int | None  # inside a "See also" section of this heading level
    in_pre: int


def decode_html(path, data: bytes, encoding: str = "utf-8") -> str:
    """Text of an HTML file: BOM, else ``<meta charset>``, else ``encoding``; strict."""
    if data.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        if data.startswith(codecs.BOM_UTF8):
            return decode_text(path, data, "utf-8")
        return decode_text(path, data, "utf-16")
    m = _CHARSET.search(data[:4096])
    if m:
        declared = m.group(1).decode("ascii", "replace")
        try:
            name = codecs.lookup(declared).name
        except LookupError:
            name = None
        if name and not name.startswith(("utf-16", "utf-32")):
            if name in ("latin-1", "iso8859-1", "ascii"):
                name = "cp1252"  # what browsers do with these labels (WHATWG encoding standard)
            return decode_text(path, data, name)
    return decode_text(path, data, encoding)


def _text_of(el) -> str:
    return "".join(el.itertext())


def _parse(path, text: str):
    from lxml import etree

    text = _XML_DECL.sub("", text, count=1).replace("\x00", "\ufffd")
    if not text.strip():
        return None
    try:
        # plain etree elements: lxml.html's element classes cost a lookup per node
        # huge_tree: without it libxml2 silently drops everything below 255 nested elements
        parser = etree.HTMLParser(remove_comments=True, remove_pis=True, huge_tree=True)
        doc = etree.fromstring(text, parser)
    except (etree.ParserError, etree.XMLSyntaxError, ValueError) as err:
        if "empty" in str(err).lower():
            return None
        raise CorpusError(path, f"not parseable as HTML ({err}); fix: check the file is an HTML "
                          "page, or remove it") from None
    limit = next((e for e in parser.error_log if e.type_name == "ERR_RESOURCE_LIMIT"), None)
    if limit is not None:  # libxml2 stops there (2048 nested elements) and drops the rest
        raise CorpusError(path, f"the page is nested too deeply to read ({limit.message.split(',')[0].strip()}); "
                          "fix: close its elements, or remove the file", line=limit.line or None)
    if doc is not None:
        _flatten_deep(doc)
    return doc


#: Elements nested deeper than this keep their text but lose their inner markup, so the
#: (recursive) section walker stays far from Python's recursion limit.
MAX_DEPTH = 200


def _flatten_deep(doc) -> None:
    """Replace every subtree that starts at depth :data:`MAX_DEPTH` by its text (kept in order)."""
    stack = [(doc, 0)]
    while stack:
        el, depth = stack.pop()
        if depth >= MAX_DEPTH and len(el):
            text = "".join(el.itertext())
            for child in list(el):
                el.remove(child)
            el.text = text
            continue
        stack.extend((child, depth + 1) for child in el)


_META_SKIP = ("twitter:", "og:", "fb:", "msapplication", "theme-color", "format-detection",
              "apple-", "google-", "viewport", "generator", "robots", "referrer")
_DESCRIPTION = frozenset({"description", "dc.description", "og:description"})


def _meta(doc) -> tuple[dict, tuple[str, ...]]:
    """Named ``<meta>`` tags: keywords → tags, descriptions → ``description``, the rest kept
    once (social-card copies such as ``og:*`` / ``twitter:*`` repeat them and are left out)."""
    meta: dict = {}
    tags: list[str] = []
    seen_values: set[str] = set()
    for m in doc.iterfind(".//meta"):
        name = (m.get("name") or m.get("property") or "").strip()
        content = _clean(m.get("content") or "")
        low = name.lower()
        if not name or not content:
            continue
        if low == "keywords":
            tags.extend(t for t in (t.strip() for t in re.split(r"[,;]", content)) if t)
            continue
        if low in _DESCRIPTION:
            if "description" not in meta:
                meta["description"] = content
                seen_values.add(content)
            continue
        if low.startswith(_META_SKIP) or content in seen_values:
            continue
        seen_values.add(content)
        if name in meta:
            if not isinstance(meta[name], list):
                meta[name] = [meta[name]]
            meta[name].append(content)
        else:
            meta[name] = content
    return meta, tuple(dict.fromkeys(tags))  # order kept, repeats dropped, linear


def _crumb_items(container) -> list[str]:
    items = list(container.iterfind(".//li"))
    if not items:
        items = list(container.iterfind(".//a"))
    out = []
    for el in items:
        t = _clean(_text_of(el)).strip(" >»/\u203a|")
        if t:
            out.append(t)
    return out


def _breadcrumb(doc) -> list[str]:
    sphinx = None
    for el in doc.iter():
        if not isinstance(el.tag, str):
            continue
        cls = (el.get("class") or "").lower()
        if "breadcrumb" in cls or "breadcrumb" in (el.get("aria-label") or "").lower() \
                or "BreadcrumbList" in (el.get("itemtype") or ""):
            items = _crumb_items(el)
            if items:
                return items
        elif sphinx is None and el.tag == "div" and "related" in cls.split():
            sphinx = el
    if sphinx is None:
        return []
    # Sphinx: div.related li.nav-item-1, -2, ... (not -this)
    items = []
    for li in sphinx.iterfind(".//li"):
        cls = (li.get("class") or "").split()
        if any(c.startswith("nav-item-") and c != "nav-item-this" for c in cls):
            t = _clean(_text_of(li)).strip(" »")
            if t:
                items.append(t)
    return items


def _page_title(doc, h1: str) -> str:
    if h1:
        return h1
    for t in doc.iterfind(".//title"):
        title = _clean(_text_of(t))
        for sep in _TITLE_SEPARATORS:
            if sep in title:
                head = title.rsplit(sep, 1)[0].strip()
                if head:
                    return head
        return title
    return ""


def _main(doc):
    body = doc.find("body")
    root = body if body is not None else doc
    found = root.find(".//main")
    if found is not None:
        return found, False
    arts = []
    for el in root.iter():
        if el.get("role") == "main":
            return el, False
        if found is None and el.tag == "div" and "body" in (el.get("class") or "").split():
            found = el
        if el.tag == "article":
            arts.append(el)
    if found is not None:
        return found, False
    if len(arts) == 1:
        return arts[0], False
    return root, True


def _drop_boilerplate(root, is_body: bool) -> None:
    drop_tags = _DROP_TAGS | {"header", "footer"} if is_body else _DROP_TAGS
    doomed = []
    for el in root.iter():
        if el is root or not isinstance(el.tag, str):
            continue
        cls = el.get("class")
        if el.tag in drop_tags or (cls and not _DROP_CLASSES.isdisjoint(cls.split())) \
                or el.get("role") in _DROP_ROLES or el.get("hidden") is not None:
            doomed.append(el)
    for el in doomed:
        parent = el.getparent()
        if parent is None:
            continue
        prev, tail = el.getprevious(), el.tail
        parent.remove(el)  # lxml drops the element's tail with it: keep that text
        if tail:
            if prev is not None:
                prev.tail = (prev.tail or "") + tail
            else:
                parent.text = (parent.text or "") + tail


def parse_page(path, text: str, relpath: str, dir_parts: tuple[str, ...] = (),
               omit: Callable[[object], bool] | None = None) -> Page | None:
    """Parse one decoded HTML page into a :class:`Page` (None when it holds no markup).

    ``omit(element)``: whether an element's text and links stay out of the page's sections
    because it is an entity of its own (the Python docs' object descriptions); its ids still
    count as anchors of the section it is in."""
    doc = _parse(path, text)
    if doc is None:
        return None
    meta, tags = _meta(doc)
    crumbs = _breadcrumb(doc)
    root, is_body = _main(doc)
    _drop_boilerplate(root, is_body)

    sections: list[Section] = []
    state: _WalkState = {"pending": [], "h1": "", "see_also_level": None, "in_pre": 0}
    stack: list[tuple[int, str | None, Section]] = []
    used: set[str] = set()
    slug_next: dict[str, int] = {}
    anchor_sets: dict[int, set] = {}
    first_headings: dict[int, object] = {}
    current = Section("", "", 0, (), getattr(root, "sourceline", None) or 1)
    sections.append(current)
    link_chars = [0]

    def new_anchor(el, title):
        candidates = [el.get("id")]
        parent = el.getparent()
        if parent is not None and parent.tag in ("section", "div") and parent.get("id"):
            key = id(parent)  # cached: 20k headings in one <div id> would rescan its children
            if key not in first_headings:
                first_headings[key] = next((c for c in parent if isinstance(c.tag, str)
                                            and _HEADING.match(c.tag)), None)
            first_heading = first_headings[key]
            if first_heading is el:
                candidates.append(parent.get("id"))
        candidates += [a for a in state["pending"]]
        for c in candidates:
            if c and c not in used:
                return c
        base = slugify(title)
        slug, n = base, slug_next.get(base, 1)  # one heading repeated 10k times: no rescan from 1
        while slug in used:
            n += 1
            slug = f"{base}-{n}"
        slug_next[base] = n
        return slug

    def flush_pending(sec):
        # a set per section: 20k ids in one section made a list's `in` quadratic
        seen = anchor_sets.get(id(sec))
        if seen is None:
            seen = anchor_sets[id(sec)] = set(sec.anchors)
        for a in state["pending"]:
            if a not in seen:
                seen.add(a)
                sec.anchors.append(a)
        state["pending"] = []

    def walk(el):
        nonlocal current
        tag = el.tag.lower() if isinstance(el.tag, str) else ""
        if not tag:
            return
        el_id = el.get("id") or (el.get("name") if tag == "a" else None)
        if el_id:
            state["pending"].append(el_id)
        if omit is not None and omit(el):
            state["pending"] += [x for sub in el.iterdescendants() if isinstance(sub.tag, str) and (x := sub.get("id"))]
            flush_pending(current)
            if el.tail:
                current.parts.append(el.tail.replace("\n", " "))
            return
        h = _HEADING.match(tag)
        if h:
            level = int(h.group(1))
            title = _clean(_text_of(el))
            if state["see_also_level"] is not None and level <= state["see_also_level"]:
                state["see_also_level"] = None
            if _SEE_ALSO.match(title) and current is not None:
                # "See also" under an h2 belongs to the h1's entity (the page), and so on
                state["see_also_level"] = level
                current = next((sec for lvl, _, sec in reversed(stack) if lvl < level),
                               sections[0])
                current.parts.append(f"\n{title}\n")
                flush_pending(current)
                if el.tail:
                    current.parts.append(el.tail.replace("\n", " "))
                return
            if level == 1 and not state["h1"] and title:
                state["h1"] = title
                flush_pending(current)
                current.title = title
                current.line = el.sourceline or current.line
                stack.clear()
                stack.append((1, None, current))
                if el.tail:
                    current.parts.append(el.tail.replace("\n", " "))
                return
            if not title:
                if el.tail:
                    current.parts.append(el.tail.replace("\n", " "))
                return
            while stack and stack[-1][0] >= level:
                stack.pop()
            anchor = new_anchor(el, title)
            used.add(anchor)
            path = tuple(t for _, t, _ in stack if t is not None)
            current = Section(anchor, title, level, path, el.sourceline or current.line)
            current.anchors.append(anchor)
            flush_pending(current)
            sections.append(current)
            stack.append((level, title, current))
            if el.tail:
                current.parts.append(el.tail.replace("\n", " "))
            return
        block = tag in _BLOCK
        if block:
            current.parts.append("\n")
        if tag == "pre":
            flush_pending(current)
            raw = _text_of(el)
            current.parts.append("\n" + "\n".join("\x00pre" + line for line in raw.split("\n")) + "\n")
        else:
            if el.text:
                if el.text.strip():
                    flush_pending(current)
                current.parts.append(el.text.replace("\n", " "))
            if tag == "img" and (el.get("alt") or "").strip():
                current.parts.append(" " + el.get("alt").strip() + " ")
            classes = _classes(el)
            if "seealso" in classes:
                for a in el.iterfind(".//a"):
                    if a.get("href"):
                        current.see_also.append(a.get("href"))
            if tag == "a" and el.get("href"):
                href = el.get("href").strip()
                label = _clean(_text_of(el))
                link_chars[0] += len(label)
                current.links.append((href, label))
                if state["see_also_level"] is not None:
                    current.see_also.append(href)
            for child in el:
                walk(child)
        if block:
            current.parts.append("\n")
        elif tag in ("td", "th"):
            current.parts.append(" ")
        if el.tail:
            if el.tail.strip():
                flush_pending(current)
            current.parts.append(el.tail.replace("\n", " "))

    if root.text:
        current.parts.append(root.text.replace("\n", " "))
    for child in root:
        walk(child)
    flush_pending(current)

    page_title = _page_title(doc, state["h1"]) or posixpath.splitext(posixpath.basename(relpath))[0]
    sections[0].title = page_title
    if crumbs and crumbs[0].casefold() in _HOME:
        crumbs = crumbs[1:]
    if crumbs and crumbs[-1].casefold() == page_title.casefold():
        crumbs = crumbs[:-1]
    breadcrumb = tuple(crumbs) if crumbs else dir_parts
    total = sum(len(s.text()) for s in sections)
    density = link_chars[0] / total if total else 0.0
    page = Page(relpath, page_title, breadcrumb, tags, meta, sections,
                index_page=(total >= MIN_INDEX_CHARS and density > MAX_LINK_DENSITY)
                or density > 0.85,
                link_density=round(density, 3))
    return page


# --------------------------------------------------------------------------- link resolution


class LinkIndex:
    """Entity ids of the pages of a site: resolves ``href`` seen in a page to an entity id."""

    def __init__(self, objects=()):
        self.pages: dict[str, dict[str, str]] = {}  # relpath -> anchor -> entity id
        # entities of their own for an anchor inside a section (``library/os.html#os.listdir``, a
        # documented object): a link to that anchor goes to it, not to the section around it
        self.objects: frozenset[str] = frozenset(objects)

    def add(self, page: Page, kept: set[str]) -> None:
        anchors: dict[str, str] = {}
        page_id = page.relpath
        for sec in page.sections:
            eid = page_id if not sec.anchor else f"{page_id}#{sec.anchor}"
            target = eid if eid in kept else page_id
            for a in sec.anchors:
                anchors.setdefault(a, target)
        anchors[""] = page_id
        self.pages[page.relpath] = anchors

    def resolve(self, href: str, relpath: str) -> tuple[str | None, bool]:
        """``(entity id or None, is_external)`` of a link seen in page ``relpath``."""
        try:
            parts = urlsplit(href)
        except ValueError:
            return None, False
        if parts.scheme or parts.netloc:
            return None, parts.scheme.lower() in ("http", "https", "ftp", "mailto")
        path = unquote(parts.path)
        if not path:
            target = relpath
        elif path.startswith("/"):
            target = posixpath.normpath(path.lstrip("/"))
        else:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(relpath), path))
        if target not in self.pages:
            for index in ("index.html", "index.htm"):
                cand = posixpath.normpath(posixpath.join(target, index))
                if cand in self.pages:
                    target = cand
                    break
        anchors = self.pages.get(target)
        if anchors is None:
            return None, False
        fragment = unquote(parts.fragment)
        if fragment and self.objects and f"{target}#{fragment}" in self.objects:
            return f"{target}#{fragment}", False
        return anchors.get(fragment, anchors[""]), False


def page_entities(page: Page, links: LinkIndex, stats: ReadStats | None = None,
                  max_related: int = 100) -> list[TextEntity]:
    """The entities of one parsed page, links resolved through ``links``."""
    out: list[TextEntity] = []
    base_meta = {"path": page.relpath}
    base_meta.update(page.meta)
    titles = [s.title for s in page.sections[1:]]
    for k, sec in enumerate(page.sections):
        text = sec.text()
        if k == 0:
            eid, title, category = page.relpath, page.title, page.breadcrumb
            if not text:
                text = "\n".join(titles)
        else:
            eid, title = f"{page.relpath}#{sec.anchor}", sec.title
            category = page.breadcrumb + (page.title,) + sec.path
        if not text.strip():
            if stats is not None:
                stats.empty += 1
            continue
        related_set: dict[str, None] = {}  # ordered sets: a list's `in` is quadratic in the links
        external_set: dict[str, dict] = {}
        unresolved = 0
        for href in sec.see_also:
            target, _ = links.resolve(href, page.relpath)
            if target and target != eid:
                related_set[target] = None
        for href, label in sec.links:
            target, is_ext = links.resolve(href, page.relpath)
            if target:
                if target != eid:
                    related_set[target] = None
            elif is_ext:
                external_set.setdefault(href, {"href": href, "text": label})
            else:
                unresolved += 1
        related, external = list(related_set), list(external_set.values())
        meta = dict(base_meta, level=sec.level)
        if k:
            meta.pop("description", None)
        if len(related) > max_related:
            meta["related_dropped"] = len(related) - max_related
            related = related[:max_related]
        if external:
            meta["external_links"] = external
        if unresolved:
            meta["unresolved_links"] = unresolved
        out.append(TextEntity(id=eid, text=text, title=title, category=category, tags=page.tags,
                              related=tuple(related), source=f"{page.relpath}:{sec.line}",
                              metadata=meta))
    return out


def load_page(path: Path, relpath: str, dir_parts: tuple[str, ...] = (), *,
              encoding: str = "utf-8", omit: Callable[[object], bool] | None = None) -> Page | None:
    """Read, decode and parse one HTML file; CorpusError on undecodable bytes."""
    data = Path(path).read_bytes()
    text = decode_html(path, data, encoding)
    return parse_page(path, text, relpath, dir_parts, omit)


def read_html_pages(files: list[tuple[Path, str]], *, encoding: str = "utf-8",
                    on_error: str = "fail", stats: ReadStats | None = None,
                    max_related: int = 100, links: LinkIndex | None = None,
                    omit: Callable[[object], bool] | None = None) -> Iterator[TextEntity]:
    """Read a set of pages of one site: parse them all, then resolve links between them.

    Parameters
    ----------
    files : list of (path, relpath)
        The pages; ``relpath`` (POSIX, relative to the site root) is the page's entity id.
    links : LinkIndex, optional
        The index to fill with the pages (and resolve through); pass one to resolve more links
        of the site after the pages (or to give it entities of anchors, ``LinkIndex(objects)``).
    omit : callable, optional
        ``omit(element)``: an element whose text and links the sections leave out (see :func:`parse_page`).
    """
    check_on_error(on_error)
    pages: list[Page] = []
    links = LinkIndex() if links is None else links
    for full, relpath in files:
        parts = tuple(relpath.split("/")[:-1])
        try:
            page = load_page(full, relpath, parts, encoding=encoding, omit=omit)
        except CorpusError as err:
            handle_error(err, on_error, stats)
            continue
        except OSError as err:
            handle_error(CorpusError(full, f"cannot read the file ({err.strerror or err}); "
                                     "fix: check its permissions"), on_error, stats)
            continue
        if page is None:
            if stats is not None:
                stats.empty += 1
            continue
        if page.index_page:
            if stats is not None:
                stats.skipped_files.append(
                    (str(full), f"an index page ({page.link_density:.0%} of its text is links): "
                     "it gives no entity"))
            continue
        pages.append(page)
    # which section ids survive (non-empty), so that links to an empty section go to the page
    for page in pages:
        kept = {page.relpath}
        for sec in page.sections[1:]:
            if sec.text().strip():
                kept.add(f"{page.relpath}#{sec.anchor}")
        links.add(page, kept)
    for page in pages:
        yield from page_entities(page, links, stats, max_related)
