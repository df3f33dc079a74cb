"""The built-in corpus: Python's own documentation, from the running interpreter.

Nothing here imports a standard-library module into the user's process to document it
(``antigravity`` opens a browser, ``this`` prints): the language-reference topics come from
``pydoc_data.topics`` (a dict of strings, safe to import); the library documentation from the
docstrings of the stdlib source files, parsed with :mod:`ast`; what lives in C (``csv.reader``,
``os.listdir``, the builtins) from the compiled modules, imported in an isolated child process
(:func:`read_compiled_modules`, with :data:`NEVER_IMPORT` never imported); and, when it is
installed for this Python (Debian's ``python3.X-doc``, see :func:`python_html_docs`), the HTML
documentation: the tutorial, the FAQ, the HOWTOs and the library and language references.

Entities (ids are stable for one Python version):

* ``topic:NAME``: a language-reference topic, category ``("Language reference",)``.
* ``fn:open``, ``cls:dict``, ``fn:dict.get``, ``attr:int.real``: the built-in functions and
  classes, with the public methods and descriptors of the classes, category ``("builtins",)``.
  They are C code with no ``.py`` source, so the child process reads them from
  ``builtins.__dict__`` with :func:`inspect.getdoc`. The signature comes
  from :func:`inspect.signature` (``self`` dropped) or else from the docstring's first line.
  Aliases (``IOError`` is ``OSError``) are read once, under the object's own name; tags are the
  kind (``function`` / ``class`` / ``method`` / ``attribute``) and ``example``.
* ``fn:os.listdir``, ``fn:csv.reader``, ``cls:io.TextIOWrapper``: what the compiled modules
  (built in, or in ``lib-dynload``) define, read the same way under the public module that
  exports it (``from _csv import reader`` in ``csv.py``; ``posix`` is ``os``), when the stdlib
  sources do not define the name. A compiled module that warns at import that it is
  deprecated (``spwd``) is left out.
* ``mod:json.decoder``: a public module's docstring.
* ``cls:json.JSONDecoder``, ``fn:os.path.join``, ``fn:json.JSONDecoder.decode``: public
  classes, functions and methods of public classes. The qualified name is the public one: an
  object a package re-exports (``from .decoder import JSONDecoder`` in ``json/__init__.py``)
  is named after the package, and ``posixpath`` is ``os.path``. ``category`` is the package
  path of the module that defines it: ``("json", "json.decoder")``. A public class also gets
  the public methods it inherits from private classes of its module
  (``argparse.ArgumentParser.add_argument`` is defined in ``_ActionsContainer``).
* ``library/csv.html``, ``tutorial/inputoutput.html#reading-and-writing-files``: the pages and
  sections of the HTML documentation (:data:`HTML_DOCS_PARTS`), read by the HTML reader.

Text is the signature rendered from the source (``join(a, *p)``; ``self`` dropped), then the
cleaned docstring. Tags: the kind (``module`` / ``class`` / ``function`` / ``method``) and
``example`` when the docstring shows ``>>>`` or says "Example". Related: references in the
docstring (``:func:`x```, ```x```, "See also x") that name another entity produced here.

Public means: not ``_``-prefixed, listed in ``__all__`` when the module assigns a literal
``__all__``, outside test packages (``test``, ``tests``, ``idle_test``), ``site-packages``,
``pydoc_data`` (read as topics) and the programs ``idlelib`` and ``turtledemo``, and not
deprecated: a module that warns at import that it is deprecated (``distutils``, ``lib2to3``,
``telnetlib``, ``imp``, ...) is left out with everything inside it. ``__main__.py`` is skipped; objects
without a docstring are skipped.
"""

from __future__ import annotations

import ast
import gc
import os
import re
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from tablelm.corpus.entity import TextEntity
from tablelm.corpus.stats import ReadStats

BUILTIN_CORPUS_ID = "python-docs"
TOPIC_CATEGORY = "Language reference"
# test packages; IDLE and the turtle demos, which are programs rather than library API
SKIP_DIRS = frozenset({"test", "tests", "idle_test", "__pycache__", "site-packages",
                       "dist-packages", "pydoc_data", "idlelib", "turtledemo"})
_PREFIX = {"module": "mod:", "class": "cls:", "function": "fn:", "method": "fn:", "attribute": "attr:"}
BUILTINS_CATEGORY = "builtins"
_EXAMPLE = re.compile(r">>>|\bExamples?\b")
_ROLE = re.compile(r":(?:py:)?[a-z]+:`([^`]+)`")
_TICKS = re.compile(r"``?([A-Za-z_][\w.]*)(?:\(\))?``?")
_SEE = re.compile(r"\b[Ss]ee (?:also|the)\b:?(.{0,200})", re.S)
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(\(\))?")
_SENTENCE_END = re.compile(r"\.(?:\s|$)|\n\s*\n")
_CALL = re.compile(r"\b([A-Za-z_][\w.]*\w)\(\)")
_QUALIFIED = re.compile(r"\b([a-z_]\w*(?:\.[A-Za-z_]\w*)+)")


def stdlib_path() -> Path:
    """Folder of the running interpreter's standard library sources."""
    return Path(sysconfig.get_paths()["stdlib"])


def builtin_corpus_id() -> str:
    """Name of the built-in corpus, as shown to users and stored in a model's manifest."""
    return BUILTIN_CORPUS_ID


