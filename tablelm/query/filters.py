"""Which entities an answer leaves out: ``!word`` exclusions, "exact phrases", category/tag filters.

* ``!word``: the entities whose postings hold the word's stem, as the reference does; when a
  prompt word has the same stem ("public conference !publication"), only the entities whose
  own text contains the excluded word itself (whole word, any case) among the scored ones, so
  an exclusion never empties the prompt.
* ``"exact phrase"``: the entities that do not contain the phrase's multitoken.
* ``filter`` (``category=json``, ``tag=example``, or a bare name for either): the entities
  with no category (at any level of its path, or its last part) or tag of that name; several
  filters must all hold.
"""

from __future__ import annotations

import re

import numpy as np

#: Most scored entities checked word by word for an exclusion that shares a prompt word's stem.
MAX_EXACT_CHECKS = 5000
_TABLES = {"category": ("category",), "tag": ("tags",), "tags": ("tags",), "": ("category", "tags")}


def _postings(model, mt: int) -> np.ndarray:
    return model.tables.postings(mt)[0]


def parse_filter(item: str) -> tuple[str, str]:
    """``"category=json"`` -> ``("category", "json")``; a bare name is ``("", name)``."""
    key, sep, value = item.partition("=")
    if not sep:
        return "", item.strip()
    key = key.strip().lower()
    if key not in _TABLES:
        from ..errors import ParamError

        raise ParamError(f"The 'filter' parameter takes category=NAME or tag=NAME (or NAME for either). "
                         f"Got {item!r}.")
    return key, value.strip()


def _label_ids(model, table: str, name: str) -> np.ndarray:
    """Labels of a context table equal to ``name`` (any case), or whose last path part is it
    (or starts with it and a dash: Sphinx's module pages, "csv — CSV File Reading and Writing")."""
    want = name.casefold()
    out = []
    for i, lab in enumerate(model.tables.context(table).names):
        last = lab.rsplit(" > ", 1)[-1].casefold()
        if lab.casefold() == want or last == want or last.startswith((want + " \u2014 ", want + " - ")):
            out.append(i)
    return np.asarray(out, dtype=np.int64)


def filter_mask(model, filters) -> np.ndarray | None:
    """Entities that pass every filter (True), or None when there is no filter."""
    if not filters:
        return None
    keep = np.ones(model.n_docs, dtype=bool)
    for item in filters:
        key, name = parse_filter(item)
        ok = np.zeros(model.n_docs, dtype=bool)
        for table in _TABLES[key]:
            labels = _label_ids(model, table, name)
            if not len(labels):
                continue
            ctx = model.tables.context(table)
            indptr, doc_labels = ctx.doc_indptr, np.asarray(ctx.doc_labels, dtype=np.int64)
            owner = np.repeat(np.arange(model.n_docs), np.diff(indptr))
            ok[owner[np.isin(doc_labels, labels)]] = True
        keep &= ok
    return keep


def excluded_entities(model, plan, scores: np.ndarray) -> np.ndarray | None:
    """Indices of the entities the answer must leave out (see the module notes), or None."""
    parts = []
    for sid, word, shares_stem in plan.exclusions:
        docs = _postings(model, sid)
        if shares_stem:
            docs = docs[scores[docs] > 0]
            if len(docs) > MAX_EXACT_CHECKS:
                docs = docs[np.argsort(-scores[docs], kind="stable")[:MAX_EXACT_CHECKS]]
            pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)
            docs = np.asarray([d for d in docs.tolist() if _mentions(model, d, pattern)], dtype=np.int64)
        parts.append(docs)
    keep = filter_mask(model, plan.filters)
    for mt in plan.required_mts:
        has = np.zeros(model.n_docs, dtype=bool)
        has[_postings(model, mt)] = True
        keep = has if keep is None else keep & has
    if keep is not None:
        parts.append(np.flatnonzero(~keep))
    if not parts:
        return None
    # sorted and distinct through a mask: np.unique of a filter's ~N entities hashes them (0.4-0.5 s at 1M)
    out = np.zeros(model.n_docs, dtype=bool)
    for part in parts:
        out[part] = True
    return np.flatnonzero(out).astype(np.int64, copy=False)


def _mentions(model, d: int, pattern) -> bool:
    e = model.entity_at(d)
    return any(pattern.search(x) for x in (e.title, e.text, *e.category, *e.tags))
