"""Run as a script in a child process: read the docstrings of compiled modules.

``python -I -S _pydocs_child.py`` reads a JSON list of ``[module, public name]`` pairs on
standard input (``["_csv", "csv"]``),
imports each (in this throw-away process, so an import's side effects never reach the
user's process), and writes one JSON object to standard output::

    {"modules": {name: [[kind, qualified name, docstring, signature, from_doc], ...]},
     "failed": {name: "ImportError: ..."}}

Only functions and classes that the module itself defines are read, each class followed by
its own public methods and descriptors, all sorted by name, so the output depends on the
Python build only. It imports nothing but the standard library: ``-I`` keeps the user's
environment variables, site-packages and current folder out of ``sys.path``.
"""

import importlib
import inspect
import json
import sys
import warnings


def signature(name, obj, drop_first, doc):
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


def members(cls):
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
        elif inspect.isdatadescriptor(raw) or inspect.isgetsetdescriptor(raw) or inspect.ismemberdescriptor(raw):
            yield "attribute", name, raw, doc, False


def read(namespace, own):
    """The C functions and classes (with their members) that a module defines; ``own`` is the
    set of names a class's ``__module__`` may have (``posix.stat_result`` says ``os``)."""
    out = []
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
        out.append([kind, name, doc, *signature(name, obj, False, doc)])
        if kind == "class":
            for mkind, mname, mobj, mdoc, drop in members(obj):
                sig = ("", False) if mkind == "attribute" else signature(mname, mobj, drop, mdoc)
                out.append([mkind, f"{name}.{mname}", mdoc, *sig])
    return out


def main():
    result: dict = {"modules": {}, "failed": {}}
    for name, public in json.load(sys.stdin):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                module = importlib.import_module(name)
        except Exception as err:  # not built into this Python, or needs what is not there
            result["failed"][name] = f"{type(err).__name__}: {err}"
            continue
        if any(issubclass(w.category, DeprecationWarning) for w in caught):
            # a module this Python deprecates (spwd, nis, audioop): answers should not recommend it
            result["failed"][name] = "deprecated by this Python"
            continue
        result["modules"][name] = read(vars(module), {name, public})
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