def python_docs_fingerprint() -> str:
    """What the built-in corpus depends on: the Python version, the stdlib folder and the
    HTML documentation found for it (folder and version), if any."""
    html = python_html_docs()
    docs = f"; html {html[0]} {html[1]}" if html else "; no html docs"
    return f"{BUILTIN_CORPUS_ID}; python {sys.version}; stdlib {stdlib_path()}{docs}"


def builtin_corpus_facts(entities) -> dict:
    """What a built-in model was built from, for its manifest and ``tablelm info``.

    ``python`` is :func:`python_docs_fingerprint`; ``html_docs`` the folder and version of the
    HTML documentation read (None when none was found, with ``html_docs_hint`` saying how to
    add it); ``counts`` the entities per source (topics, docstrings, html).
    """
    counts = {"topics": 0, "docstrings": 0, "html": 0}
    for e in entities:
        kind = "topics" if e.id.startswith("topic:") else "docstrings" if ":" in e.id.split("/")[0] else "html"
        counts[kind] += 1
    html = python_html_docs()
    facts = {"python": python_docs_fingerprint(), "counts": counts,
             "html_docs": {"folder": str(html[0]), "version": html[1]} if html else None}
    if not html:
        xy = f"{sys.version_info[0]}.{sys.version_info[1]}"
        facts["html_docs_hint"] = (f"no HTML documentation of Python {xy} found (looked in "
                                   f"{', '.join(str(p) for p in html_docs_candidates()[:2])}, ...); install it "
                                   f"(Debian/Ubuntu: apt-get install python{xy}-doc) or set {HTML_DOCS_ENV} to "
                                   "its folder, then rebuild with tablelm build")
    return facts


# --------------------------------------------------------------------------- the HTML documentation

#: Set to a folder to use that copy of Python's HTML documentation, or to ``none`` to leave it out.
HTML_DOCS_ENV = "TABLELM_PYTHON_DOCS"
#: Parts of the HTML documentation read into the built-in corpus: what a Python user asks
#: about. Left out: the C API, extending, distributing and the changelogs ("What's new").
HTML_DOCS_PARTS = ("tutorial", "faq", "howto", "library", "reference", "using", "installing",
                   "glossary.html")
_DOCS_VERSION = re.compile(r"""VERSION:\s*['"]((\d+)\.(\d+)[^'"]*)""")


def html_docs_candidates() -> list[Path]:
    """Where installers put the HTML documentation of this Python, most specific first.

    Debian/Ubuntu ``python3.X-doc`` (``/usr/share/doc/python3.X/html``), Fedora
    ``python3-docs``, Arch ``python-docs``, the python.org installers (``Doc/html`` under the
    installation prefix on Windows, the framework's ``Resources`` on macOS) and a prefix's
    ``share/doc``.
    """
    xy = f"{sys.version_info[0]}.{sys.version_info[1]}"
    out = [Path(f"/usr/share/doc/python{xy}/html"), Path(f"/usr/share/doc/python{xy}-doc/html"),
           Path("/usr/share/doc/python3-doc/html"), Path("/usr/share/doc/python3-docs/html"),
           Path("/usr/share/doc/python/html")]
    for prefix in dict.fromkeys((sys.base_prefix, sys.prefix)):
        out += [Path(prefix) / "Doc" / "html", Path(prefix) / "share" / "doc" / f"python{xy}" / "html",
                Path(prefix) / "Resources" / "English.lproj" / "Documentation"]
    return out


def python_html_docs() -> tuple[Path, str] | None:
    """``(folder, version)`` of the HTML documentation of the running Python's X.Y, or None.

    ``TABLELM_PYTHON_DOCS`` names the folder (or ``none`` turns it off). A folder counts when
    its Sphinx ``_static/documentation_options.js`` says the same major.minor version as the
    running Python: the docs of another Python would describe another library.
    """
    env = os.environ.get(HTML_DOCS_ENV, "").strip()
    if env.lower() in ("none", "off", "0"):
        return None
    for folder in [Path(env)] if env else html_docs_candidates():
        opts = folder / "_static" / "documentation_options.js"
        try:
            m = _DOCS_VERSION.search(opts.read_text("utf-8", "replace"))
        except OSError:
            continue
        if m and (int(m.group(2)), int(m.group(3))) == sys.version_info[:2]:
            return folder.resolve(), m.group(1)
    return None


