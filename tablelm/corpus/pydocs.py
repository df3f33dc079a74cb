"""The built-in corpus: Python's own documentation, from the running interpreter.

Nothing here imports a standard-library module to document it (``antigravity`` opens a
browser, ``this`` prints), except a fixed list of compiled modules that have no source and no
import side effect: the language-reference topics come from ``pydoc_data.topics`` (a
dict of strings, safe to import) and the library documentation from the docstrings of the
stdlib source files, parsed with :mod:`ast`.

Entities (ids are stable for one Python version):

* ``topic:NAME``: a language-reference topic, category ``("Language reference",)``.
* ``fn:open``, ``cls:dict``, ``fn:dict.get``, ``attr:int.real``: the built-in functions and
  classes, with the public methods and descriptors of the classes, category ``("builtins",)``.
  They are C code with no ``.py`` source, so they are read from ``builtins.__dict__`` with
  :func:`inspect.getdoc` (``builtins`` is always imported: no side effect). The signature comes
  from :func:`inspect.signature` (``self`` dropped) or else from the docstring's first line.
  Aliases (``IOError`` is ``OSError``) are read once, under the object's own name; tags are the
  kind (``function`` / ``class`` / ``method`` / ``attribute``) and ``example``.
* ``fn:os.listdir``, ``fn:time.sleep``, ``cls:io.TextIOWrapper``: the compiled modules of
  :data:`COMPILED_MODULES`, read the same way under their public module's name (``posix`` is
  ``os``, ``_io`` is ``io``) when the stdlib sources do not define the name. Importing them
  has no side effect.
* ``mod:json.decoder``: a public module's docstring.
* ``cls:json.JSONDecoder``, ``fn:os.path.join``, ``fn:json.JSONDecoder.decode``: public
  classes, functions and methods of public classes. The qualified name is the public one: an
  object a package re-exports (``from .decoder import JSONDecoder`` in ``json/__init__.py``)
  is named after the package, and ``posixpath`` is ``os.path``. ``category`` is the package
  path of the module that defines it: ``("json", "json.decoder")``.

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
import builtins
import gc
import inspect
import os
import re
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass, field
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
    """What the built-in corpus depends on: the Python version and the stdlib folder."""
    return f"{BUILTIN_CORPUS_ID}; python {sys.version}; stdlib {stdlib_path()}"


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
        elif isinstance(st, (ast.Try, getattr(ast, "TryStar", ast.Try))):
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
        if not isinstance(value, (ast.List, ast.Tuple)) or not all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts):
            return None
        found = frozenset(e.value for e in value.elts)
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


def _collect_module(name: str, path: Path, relpath: str, is_pkg: bool) -> _Module | None:
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
    for st in stmts:
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
        if not is_class:
            continue
        for sub in _flat(st.body):
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and not sub.name.startswith("_"):
                local = f"{st.name}.{sub.name}"
                doc = ast.get_docstring(sub, clean=True)
                if doc and local not in seen:
                    seen.add(local)
                    mod.objs.append(_Obj("method", name, local, doc, _signature(sub, "method"),
                                         relpath, sub.lineno))
    return mod


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
                     builtin_objects: bool = True, stdlib: bool = True) -> Iterator[TextEntity]:
    """Entities of the running Python's documentation (see the module notes).

    Parameters
    ----------
    stats : ReadStats, optional
        Receives ``duplicates`` (two objects with one public name; the first is kept) and,
        in ``skipped_files``, stdlib files that do not parse.
    topics, builtin_objects, stdlib : bool
        Include the language-reference topics / the built-in functions and classes / the
        standard library docstrings.

    Yields
    ------
    TextEntity
        Topics (sorted by name), then the builtins (sorted by name, each class followed by its
        methods and descriptors sorted by name), then modules in sorted file order, each followed by its
        classes, functions and methods in source order.
    """
    if topics:
        from pydoc_data.topics import topics as topic_texts

        for name in sorted(topic_texts):
            yield TextEntity(id=f"topic:{name}", text=topic_texts[name].strip(), title=name,
                             category=(TOPIC_CATEGORY,), tags=("topic",),
                             source=f"pydoc_data/topics.py:{name}",
                             metadata={"kind": "topic"})
    if builtin_objects:
        yield from _builtin_entities()
    if stdlib:
        seen = set()
        for e in _stdlib_entities(stdlib_path(), stats):
            seen.add(e.id)
            yield e
        yield from _compiled_module_entities(seen)


# --------------------------------------------------------------------------- builtins


def _builtin_signature(name: str, obj, drop_first: bool, doc: str) -> tuple[str, bool]:
    """``(signature, taken from the docstring)``: inspect's when it has one, else line one."""
    try:
        sig = inspect.signature(obj)
    except (ValueError, TypeError):
        first = doc.split("\n", 1)[0].strip()
        return (first, True) if first.startswith(f"{name}(") else ("", False)
    params = list(sig.parameters.values())
    if drop_first and params:
        sig = sig.replace(parameters=params[1:])
    return f"{name}{sig}", False


def _builtin_members(cls: type) -> Iterator[tuple[str, str, object, str, bool]]:
    """``(kind, name, object, docstring, drop_first)`` of a class's own public members."""
    for name in sorted(vars(cls)):
        if name.startswith("_"):
            continue
        raw = vars(cls)[name]
        doc = inspect.getdoc(raw) or ""
        if not doc:
            continue
        if isinstance(raw, (classmethod, staticmethod)) or type(raw).__name__ == "classmethod_descriptor":
            yield "method", name, getattr(cls, name), doc, False
        elif callable(raw):
            yield "method", name, raw, doc, True
        elif inspect.isdatadescriptor(raw) or inspect.isgetsetdescriptor(raw) \
                or inspect.ismemberdescriptor(raw):
            yield "attribute", name, raw, doc, False


