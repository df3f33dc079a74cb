"""Regenerate the golden answers of the built-in corpus for this Python version.

The built-in corpus is Python's own documentation, so answers depend on the Python
version: goldens live in ``tests/golden/builtin-py<X.Y.Z>.json``, one file per version, and
``builtin-py<X.Y.Z>-html.json`` when the HTML documentation of that Python is installed
(Debian's ``python3.X-doc``; the built-in corpus includes it then).

Usage (from the repository root)::

    python tests/golden/regen.py            # writes tests/golden/builtin-py<this version>[-html].json
    TABLELM_PYTHON_DOCS=none python tests/golden/regen.py   # the goldens without the HTML docs

It builds the built-in model into a temporary cache (your own cache is not touched),
prints every answer so you can check it still makes sense, and writes the file.
Review the diff (``git diff tests/golden``) before committing it: a golden change is a
change of behaviour.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Everyday Python questions; each is answered with K cards.
PROMPTS = [
    "how do I read a file line by line",
    "random number between two integers",
    "sort a list",
    "parse json",
    "current date and time",
    "remove a directory recursively",
    "regular expression match",
    "copy a file",
]
K = 10


def version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


def golden_path(ver: str | None = None, html: bool | None = None) -> Path:
    """The golden file of this Python version, and of whether its HTML documentation is installed
    (the built-in corpus includes it when it is: ``builtin-py3.11.7-html.json``)."""
    if html is None:
        from tablelm.corpus.pydocs import python_html_docs

        html = python_html_docs() is not None
    return HERE / f"builtin-py{ver or version()}{'-html' if html else ''}.json"


def record(model) -> dict:
    """What the golden file freezes: per prompt, the matched multitokens and the ranked cards."""
    out = {}
    for prompt in PROMPTS:
        a = model.ask(prompt, k=K)
        out[prompt] = {
            "matched": a.plan["multitokens_matched"],
            "cards": [{"rank": c.rank, "id": c.id, "score": c.score} for c in a.cards],
        }
    return {"python": version(), "fingerprint": model.manifest["fingerprint"], "k": K, "answers": out}


def main() -> None:
    sys.path.insert(0, str(HERE.parents[1]))
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TABLELM_CACHE"] = cache
        from tablelm.builtin import builtin_model

        data = record(builtin_model(progress=True))
    for prompt, ans in data["answers"].items():
        print(f"\n{prompt}   (matched: {', '.join(ans['matched'])})")
        for c in ans["cards"]:
            print(f"  {c['rank']:>2}. {c['id']:<60} {c['score']:.6f}")
    path = golden_path()
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nWrote {path}")


if __name__ == "__main__":
    main()