def read_html_docs(folder: Path, stats: ReadStats | None = None, skip_modules=()) -> Iterator[TextEntity]:
    """Pages and sections of the HTML documentation (:data:`HTML_DOCS_PARTS`), in sorted order.

    Ids are the pages' paths (``tutorial/inputoutput.html#reading-and-writing-files``), so they
    never collide with the docstring entities (``fn:open``). The pages of the modules in
    ``skip_modules`` (those this Python deprecates, ``library/nntplib.html``) and of CPython's
    own test package (``library/test.html``) are left out, as their docstrings are.
    """
    skip = {f"library/{m}.html" for m in skip_modules} | {"library/test.html"}
    from tablelm.corpus.html import LinkIndex, read_html_pages

    files = []
    for part in HTML_DOCS_PARTS:
        path = folder / part
        found = [path] if path.is_file() else sorted(path.rglob("*.html")) if path.is_dir() else []
        files += [(f, rel) for f in found if (rel := f.relative_to(folder).as_posix()) not in skip]
    files.sort(key=lambda f: f[1])
    hrefs: dict[str, list[str]] = {}
    objects = list(read_sphinx_objects([f for f in files if f[1].startswith(("library/", "reference/"))], stats,
                                       hrefs=hrefs))
    # a link to a documented object (library/functions.html#open) goes to the object's entity,
    # not to the section around it, so the in-links (the importance prior) count for it
    links = LinkIndex(e.id for e in objects)
    # and its description is its entity's text only: the section around it keeps its own prose
    # (library/asyncio-task.html#sleeping held asyncio.sleep's whole text, two cards of one text)
    names = frozenset(e.id.partition("#")[2] for e in objects)

    def is_object(el) -> bool:
        parts = _object_parts(el) if el.tag == "dl" else None
        return parts is not None and parts[1].get("id") in names

    yield from read_html_pages(files, on_error="skip", stats=stats, links=links, omit=is_object)
    for e in objects:
        page = e.id.partition("#")[0]
        related = dict.fromkeys(t for h in hrefs.get(e.id, ()) if (t := links.resolve(h, page)[0]) and t != e.id)
        yield replace(e, related=tuple(list(related)[:MAX_OBJECT_LINKS])) if related else e


#: the most related items (out-links) an object entity keeps, as the HTML reader's ``max_related``
MAX_OBJECT_LINKS = 100


#: Sphinx object descriptions (``<dl class="py function">``) that become entities of their own.
SPHINX_KINDS = ("function", "method", "class", "exception", "data", "attribute", "property",
                "classmethod", "staticmethod", "decorator")
_PARAGRAPH_TAGS = frozenset({"p", "pre", "table", "ul", "ol", "dl", "blockquote", "div", "section"})
_LINE_TAGS = frozenset({"li", "dt", "dd", "tr", "br", "h1", "h2", "h3", "h4", "h5", "h6"})


def _object_parts(dl):
    """``(kind, dt, dd)`` of a Sphinx object description (``<dl class="py function">`` with a
    ``<dt id>`` and a ``<dd>``), else None."""
    classes = (dl.get("class") or "").split()
    if "py" not in classes:
        return None
    kind = next((k for k in SPHINX_KINDS if k in classes), None)
    dt = next((c for c in dl if c.tag == "dt" and c.get("id")), None)
    dd = next((c for c in dl if c.tag == "dd"), None)
    return None if kind is None or dt is None or dd is None else (kind, dt, dd)