#: Compiled modules documented from their docstrings, with the public module that exports
#: them. Importing them has no side effect (most are loaded when Python starts); they hold
#: what people ask about most and has no ``.py`` source: ``os.listdir``, ``time.sleep``,
#: ``io.TextIOWrapper.readline``, ``math.sqrt``, ``itertools.chain``, ``collections.deque``.
COMPILED_MODULES = (
    ("posix", "os"), ("_io", "io"), ("_collections", "collections"), ("_functools", "functools"),
    ("time", "time"), ("math", "math"), ("cmath", "cmath"), ("itertools", "itertools"),
    ("errno", "errno"), ("gc", "gc"), ("marshal", "marshal"), ("sys", "sys"),
    ("binascii", "binascii"), ("zlib", "zlib"), ("array", "array"), ("select", "select"),
)


def _builtin_entities() -> Iterator[TextEntity]:
    """The built-in functions and classes (see the module notes), read without importing."""
    return _compiled_entities(vars(builtins), "builtins", "builtins", qualify=False)


def _compiled_module_entities(seen: set[str]) -> Iterator[TextEntity]:
    """Entities of :data:`COMPILED_MODULES` whose ids the stdlib reader did not produce."""
    import importlib

    for module, public in COMPILED_MODULES:
        if os.name != "posix" and module == "posix":
            continue
        try:
            namespace = vars(importlib.import_module(module))
        except ImportError:  # not built into this Python
            continue
        for e in _compiled_entities(namespace, module, public, qualify=True):
            if e.id not in seen:
                seen.add(e.id)
                yield e


def _compiled_entities(namespace: dict, module: str, public: str, qualify: bool) -> Iterator[TextEntity]:
    """C functions and classes (with their members) of a compiled module's namespace.

    Only C functions and classes defined by the module itself are read: a Python function put
    there at run time (test runners replace ``sys.unraisablehook``) would make the corpus
    depend on the process. ``qualify``: ids and titles carry the public module name
    (``fn:os.listdir``); the builtins do not (``fn:open``).
    """
    own = {module, public}
    planned: list[tuple[str, str, str, str, str]] = []  # kind, qualified, doc, signature, owner
    for name in sorted(namespace):
        # sys keeps the originals of what programs may replace (sys.__excepthook__ ...)
        obj = namespace.get(f"__{name}__", namespace[name])
        if name.startswith("_") or getattr(obj, "__name__", None) != name:
            continue  # private, an instance (help, exit, True), or an alias (IOError)
        if inspect.isclass(obj) and obj.__module__ in own:
            kind = "class"
        elif inspect.isbuiltin(obj):
            kind = "function"
        else:
            continue
        doc = inspect.getdoc(obj) or ""
        if not doc:
            continue
        planned.append((kind, name, doc, *_builtin_signature(name, obj, False, doc), name))
        if kind == "class":
            for mkind, mname, mobj, mdoc, drop in _builtin_members(obj):
                sig = ("", False) if mkind == "attribute" else _builtin_signature(mname, mobj, drop, mdoc)
                planned.append((mkind, f"{name}.{mname}", mdoc, *sig, name))
    prefix = f"{public}." if qualify else ""
    names: dict[str, str] = {}
    for kind, qualified, *_ in planned:
        eid = _PREFIX[kind] + prefix + qualified
        names.setdefault(qualified, eid)
        names.setdefault(f"{public}.{qualified}", eid)
    for kind, qualified, doc, signature, from_doc, owner in planned:
        eid = _PREFIX[kind] + prefix + qualified
        obj = _Obj("method" if kind == "attribute" else kind, public,
                   qualified, doc, signature, public, 0)
        related = []
        for ref, relative in _references(doc):
            target = _resolve(ref, obj, names, relative)
            if target and target != eid and target not in related:
                related.append(target)
        tags = (kind, "example") if _EXAMPLE.search(doc) else (kind,)
        text = doc if from_doc or not signature else f"{signature}\n{doc}"
        meta = {"kind": kind, "module": public if kind in ("class", "function")
                else f"{public}.{owner}", "defined_in": public}
        if signature:
            meta["signature"] = signature
        yield TextEntity(id=eid, text=text, title=prefix + qualified,
                         category=(BUILTINS_CATEGORY,) if not qualify else (public,),
                         tags=tags, related=tuple(related), source=f"{public}:{qualified}",
                         metadata=meta)


def _stdlib_entities(root: Path, stats: ReadStats | None) -> Iterator[TextEntity]:
    modules: dict[str, _Module] = {}
    # Parsing allocates millions of AST nodes that form no reference cycles: the cyclic GC
    # would only walk them again and again (about a third of the time). No yield in here.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name, path, relpath, is_pkg in _module_files(root):
            if name in modules:
                continue
            mod = _collect_module(name, path, relpath, is_pkg)
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
    for name in list(modules):
        if any(name == g or name.startswith(g + ".") for g in gone):
            if stats is not None:
                stats.skipped_files.append((str(root / modules[name].relpath), "deprecated by this Python"))
            del modules[name]
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
