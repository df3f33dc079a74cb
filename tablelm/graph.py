"""The knowledge graph of a model: category tree, related-item links, taxonomy reconstruction.

* :func:`category_tree` / :func:`related_links` / :func:`graph_dict`: what the entities' category
  paths and "see also" fields say, as plain data; :func:`to_dot` renders it for Graphviz.
* :func:`reconstruct_taxonomy`: the reference system's own evaluation. Pretend categories are
  unknown and assign each entity a category from its content and the context tables, then
  compare with its true category.

  The score of category ``c`` for entity ``d`` is

  .. math:: s(c) = \\sum_{t \\in d} \\mathrm{idf}(t) \\cdot
            \\bigl(n(t, c) - [c = c_d] \\, n_d(t)\\bigr)

  over the multitokens ``t`` of ``d``'s text and title (not its category, tags or metadata:
  they would give the answer away); ``n(t, c)`` is the ``ctx_category`` count and ``n_d(t)``
  what ``d`` itself added to it, subtracted so that the evaluation is leave-one-out (an
  entity is never scored against its own counts). ``idf`` is BM25's
  ``log(1 + (N - df + 0.5) / (df + 0.5))`` (Robertson & Zaragoza 2009), as in ranking. With
  ``normalize=True`` the count is divided by the category's total count (what category ``c``
  says about ``t`` as a share of everything it says), which stops big categories from
  winning by size alone.

  A prediction is **exact** when it is the true category path, **near** (the reference's
  "parent category counted as a near miss") when it is the true path's parent, a child of it,
  or a sibling (same parent).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from .tables.build import label_path

SEP = " > "


def _entities(model):
    for i in range(model.n_docs):
        yield i, model.entity_at(i)


def category_tree(model) -> list[dict]:
    """Every category path and its ancestors: ``{"id", "name", "parent", "depth", "entities",
    "total"}``, ``entities`` counting entities filed directly under it, ``total`` including
    the sub-categories; sorted by id."""
    direct: Counter = Counter()
    for _, e in _entities(model):
        parts = tuple(" ".join(p.split()) for p in e.category if p.strip())
        if parts:
            direct[parts] += 1
    nodes: dict[tuple, dict] = {}
    for parts, n in direct.items():
        for k in range(1, len(parts) + 1):
            key = parts[:k]
            node = nodes.get(key)
            if node is None:
                node = nodes[key] = {"id": SEP.join(key), "name": key[-1],
                                     "parent": SEP.join(key[:-1]) if k > 1 else None,
                                     "depth": k, "entities": 0, "total": 0}
            node["total"] += n
        nodes[parts]["entities"] += n
    return [nodes[k] for k in sorted(nodes, key=lambda k: SEP.join(k))]


def related_links(model) -> dict:
    """Related-item links: ``edges`` (source id → target id, both entities of the model),
    ``external`` (targets that are no entity: URLs or names outside the corpus).

    A target is resolved as an entity id, else as the unique title of an entity.
    """
    ids = set(model.ids)
    titles: dict[str, str | None] = {}
    entities = list(_entities(model))
    for _, e in entities:
        t = " ".join(e.title.split()).casefold()
        if t:
            titles[t] = None if t in titles else e.id
    edges, external = [], []
    for _, e in entities:
        for r in e.related:
            target = r if r in ids else titles.get(" ".join(r.split()).casefold())
            if target and target != e.id:
                edges.append({"source": e.id, "target": target})
            elif not target:
                external.append({"source": e.id, "target": r})
    return {"edges": edges, "external": external}


def graph_dict(model) -> dict:
    """The whole graph export (JSON shape of ``tablelm graph``)."""
    cats = category_tree(model)
    links = related_links(model)
    return {
        "model": str(model.path) if model.path else None,
        "entities": model.n_docs,
        "categories": cats,
        "related": links["edges"],
        "external_related": links["external"],
        "counts": {"categories": len(cats), "root_categories": sum(c["parent"] is None for c in cats),
                   "related_edges": len(links["edges"]),
                   "external_related": len(links["external"])},
    }


def _dot_id(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def to_dot(graph: dict, max_edges: int | None = None) -> str:
    """Graphviz DOT of :func:`graph_dict`: category boxes with their counts and parent edges,
    then related links between entities (dashed)."""
    out = ["digraph tablelm {", "  rankdir=LR;", "  node [shape=box, fontsize=10];"]
    for c in graph["categories"]:
        label = f"{c['name']} ({c['total']})"
        out.append(f"  {_dot_id('cat:' + c['id'])} [label={_dot_id(label)}];")
        if c["parent"] is not None:
            out.append(f"  {_dot_id('cat:' + c['parent'])} -> {_dot_id('cat:' + c['id'])};")
    edges = graph["related"] if max_edges is None else graph["related"][:max_edges]
    if edges:
        out.append("  node [shape=ellipse];")
        for e in edges:
            out.append(f"  {_dot_id(e['source'])} -> {_dot_id(e['target'])} [style=dashed];")
    out.append("}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- taxonomy


def _doc_postings(model):
    """Postings sorted by entity (the forward index): (doc of each, mt of each, posting index)."""
    t = model.tables
    order = np.asarray(t.fwd_post, dtype=np.int64)
    return np.asarray(t.post_docs, dtype=np.int64)[order], np.asarray(t.fwd_mt, dtype=np.int64), order


def reconstruct_taxonomy(model, *, normalize: bool = False, chunk: int = 512,
                         examples: int = 10) -> dict:
    """Assign every entity that has a category a predicted one; count exact and near matches.

    Parameters
    ----------
    model : Model
    normalize : bool
        Divide each count by its category's total (see the module notes).
    chunk : int
        Entities scored at once (memory: chunk × number of categories floats).
    examples : int
        Misses listed in the result.

    Returns
    -------
    dict
        ``evaluated`` (entities with a category), ``exact``, ``near``, ``unassigned`` (no
        table evidence), ``singletons`` (entities alone in their category: no exact match is
        possible), ``categories``, rates, ``by_depth`` and some ``misses``.
    """
    from .query.rank import idf

    ctx = model.tables.context("category")
    labels = ctx.names
    n_lab = len(labels)
    doc_ind = np.asarray(ctx.doc_indptr, dtype=np.int64)
    doc_lab = np.asarray(ctx.doc_labels, dtype=np.int64)
    n = model.n_docs
    true = np.full(n, -1, dtype=np.int64)
    has = np.diff(doc_ind) > 0
    true[has] = doc_lab[doc_ind[:-1][has]]
    result: dict[str, Any] = {"evaluated": int(has.sum()), "categories": n_lab, "normalize": normalize}
    if n_lab == 0 or not has.any():
        return dict(result, exact=0, near=0, unassigned=0, singletons=0, exact_rate=0.0,
                    near_rate=0.0, by_depth={}, misses=[])

    c_ind = np.asarray(ctx.indptr, dtype=np.int64)
    c_lab = np.asarray(ctx.labels, dtype=np.int64)
    c_cnt = np.asarray(ctx.counts, dtype=np.float64)
    post_tf = np.asarray(model.tables.post_tf)
    n_mt = len(c_ind) - 1
    w_mt = idf(model, np.arange(n_mt))
    mass = np.bincount(c_lab, weights=c_cnt, minlength=n_lab)
    members = np.bincount(true[has], minlength=n_lab)

    p_doc, p_mt, p_order = _doc_postings(model)
    tf_q = post_tf[p_order, :2].sum(axis=1)          # text + title: the evidence
    tf_own = post_tf[p_order, :4].sum(axis=1)        # what the build added to ctx_category
    doc_start = np.searchsorted(p_doc, np.arange(n + 1))
    pred = np.full(n, -1, dtype=np.int64)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        s, e = doc_start[lo], doc_start[hi]
        sel = np.flatnonzero(tf_q[s:e] > 0) + s
        d_loc, mt = p_doc[sel] - lo, p_mt[sel]
        lens = c_ind[mt + 1] - c_ind[mt]
        rep = np.repeat(np.arange(len(sel)), lens)
        within = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        rows = c_ind[mt][rep] + within
        lab = c_lab[rows]
        cnt = c_cnt[rows].copy()
        own = lab == true[lo + d_loc[rep]]
        cnt[own] -= tf_own[sel][rep][own]  # leave one out
        val = w_mt[mt][rep] * np.maximum(cnt, 0.0)
        if normalize:
            own_mass = np.zeros(len(rows))
            # the category's total without this entity's own contribution
            own_total = np.bincount(p_doc[s:e] - lo, weights=tf_own[s:e], minlength=hi - lo)
            own_mass[own] = own_total[d_loc[rep][own]]
            val = val / np.maximum(mass[lab] - own_mass, 1.0)
        scores = np.zeros((hi - lo) * n_lab)
        np.add.at(scores, d_loc[rep] * n_lab + lab, val)
        scores = scores.reshape(hi - lo, n_lab)
        best = scores.argmax(axis=1)
        ok = scores[np.arange(hi - lo), best] > 0
        pred[lo:hi] = np.where(ok, best, -1)

    paths = [tuple(lbl.split(SEP)) for lbl in labels]
    exact = near = unassigned = 0
    by_depth: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    misses: list[dict[str, str]] = []
    ids = model.ids
    for d in np.flatnonzero(has).tolist():
        t, p = int(true[d]), int(pred[d])
        tp = paths[t]
        row = by_depth[len(tp)]
        row[0] += 1
        if p < 0:
            unassigned += 1
            continue
        pp = paths[p]
        if p == t:
            exact += 1
            row[1] += 1
        elif (pp == tp[:-1] or pp[:-1] == tp or (len(tp) > 1 and pp[:-1] == tp[:-1])):
            near += 1
            row[2] += 1
        elif len(misses) < examples:
            misses.append({"id": ids[d], "true": labels[t], "predicted": labels[p]})
    ev = result["evaluated"]
    result.update({
        "exact": exact, "near": near, "unassigned": unassigned,
        "singletons": int((members[true[has]] == 1).sum()),
        "exact_rate": round(exact / ev, 4), "near_rate": round(near / ev, 4),
        "exact_or_near_rate": round((exact + near) / ev, 4),
        "by_depth": {str(k): {"entities": v[0], "exact": v[1], "near": v[2]}
                     for k, v in sorted(by_depth.items())},
        "misses": misses,
    })
    return result


def taxonomy_text(r: dict) -> str:
    """A short human summary of :func:`reconstruct_taxonomy`'s result."""
    ev = r["evaluated"] or 1
    lines = [f"Taxonomy reconstruction ({'normalized' if r.get('normalize') else 'raw'} counts, "
             f"leave-one-out): {r['evaluated']:,} entities, {r['categories']:,} categories",
             f"  exact  {r['exact']:,} ({r['exact'] / ev:.1%})",
             f"  near   {r['near']:,} ({r['near'] / ev:.1%})  parent, child or sibling category",
             f"  none   {r['unassigned']:,}  no table evidence",
             f"  {r['singletons']:,} entities are alone in their category (no exact match possible)"]
    for m in r.get("misses", [])[:5]:
        lines.append(f"  miss: {m['id']}: {m['true']}  →  {m['predicted']}")
    return "\n".join(lines)


__all__ = ["category_tree", "related_links", "graph_dict", "to_dot", "reconstruct_taxonomy",
           "taxonomy_text", "label_path"]