def _block_text(el, skip: set) -> str:
    """Readable text of an element: paragraphs apart by a blank line, ``<pre>`` kept as is,
    the elements of ``skip`` (nested object descriptions) and ``¶`` links left out."""
    parts: list[str] = []

    def walk(e, pre: bool):
        tag = e.tag if isinstance(e.tag, str) else ""
        if e in skip or "headerlink" in (e.get("class") or "") or tag in ("script", "style"):
            if e.tail:
                parts.append(e.tail if pre else e.tail.replace("\n", " "))
            return
        sep = "\n\n" if tag in _PARAGRAPH_TAGS else "\n" if tag in _LINE_TAGS else ""
        inner_pre = pre or tag == "pre"
        parts.append(sep)
        if e.text:
            parts.append(e.text if inner_pre else e.text.replace("\n", " "))
        for child in e:
            walk(child, inner_pre)
        parts.append(sep)
        if e.tail:
            parts.append(e.tail if pre else e.tail.replace("\n", " "))

    walk(el, False)
    lines = [ln.rstrip() if ln.startswith(" ") and ">>>" in ln else re.sub(r"[ \t\u00a0]+", " ", ln).strip()
             for ln in "".join(parts).replace("\u00b6", "").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def read_sphinx_objects(files: list[tuple[Path, str]], stats: ReadStats | None = None,
                        hrefs: dict[str, list[str]] | None = None) -> Iterator[TextEntity]:
    """An entity per documented object of the library and language references.

    Sphinx writes each function, class, method or attribute as ``<dl class="py function">``
    with ``<dt id="os.environ">`` (the signature) and ``<dd>`` (its documentation), among pages
    of them (``library/functions.html`` is 70,000 characters); an entity of its own, id
    ``library/os.html#os.environ``, title the object's name, answers "environment variable" with
    the object people need (the page and section entities of :func:`read_html_docs` leave its
    text out). A class's
    methods are entities of their own, left out of the class's text. ``hrefs``, when given,
    receives each entity's links in order (its own text's, not its nested objects').
    """
    from lxml import etree

    seen: set[str] = set()
    parser = etree.HTMLParser(remove_comments=True, remove_pis=True)
    for path, relpath in files:
        try:
            doc = etree.fromstring(path.read_bytes(), parser)
        except (OSError, etree.ParserError, etree.XMLSyntaxError, ValueError):
            continue  # the HTML reader has already reported it
        if doc is None:
            continue
        h1 = doc.find(".//h1")
        page_title = re.sub(r"\s+", " ", "".join(h1.itertext())).replace("\u00b6", "").strip() if h1 is not None else ""
        top = "Library reference" if relpath.startswith("library/") else "Language reference"
        objects = [dl for dl in doc.iter("dl") if "py" in (dl.get("class") or "").split()]
        for dl in objects:
            parts = _object_parts(dl)
            if parts is None:
                continue
            kind, dt, dd = parts
            name = dt.get("id")
            eid = f"{relpath}#{name}"
            if eid in seen:
                continue
            seen.add(eid)
            signature = re.sub(r"\s+", " ", "".join(dt.itertext())).replace("\u00b6", "").strip()
            nested = {sub for sub in dd.iter("dl") if "py" in (sub.get("class") or "").split()}
            body = _block_text(dd, nested)
            if not body:
                continue
            if hrefs is not None:
                inner = {a for sub in nested for a in sub.iter("a")}
                hrefs[eid] = [a.get("href").strip() for a in dd.iter("a") if a.get("href") and a not in inner
                              and "headerlink" not in (a.get("class") or "")]
            yield TextEntity(id=eid, text=f"{signature}\n{body}", title=name,
                             category=(top, page_title) if page_title else (top,),
                             tags=(kind, "example") if ">>>" in body else (kind,),
                             source=f"{relpath}#{name}", metadata={"kind": kind, "signature": signature})


# --------------------------------------------------------------------------- collecting


@dataclass
class _Obj:
    kind: str
    module: str          # defining module, public name (posixpath -> os.path)
    local: str           # "" (module), "JSONDecoder", "JSONDecoder.decode"
    doc: str
    signature: str
    relpath: str
    lineno: int


@dataclass
class _Module:
    name: str
    relpath: str
    is_package: bool
    all_names: frozenset | None
    objs: list = field(default_factory=list)
    public_defs: list = field(default_factory=list)
    imports: list = field(default_factory=list)  # (public name | "*", source module, name)
    compiled_imports: list = field(default_factory=list)  # the same, from a compiled module (_csv)
    deprecated: bool = False  # warns at import that it is deprecated (removed in a later Python)


def _warns_deprecated(stmts) -> bool:
    """A module-level ``warnings.warn(..., DeprecationWarning)`` or ``warnings._deprecated(...)``."""
    for st in stmts:
        call = st.value if isinstance(st, ast.Expr) else None
        if not isinstance(call, ast.Call):
            continue
        func = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")
        if func == "_deprecated":
            return True
        deprecations = ("DeprecationWarning", "PendingDeprecationWarning")
        if func == "warn" and any(isinstance(n, ast.Name) and n.id in deprecations
                                  for a in call.args + [k.value for k in call.keywords] for n in ast.walk(a)):
            return True
    return False


def _flat(body) -> Iterator[ast.stmt]:
    """Statements of a body, looking into ``if`` / ``try`` blocks (platform variants)."""
    for st in body:
        if isinstance(st, ast.If):
            yield from _flat(st.body)
            yield from _flat(st.orelse)
        elif isinstance(st, (ast.Try, ast.TryStar)):
            yield from _flat(st.body)
            for handler in st.handlers:
                yield from _flat(handler.body)
            yield from _flat(st.orelse)
            yield from _flat(st.finalbody)
        else:
            yield st


def _literal_all(stmts: list) -> frozenset | None:
    """``__all__`` when assigned once as a literal list/tuple of strings, else None."""
    found = None
    for st in stmts:
        targets = []
        if isinstance(st, ast.Assign):
            targets = st.targets
        elif isinstance(st, (ast.AugAssign, ast.AnnAssign)):
            targets = [st.target]
        elif isinstance(st, ast.Expr) and isinstance(st.value, ast.Call):
            f = st.value.func
            if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                    and f.value.id == "__all__":
                return None
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            continue
        if found is not None or not isinstance(st, ast.Assign):
            return None
        value = st.value
        if not isinstance(value, (ast.List, ast.Tuple)):
            return None
        names = [e.value for e in value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        if len(names) != len(value.elts):  # not all literal strings
            return None
        found = frozenset(names)
    return found


def _drop_first(args: ast.arguments) -> ast.arguments:
    pos, plain = list(args.posonlyargs), list(args.args)
    if pos:
        pos.pop(0)
    elif plain:
        plain.pop(0)
    else:
        return args
    defaults = list(args.defaults)[-(len(pos) + len(plain)):] if pos or plain else []
    return ast.arguments(posonlyargs=pos, args=plain, vararg=args.vararg,
                         kwonlyargs=args.kwonlyargs, kw_defaults=args.kw_defaults,
                         kwarg=args.kwarg, defaults=defaults)


def _unparse(node) -> str:
    try:
        return ast.unparse(node)
    except Exception:  # pragma: no cover - ast.unparse handles every node the parser makes
        return "..."


def _signature(node, kind: str) -> str:
    if isinstance(node, ast.ClassDef):
        for st in _flat(node.body):
            if isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef)) and st.name == "__init__":
                return f"{node.name}({_unparse(_drop_first(st.args))})"
        bases = [_unparse(b) for b in node.bases] + [_unparse(k) for k in node.keywords]
        return f"class {node.name}({', '.join(bases)})" if bases else f"class {node.name}"
    args = node.args
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    if kind == "method" and not static:
        args = _drop_first(args)
    ret = f" -> {_unparse(node.returns)}" if node.returns is not None else ""
    prefix = "async " if isinstance(node, ast.AsyncFunctionDef) else ""
    return f"{prefix}{node.name}({_unparse(args)}){ret}"


def _is_public(name: str, all_names: frozenset | None) -> bool:
    return not name.startswith("_") and (all_names is None or name in all_names)


