"""The built-in model: Python's own documentation, built on first use and cached.

The cache key holds the Python version and the tablelm model format, so a new
Python or a new format gets its own model instead of a stale one.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from .tables.store import FORMAT_VERSION, MANIFEST

#: Bumped whenever the built-in corpus, its KW_map or its profile changes, so that caches are rebuilt.
CORPUS_REVISION = 7

#: The built-in model's query profile when it includes the HTML documentation: the importance
#: prior on. There, a link to a documented object (``library/functions.html#open``) is an in-link
#: of its own entity, and ``python benchmarks/everyday.py`` goes from top-1 0.20 / top-3 0.52 /
#: top-10 0.74 to 0.42 / 0.62 / 0.86 with ``w_importance=1`` (0.5: 0.38 / 0.56 / 0.84; 2: 0.38 /
#: 0.58 / 0.86). Without the HTML documentation the in-links are the docstrings' references and
#: the prior hurts (0.32 / 0.50 / 0.64 → 0.24 / 0.42 / 0.64 at 1), so that model keeps the
#: registry defaults, as do all other models (the judged collections: docs/benchmarks.md).
#: Checked again on corpus revision 7 with ``--split`` (chosen on half A, checked on half B):
#: w_importance 0 / 0.5 / 1 / 2 give MRR@10 0.427 / 0.572 / 0.599 / 0.544 on A and 0.461 / 0.547 /
#: 0.588 / 0.570 on B; qtf_k3 (0, 1, 10), w_title (1, 2, 3, 4), w_category (0.1-1), phrase_weight
#: (0.2-1), b and k1 and passage scoring (query/passages.py) found nothing better on A either.
#: Checked for the README question (issue 13: "how do I read a file line by line" puts
#: fileinput.nextfile first, an 89-word docstring that says read/line/file 5-6 times each, and
#: io.IOBase.readline second): nothing principled puts an expected answer first without lowering B
#: or held-out (``everyday.py --split --compare``, MRR@10, base A 0.599 / B 0.588 / held-out 0.523).
#: A document-kind prior for "how" prompts (tutorial, HOWTO and FAQ sections x1.5 put the tutorial
#: first) lowers the same questions asked "how do I ..." (``--prefix``) to B 0.466 (p 0.002) and
#: held-out 0.427 (p 0.016); k1=3, best on A (0.659), lowers B to 0.565 and the README question to
#: rank 4; k1 x b, contained_weight (0.4-0.8), a weight for a phrase covering the whole prompt
#: (0.5-2) and prompt words joined into an identifier ("read" + "line" -> readline) lower A or B.
#: The closest: entity titles' identifiers split into the corpus's own words at build time
#: (readline -> "read line", getsize -> "get size"; each part >= 3 letters, seen >= 5-200 times, more
#: often than the whole) put io.IOBase.readline first and give A +0.01-0.03, held-out +0.02-0.07,
#: but B -0.005 to -0.009 (getLength, FileExistsError rise; no p below 0.25): not kept. Checked
#: once on the 85 questions of held-out-2, written before any model ran on them: all title words
#: 0.547 vs 0.532 (p 0.35), the object's name only 0.532 vs 0.532 (p 0.94): still no evidence.
HTML_PROFILE_PARAMS: dict[str, float] = {"w_importance": 1.0}


def builtin_profile(html_docs: bool) -> dict:
    """The query profile a built-in model gets at build (empty: the registry defaults)."""
    return {"name": "python-docs-html", "params": dict(HTML_PROFILE_PARAMS)} if html_docs else {}


def builtin_dir() -> Path:
    """Where the built-in model lives (``TABLELM_CACHE`` overrides the user cache dir)."""
    from platformdirs import user_cache_dir

    from .model import __version__

    root = Path(os.environ.get("TABLELM_CACHE") or user_cache_dir("tablelm"))
    from .corpus.pydocs import python_html_docs

    py = ".".join(map(str, sys.version_info[:3]))
    # the HTML documentation installed (or removed) later gets its own model, not a stale one
    html = python_html_docs()
    docs = "-html" + hashlib.sha256(f"{html[0]} {html[1]}".encode()).hexdigest()[:8] if html else ""
    return root / f"python-docs-py{py}{docs}-tablelm{__version__}-f{FORMAT_VERSION}-c{CORPUS_REVISION}"


def builtin_model(progress: bool = False):
    """Load the built-in model, building it first if it is not cached yet."""
    from .errors import ModelError
    from .model import build, load

    path = builtin_dir()
    if (path / MANIFEST).exists():
        try:
            return load(path)
        except ModelError:
            pass  # damaged cache: rebuild below
    if progress:
        print(f"Building the built-in model of Python's documentation into {path} (once)...", file=sys.stderr)
    return build(None, path, progress=progress)