def _module_files(root: Path) -> Iterator[tuple[str, Path, str, bool]]:
    """``(module name, path, relpath, is_package)`` of public stdlib modules, sorted."""
    aliases = {os.path.__name__: "os.path"}  # os is always imported; posixpath or ntpath
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        rel = here.relative_to(root).parts
        dirnames[:] = sorted(
            d for d in dirnames
            if d not in SKIP_DIRS and not d.startswith(("_", ".")) and d.isidentifier()
            and (here / d / "__init__.py").is_file()
        )
        if rel and not (here / "__init__.py").is_file():
            continue
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            stem = name[:-3]
            if stem == "__init__":
                if not rel:
                    continue
                modname, is_pkg = ".".join(rel), True
            elif stem.startswith("_") or stem.startswith("test_") or not stem.isidentifier():
                continue
            else:
                modname, is_pkg = ".".join(rel + (stem,)), False
            path = here / name
            yield aliases.get(modname, modname), path, path.relative_to(root).as_posix(), is_pkg


def _collect_module(name: str, path: Path, relpath: str, is_pkg: bool,
                    compiled: frozenset = frozenset()) -> _Module | None:
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return None
    stmts = list(_flat(tree.body))
    mod = _Module(name, relpath, is_pkg, _literal_all(stmts), deprecated=_warns_deprecated(stmts))
    doc = ast.get_docstring(tree, clean=True)
    if doc:
        mod.objs.append(_Obj("module", name, "", doc, "", relpath, tree.body[0].lineno))
    seen: set[str] = set()
    classes = {st.name: st for st in stmts if isinstance(st, ast.ClassDef)}
    for st in stmts:
        if isinstance(st, ast.ImportFrom) and not st.level and st.module in compiled:
            mod.compiled_imports.extend((a.asname or a.name, st.module, a.name) for a in st.names)
            continue
        if isinstance(st, ast.ImportFrom) and is_pkg:
            if st.level:
                parts = name.split(".")
                base = parts[:len(parts) - st.level + 1]
                src = ".".join(base + ([st.module] if st.module else []))
            else:
                src = st.module or ""
            if src.startswith(name + "."):
                for alias in st.names:
                    mod.imports.append((alias.asname or alias.name, src, alias.name))
            continue
        if not isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if not _is_public(st.name, mod.all_names):
            continue
        if st.name not in mod.public_defs:
            mod.public_defs.append(st.name)
        is_class = isinstance(st, ast.ClassDef)
        kind = "class" if is_class else "function"
        doc = ast.get_docstring(st, clean=True)
        if doc and st.name not in seen:  # first definition that has a docstring
            seen.add(st.name)
            mod.objs.append(_Obj(kind, name, st.name, doc, _signature(st, kind), relpath,
                                 st.lineno))
        if not isinstance(st, ast.ClassDef):
            continue
        for sub in _methods(st, classes):
            local = f"{st.name}.{sub.name}"
            doc = ast.get_docstring(sub, clean=True)
            if doc and local not in seen:
                seen.add(local)
                mod.objs.append(_Obj("method", name, local, doc, _signature(sub, "method"),
                                     relpath, sub.lineno))
    return mod


def _methods(cls: ast.ClassDef, classes: dict, depth: int = 0) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Public methods of a class, then those it inherits from private classes of its module.

    ``ArgumentParser.add_argument`` is defined in the private base ``_ActionsContainer``:
    people look it up under the public class, so it is documented there. A method the class
    overrides comes first and wins (the caller keeps the first of each name).
    """
    for sub in _flat(cls.body):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith("_"):
            yield sub
    for base in cls.bases:
        if isinstance(base, ast.Name) and base.id.startswith("_") and base.id in classes and depth < 5:
            yield from _methods(classes[base.id], classes, depth + 1)


def _reverse_exports(modules: dict[str, _Module]) -> dict[str, dict[tuple[str, str], str]]:
    """For each package: ``(defining module, name) -> public name`` it re-exports."""
    reverse: dict[str, dict[tuple[str, str], str]] = {}
    for pkg in modules.values():
        if not pkg.imports:
            continue
        exports: dict[str, tuple[str, str]] = {}
        for public, src, name in pkg.imports:
            if public == "*":
                source = modules.get(src)
                if source is None:
                    continue
                names = source.all_names if source.all_names is not None else source.public_defs
                for n in sorted(names) if isinstance(names, frozenset) else names:
                    if _is_public(n, pkg.all_names):
                        exports[n] = (src, n)
            elif _is_public(public, pkg.all_names):
                exports[public] = (src, name)
        rev: dict[tuple[str, str], str] = {}
        for public, target in exports.items():
            rev.setdefault(target, public)
        reverse[pkg.name] = rev
    return reverse


def _canonical(module: str, name: str, reverse) -> tuple[str, str]:
    while True:
        parent = module.rpartition(".")[0]
        public = reverse.get(parent, {}).get((module, name)) if parent else None
        if public is None:
            return module, name
        module, name = parent, public


def _prefixes(module: str) -> tuple[str, ...]:
    parts = module.split(".")
    return tuple(".".join(parts[:i]) for i in range(1, len(parts) + 1))


def _references(doc: str) -> list[tuple[str, bool]]:
    """Names a docstring points at, each with whether it may be relative to the module.

    Roles (``:func:`x```), backquoted names, "See also" / "See the" mentions and ``name()``
    calls may be relative; other dotted names (``os.path.join``) count only when absolute.
    """
    refs: list[str] = []
    for m in _ROLE.finditer(doc):
        target = m.group(1)
        if "<" in target and target.endswith(">"):
            target = target[target.rindex("<") + 1:-1]
        refs.append(target)
    refs += [m.group(1) for m in _TICKS.finditer(doc)]
    for m in _SEE.finditer(doc):
        sentence = _SENTENCE_END.split(m.group(1), 1)[0]
        for t in _DOTTED.finditer(sentence):
            word = t.group(0)
            if "." in word or t.group(1) or "_" in word or word[1:] != word[1:].lower():
                refs.append(word)
    refs += [m.group(1) for m in _CALL.finditer(doc)]
    out: list[tuple[str, bool]] = []
    seen = set()
    for r in refs:
        r = r.strip().lstrip("~!.").removesuffix("()")
        if r and r not in seen:
            seen.add(r)
            out.append((r, True))
    for m in _QUALIFIED.finditer(doc):
        if m.group(1) not in seen:
            seen.add(m.group(1))
            out.append((m.group(1), False))
    return out


def _resolve(ref: str, obj: _Obj, names: dict[str, str], relative: bool = True) -> str | None:
    if not relative:
        return names.get(ref)
    candidates = []
    cls = obj.local.split(".")[0] if obj.kind in ("class", "method") else ""
    if ref.startswith("self.") and cls:
        candidates.append(f"{obj.module}.{cls}.{ref[5:]}")
    candidates.append(ref)
    if cls:
        candidates.append(f"{obj.module}.{cls}.{ref}")
    candidates += [f"{p}.{ref}" for p in reversed(_prefixes(obj.module))]
    for c in candidates:
        if c in names:
            return names[c]
    return None


def read_python_docs(*, stats: ReadStats | None = None, topics: bool = True,
                     builtin_objects: bool = True, stdlib: bool = True,
                     html_docs: bool = True) -> Iterator[TextEntity]:
    """Entities of the running Python's documentation (see the module notes).

    Parameters
    ----------
    stats : ReadStats, optional
        Receives ``duplicates`` (two objects with one public name; the first is kept) and,
        in ``skipped_files``, stdlib files that do not parse.
    topics, builtin_objects, stdlib, html_docs : bool
        Include the language-reference topics / the built-in functions and classes / the
        standard library docstrings / the HTML documentation, when :func:`python_html_docs`
        finds it.

    Yields
    ------
    TextEntity
        Topics (sorted by name), then the builtins (sorted by name, each class followed by its
        methods and descriptors sorted by name), then modules in sorted file order, each followed by its
        classes, functions and methods in source order, then what the compiled modules define,
        then the HTML documentation's pages in sorted order.
    """
    found = python_html_docs() if html_docs else None
    if not found:
        yield from _docstrings(stats, topics, builtin_objects, stdlib)
        return
    gone: list[str] = []
    docs = list(_docstrings(stats, topics, builtin_objects, stdlib, gone))
    html = list(read_html_docs(found[0], stats, skip_modules=gone))
    # an object the HTML documentation describes (library/csv.html#csv.reader) is read once,
    # from there: its text is the docstring's, rewritten and with examples
    described = {e.title: e.id for e in html if e.metadata.get("kind") in SPHINX_KINDS}
    moved = {e.id: described[e.title] for e in docs
             if e.id.startswith(("fn:", "cls:", "attr:")) and e.title in described}
    if stats is not None:
        stats.duplicates += len(moved)
    for e in docs:
        if e.id not in moved:  # links to a docstring read from the HTML go to its HTML entity
            yield replace(e, related=tuple(dict.fromkeys(moved.get(r, r) for r in e.related))) \
                if any(r in moved for r in e.related) else e
    yield from html


def _docstrings(stats, topics: bool, builtin_objects: bool, stdlib: bool,
                gone: list | None = None) -> Iterator[TextEntity]:
    """The topics and docstrings; ``gone`` receives the names of the deprecated modules left out."""
    if topics:
        from pydoc_data.topics import topics as topic_texts

        for name in sorted(topic_texts):
            yield TextEntity(id=f"topic:{name}", text=topic_texts[name].strip(), title=name,
                             category=(TOPIC_CATEGORY,), tags=("topic",),
                             source=f"pydoc_data/topics.py:{name}",
                             metadata={"kind": "topic"})
    if not (builtin_objects or stdlib):
        return
    root = stdlib_path()
    modules = _parse_stdlib(root, stats, gone)  # also says which public module exports a C object
    compiled = list(_compiled_entities(modules, builtin_objects, stdlib, stats, gone))
    builtin = [e for e in compiled if e.category == (BUILTINS_CATEGORY,)]
    yield from builtin
    if stdlib:
        seen = set()
        for e in _stdlib_entities(modules, root, stats):
            seen.add(e.id)
            yield e
        yield from (e for e in compiled if e.category != (BUILTINS_CATEGORY,) and e.id not in seen)


# --------------------------------------------------------------------------- compiled modules

#: Compiled modules never imported, not even in the child process: importing them touches the
#: terminal (readline) or loads a GUI toolkit (_tkinter); the rest are CPython's test modules.
NEVER_IMPORT = frozenset({"readline", "_tkinter", "_curses", "_curses_panel", "ossaudiodev", "winsound",
                          "msvcrt", "_msi", "winreg", "_winapi", "_overlapped", "nt", "xxsubtype",
                          "xxlimited", "xxlimited_35", "_xxsubinterpreters", "_xxtestfuzz", "_ctypes_test"})
#: The child process that imports them gets this much time.
CHILD_TIMEOUT_S = 300


def compiled_module_names() -> list[str]:
    """The compiled modules of the running Python (built in, or ``lib-dynload`` extensions),
    sorted, without :data:`NEVER_IMPORT` and CPython's test modules (``_test*``)."""
    import importlib.machinery

    names = set(sys.builtin_module_names)
    # the base Python's folder: in a virtual environment "platstdlib" names the environment's own lib
    dynloads = [Path(p) for p in sys.path if Path(p).name == "lib-dynload"]
    dynloads.append(Path(sysconfig.get_path("stdlib")) / "lib-dynload")
    dynload = next((d for d in dynloads if d.is_dir()), None)
    if dynload is not None:
        for f in dynload.iterdir():
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                if f.name.endswith(suffix):
                    names.add(f.name[: -len(suffix)])
                    break
    return sorted(n for n in names if n not in NEVER_IMPORT and not n.startswith("_test")
                  and n.isidentifier())


def read_compiled_modules(pairs: list[tuple[str, str]]) -> dict:
    """Docstrings of compiled modules, read by importing them in an isolated child process.

    The child (:mod:`tablelm.corpus._pydocs_child`) runs with ``-I -S`` (no user environment,
    site-packages or current folder on its path), a minimal environment and a throw-away
    working folder, so nothing an import does reaches this process, and what it reads does
    not depend on this process's state (a test runner that replaced ``sys.excepthook``).

    Parameters
    ----------
    pairs : list of (module, public name)
        ``("_csv", "csv")``: the class ``__module__`` names counted as the module's own.

    Returns
    -------
    dict
        ``{"modules": {name: [[kind, qualified, doc, signature, from_doc], ...]}, "failed": {name: reason}}``.
    """
    import json
    import subprocess
    import tempfile

    from tablelm.errors import TablelmError

    child = Path(__file__).with_name("_pydocs_child.py")
    env = {"PATH": os.defpath, "LC_ALL": "C.UTF-8", "PYTHONIOENCODING": "utf-8"}
    with tempfile.TemporaryDirectory(prefix="tablelm-pydocs-") as tmp:
        try:
            proc = subprocess.run([sys.executable, "-I", "-S", str(child)], input=json.dumps(pairs),
                                  capture_output=True, text=True, encoding="utf-8", env=env, cwd=tmp,
                                  timeout=CHILD_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise TablelmError(f"Reading the compiled modules of {sys.executable} failed ({err}); "
                               "the built-in corpus needs to start this Python in a child process.") from None
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no message"]
        raise TablelmError(f"Reading the compiled modules in a child process failed (exit {proc.returncode}: "
                           f"{tail[0]}); rerun with a working {sys.executable}.")
    return json.loads(proc.stdout)


def _public_owners(modules: dict[str, _Module], compiled: str, names: list[str]) -> dict[str, tuple[str, str]]:
    """For each name a compiled module defines: ``(public module, public name)`` that exports it.

    The public module that imports it (``from _csv import reader`` in ``csv``), the one named
    like the compiled module first (``_json`` -> ``json``), then in sorted order; a compiled
    module without a leading underscore (``math``) is its own public module.
    """
    importers = []
    for mod in modules.values():
        for public, src, name in mod.compiled_imports:
            if src == compiled:
                importers.append((mod.name != compiled.lstrip("_"), mod.name, public, name))
    importers.sort()
    out: dict[str, tuple[str, str]] = {}
    for _, modname, public, name in importers:
        mod = modules[modname]
        if public == "*":
            for n in names:
                if n not in out and _is_public(n, mod.all_names):
                    out[n] = (modname, n)
        elif name not in out and _is_public(public, mod.all_names):
            out[name] = (modname, public)
    if not compiled.startswith("_"):
        for n in names:
            out.setdefault(n, (compiled, n))
    return out


def _compiled_entities(modules: dict[str, _Module], builtin_objects: bool, stdlib: bool,
                       stats: ReadStats | None, gone: list | None = None) -> Iterator[TextEntity]:
    """The built-in functions and classes (``builtin_objects``), and what the compiled modules
    define under their public names (``fn:csv.reader``; ``stdlib``)."""
    compiled = compiled_module_names() if stdlib else []
    if builtin_objects and "builtins" not in compiled:
        compiled = ["builtins"] + compiled
    elif not builtin_objects:
        compiled = [c for c in compiled if c != "builtins"]
    pairs = [(c, "os" if c in ("posix", "nt") else c.lstrip("_")) for c in compiled]
    read = read_compiled_modules(pairs)
    for name, why in sorted(read["failed"].items()):
        if stats is not None:
            stats.skipped_files.append((f"compiled module {name}", why))
        if gone is not None and why == "deprecated by this Python":
            gone.append(name)
    planned: list[tuple[str, str, str, str, str, bool, str, str]] = []
    for cmod in sorted(compiled, key=lambda c: c != "builtins"):
        records = read["modules"].get(cmod)
        if not records:
            continue
        tops = sorted({r[1].split(".")[0] for r in records})
        owners = {n: ("builtins", n) for n in tops} if cmod == "builtins" else \
            _public_owners(modules, cmod, tops)
        for kind, qualified, doc, signature, from_doc in records:
            top, _, rest = qualified.partition(".")
            if top not in owners:
                continue  # a private compiled module's name that no public module exports
            public, name = owners[top]
            qualified = name + (f".{rest}" if rest else "")
            planned.append((kind, public, qualified, doc, signature, from_doc, cmod, top))
    names: dict[str, str] = {}
    ids = []
    for kind, public, qualified, *_ in planned:
        prefix = "" if public == "builtins" else f"{public}."
        eid = _PREFIX[kind] + prefix + qualified
        ids.append(eid)
        names.setdefault(qualified if public == "builtins" else f"{public}.{qualified}", eid)
        names.setdefault(qualified, eid)
    seen: set[str] = set()
    for eid, (kind, public, qualified, doc, signature, from_doc, cmod, _top) in zip(ids, planned):
        if eid in seen:  # one object exported by two compiled modules: the first is kept
            continue
        seen.add(eid)
        builtin = public == "builtins"
        prefix = "" if builtin else f"{public}."
        obj = _Obj("method" if kind == "attribute" else kind, public, qualified, doc, signature, public, 0)
        related = []
        for ref, relative in _references(doc):
            target = _resolve(ref, obj, names, relative)
            if target and target != eid and target not in related:
                related.append(target)
        tags = (kind, "example") if _EXAMPLE.search(doc) else (kind,)
        text = doc if from_doc or not signature else f"{signature}\n{doc}"
        owner = qualified.split(".")[0]
        meta = {"kind": kind, "module": public if kind in ("class", "function") else f"{public}.{owner}",
                "defined_in": cmod}
        if signature:
            meta["signature"] = signature
        yield TextEntity(id=eid, text=text, title=prefix + qualified,
                         category=(BUILTINS_CATEGORY,) if builtin else _prefixes(public),
                         tags=tags, related=tuple(related), source=f"{public}:{qualified}",
                         metadata=meta)


def _parse_stdlib(root: Path, stats: ReadStats | None, gone_out: list | None = None) -> dict[str, _Module]:
    """The public, not deprecated stdlib modules, parsed (name -> module); ``gone_out`` receives
    the deprecated ones."""
    modules: dict[str, _Module] = {}
    compiled = frozenset(compiled_module_names())
    # Parsing allocates millions of AST nodes that form no reference cycles: the cyclic GC
    # would only walk them again and again (about a third of the time). No yield in here.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name, path, relpath, is_pkg in _module_files(root):
            if name in modules:
                continue
            mod = _collect_module(name, path, relpath, is_pkg, compiled)
            if mod is None:
                if stats is not None:
                    stats.skipped_files.append((str(path), "does not parse with this Python"))
                continue
            modules[name] = mod
    finally:
        if gc_was_enabled:
            gc.enable()
    # modules this Python deprecates (distutils, lib2to3, telnetlib, imp, asynchat, ...) and
    # everything inside a deprecated package are left out: answers should not recommend them
    gone = sorted(n for n, m in modules.items() if m.deprecated)
    if gone_out is not None:
        gone_out.extend(gone)
    for name in list(modules):
        if any(name == g or name.startswith(g + ".") for g in gone):
            if stats is not None:
                stats.skipped_files.append((str(root / modules[name].relpath), "deprecated by this Python"))
            del modules[name]
    return modules


def _stdlib_entities(modules: dict[str, _Module], root: Path, stats: ReadStats | None) -> Iterator[TextEntity]:
    reverse = _reverse_exports(modules)

    names: dict[str, str] = {}      # any known qualified name -> entity id
    planned: list[tuple[_Obj, str, str]] = []
    ids: set[str] = set()
    for mod in modules.values():
        for obj in mod.objs:
            if obj.kind == "module":
                qualified = obj.module
            else:
                top, _, rest = obj.local.partition(".")
                cm, cn = _canonical(obj.module, top, reverse)
                qualified = f"{cm}.{cn}" + (f".{rest}" if rest else "")
            eid = _PREFIX[obj.kind] + qualified
            if eid in ids:
                if stats is not None:
                    stats.duplicates += 1
                continue
            ids.add(eid)
            names.setdefault(qualified, eid)
            if obj.local:
                names.setdefault(f"{obj.module}.{obj.local}", eid)
            planned.append((obj, eid, qualified))

    for obj, eid, qualified in planned:
        related = []
        for ref, relative in _references(obj.doc):
            target = _resolve(ref, obj, names, relative)
            if target and target != eid and target not in related:
                related.append(target)
        tags = (obj.kind, "example") if _EXAMPLE.search(obj.doc) else (obj.kind,)
        text = f"{obj.signature}\n{obj.doc}" if obj.signature else obj.doc
        meta = {"kind": obj.kind, "module": qualified if obj.kind == "module"
                else qualified.rsplit(".", 2 if obj.kind == "method" else 1)[0],
                "defined_in": obj.module}
        if obj.signature:
            meta["signature"] = obj.signature
        yield TextEntity(id=eid, text=text, title=qualified, category=_prefixes(obj.module),
                         tags=tags, related=tuple(related), source=f"{obj.relpath}:{obj.lineno}",
                         metadata=meta)

