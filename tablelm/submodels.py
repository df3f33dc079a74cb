"""Sub-models: one model directory split into sub-LLMs by a field, asked through a router.

``tablelm build SOURCES -o MODEL --split-by category`` counts one sub-model per top value of
a field (a category path's first part, the first tag, or a ``metadata.KEY`` value). Layout::

    MODEL/
      manifest.json            kind "split": the sub-models, their sizes, the collection profile
      split-<digest>/
        router/                the router's tables (a tables directory, see tables/store.py)
        <name>/                one complete model directory per sub-model (tablelm.load reads it)

Every sub-model is an ordinary model of its own entities (its postings, pairs, contexts,
entity store and its own parameter profile), with one difference: its tables use the id
space of the **whole collection** (the stems and multitokens of the unsplit build, counted
against the collection's dictionary; a multitoken absent from the sub-model has no postings).
So a prompt is planned once, for the collection, and its terms mean the same in every
sub-model; the router's tables hold, per multitoken, its document frequency and count in
each sub-model (``route_*``).

Scores are comparable across sub-models because every sub-model scores with the statistics
of the *scope* (the sub-models a caller may read: all of them, or those of an access key):
``N``, ``df`` and the average field lengths of BM25F are the scope's sums, the lesson of
sharded search engines (per-shard IDF makes shard scores incomparable). Asking every
sub-model of the full scope and merging by (score, corpus position) gives the unsplit
model's ranking, entity for entity and score for score (tests/test_submodels.py); a
restricted scope never reads a count of a sub-model outside it.

Writing is atomic like a build's: the sub-models and the router are written into a
temporary folder, renamed into place, and only then does the manifest name it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from . import params as P
from .errors import ModelError, TablelmError
from .tables.build import gc_paused

SPLIT_KIND = "split"
#: the most sub-models a split makes by default: the largest values get one each, the rest share "other"
MAX_SUBMODELS = 32
NONE_LABEL = "(none)"
OTHER_LABEL = "(other)"
#: query arguments of a split model beyond the parameter registry: routing (see tablelm/router.py)
ROUTE_ARGS = ("submodels", "route", "route_max", "route_coverage", "route_method")


# --------------------------------------------------------------------------- the split key
def split_value(entity, field: str, sep: str | None = None) -> str | None:
    """The value of ``field`` that decides an entity's sub-model (None: it has none).

    ``category``: the top of the category path; ``tags``: the first tag; ``title``,
    ``source``, ``id``: the field (``id`` with ``sep=":"``: the prefix of ids like ``npm:left-pad``);
    ``metadata.KEY`` (dots walk nested objects): the value, the first item of a list. With
    ``sep``, only the part before the first ``sep`` ("3.73" → "3").
    """
    if field == "category":
        v = entity.category[0] if entity.category else None
    elif field == "tags":
        v = entity.tags[0] if entity.tags else None
    elif field in ("title", "source", "id"):
        v = getattr(entity, field) or None
    elif field.startswith("metadata.") and len(field) > len("metadata."):
        v = entity.metadata
        for key in field.split(".")[1:]:
            v = v.get(key) if isinstance(v, dict) else None
        if isinstance(v, (list, tuple)):
            v = v[0] if v else None
        if v is not None and not isinstance(v, str):
            v = json.dumps(v, ensure_ascii=False, sort_keys=True) if isinstance(v, (dict, list)) else str(v)
    else:
        raise TablelmError(f"--split-by takes category, tags, title, source, id or metadata.KEY. Got {field!r}.")
    if v is None:
        return None
    if sep:
        v = v.split(sep, 1)[0]
    v = " ".join(v.split())
    return v or None


def _slug(label: str) -> str:
    s = re.sub(r"[^a-z0-9._-]+", "-", label.casefold()).strip("-.")
    return s[:60] or "x"


def assign(entities, field: str, sep: str | None = None, max_submodels: int = MAX_SUBMODELS):
    """(names, labels, group of each entity): the sub-models of a split, deterministic.

    The ``max_submodels - 1`` most frequent values (ties: alphabetical) get a sub-model each
    when there are more values than ``max_submodels``; the others share ``_other``. Entities
    without a value go to ``_none``.
    """
    if not isinstance(max_submodels, int) or isinstance(max_submodels, bool) or max_submodels < 2:
        raise TablelmError(f"max_submodels must be an int >= 2. Got {max_submodels!r}.")
    values = [split_value(e, field, sep) for e in entities]
    counts = Counter(v for v in values if v is not None)
    if not counts:
        raise TablelmError(f"No entity has a value in {field!r}: nothing to split by. Pick a field the corpus "
                           "fills (tablelm show ID --json shows an entity's fields).")
    ranked = sorted(counts, key=lambda v: (-counts[v], v))
    n_own = len(ranked) if len(ranked) + (None in values) <= max_submodels else max_submodels - 1 - (None in values)
    own = set(ranked[:max(n_own, 1)])
    label_of = [v if v in own else (NONE_LABEL if v is None else OTHER_LABEL) for v in values]
    labels = sorted(set(label_of), key=lambda x: (x in (NONE_LABEL, OTHER_LABEL), x))
    names, used = {}, set()
    for lab in labels:
        base = {NONE_LABEL: "_none", OTHER_LABEL: "_other"}.get(lab) or _slug(lab)
        name, i = base, 2
        while name in used or name == "router":
            name, i = f"{base}-{i}", i + 1
        used.add(name)
        names[lab] = name
    index = {lab: i for i, lab in enumerate(labels)}
    return [names[lab] for lab in labels], labels, np.asarray([index[lab] for lab in label_of], dtype=np.int64)


# --------------------------------------------------------------------------- build
def _widen(part, whole):
    """A sub-model's partial (counted against the collection's dictionary) in the collection's id space.

    Stems, multitokens and surfaces become the whole collection's (same order: the maps are
    monotonic, so every sorted run stays sorted); the counts stay the sub-model's own, zero
    for what it does not have.
    """
    from .tables.counts import Partial

    order = np.argsort(whole.mt_hash, kind="stable")
    pos = np.searchsorted(whole.mt_hash[order], part.mt_hash)
    gid = order[np.minimum(pos, len(order) - 1)]
    if len(gid) and (not (whole.mt_hash[gid] == part.mt_hash).all() or (np.diff(gid) <= 0).any()):
        raise ModelError("a sub-model's multitokens are not the collection's (this is a bug, please report it)")
    n_mt = len(whole.mt_hash)
    mt_counts = np.zeros((n_mt, part.mt_counts.shape[1]), dtype=np.int64)
    mt_counts[gid] = part.mt_counts
    s_at = {s: i for i, s in enumerate(whole.surfaces)}
    surface_count = np.zeros(len(whole.surfaces), dtype=np.int64)
    if part.surfaces:
        surface_count[np.fromiter((s_at[s] for s in part.surfaces), dtype=np.int64,
                                  count=len(part.surfaces))] = part.surface_count
    return Partial(n_docs=part.n_docs, stems=whole.stems, stem_hash=whole.stem_hash, mt_words=whole.mt_words,
                   mt_hash=whole.mt_hash, mt_counts=mt_counts, post_mt=gid[part.post_mt].astype(np.int32),
                   post_doc=part.post_doc, post_tf=part.post_tf, pair_a=gid[part.pair_a].astype(np.int32),
                   pair_b=gid[part.pair_b].astype(np.int32), pair_adj=part.pair_adj, pair_ctx=part.pair_ctx,
                   pend_hash=part.pend_hash, pend_doc=part.pend_doc, surfaces=whole.surfaces,
                   surface_stem=whole.surface_stem, surface_count=surface_count, doc_len=part.doc_len,
                   labels=part.labels)


def build_split(entities, analyzer, bp: dict, corpus: dict, out_dir, *, split_by: str, split_sep: str | None = None,
                max_submodels: int = MAX_SUBMODELS, progress: bool = False, report: dict | None = None,
                profile: dict | None = None, profiles: dict | None = None):
    """Count and write a split model (see the module notes); returns the loaded :class:`SplitModel`.

    ``profile``: the collection's query profile; ``profiles``: a profile per sub-model name (kept
    by :meth:`SplitModel.add` and ``delete``; neither is part of a fingerprint)."""
    from .model import _bar, _entity_tables, _manifest
    from .tables import build as B
    from .tables.counts import assemble
    from .tables.schema import conform

    if out_dir is None:
        raise TablelmError("A split model is written to a directory: pass -o MODEL_DIR (out_dir).")
    t0 = time.perf_counter()
    entities = list(entities)
    names, labels, group = assign(entities, split_by, split_sep, max_submodels)
    whole = B.count_partial(entities, analyzer, bp)
    mt_len = (whole.mt_words >= 0).sum(axis=1)
    dictionary = np.sort(whole.mt_hash[mt_len >= 2])
    n_mt = len(whole.mt_hash)
    bar = _bar(progress, "sub-models", "sub-models", total=len(names))
    subs, route_sub, route_mt, route_df, route_total, surf_sub, surf_id, surf_n = [], [], [], [], [], [], [], []
    route_start = []
    built = []
    for s, (name, label) in enumerate(zip(names, labels)):
        members = np.flatnonzero(group == s)
        ents = [entities[i] for i in members.tolist()]
        wide = _widen(B.count_partial(ents, analyzer, bp, dictionary=dictionary), whole)
        tables = assemble(wide)
        extra = _entity_tables(ents)
        tables.arrays.update(extra.arrays)
        tables.strings.update(extra.strings)
        tables.blobs.update(extra.blobs)
        tables.arrays = conform(tables.arrays)
        sub_corpus = dict(corpus, entities=len(ents), split={"by": split_by, "sep": split_sep, "name": name,
                                                               "label": label})
        manifest = _manifest(tables, analyzer, bp, sub_corpus, (profiles or {}).get(name, {}))
        built.append((name, tables, manifest))
        df = np.bincount(wide.post_mt, minlength=n_mt)
        total = wide.mt_counts.sum(axis=1)
        has = np.flatnonzero(total > 0)
        route_mt.append(has)
        route_sub.append(np.full(len(has), s))
        route_df.append(df[has])
        route_total.append(total[has])
        route_start.append(np.asarray(tables.arrays["post_indptr"], dtype=np.int64)[has])
        live = np.flatnonzero(wide.surface_count > 0)
        surf_id.append(live)
        surf_sub.append(np.full(len(live), s))
        surf_n.append(wide.surface_count[live])
        subs.append({"name": name, "label": label, "entities": len(ents), "fingerprint": manifest["fingerprint"],
                     "words": int(wide.doc_len.sum()), "len_sum": [int(x) for x in wide.doc_len.sum(axis=0)],
                     "multitokens": len(has)})
        bar.update(1)
    bar.close()
    router = _router_tables(whole, n_mt, route_mt, route_sub, route_df, route_total, surf_id, surf_sub, surf_n,
                            group, route_start)
    router.strings["ids"] = [json.dumps(entities[i].id, ensure_ascii=False)
                             for i in np.asarray(router.arrays["position"]).tolist()]
    fingerprint = hashlib.sha256(json.dumps([s["fingerprint"] for s in subs] + [split_by, split_sep],
                                            sort_keys=True).encode()).hexdigest()
    from .model import __version__

    manifest = {"kind": SPLIT_KIND, "tablelm_version": __version__, "fingerprint": fingerprint,
                "build_params": bp, "analyzer": analyzer.config(), "corpus": dict(corpus, entities=len(entities)),
                "split": {"by": split_by, "sep": split_sep, "max_submodels": max_submodels},
                "submodels": subs, "profile": profile or {},
                "stats": {"entities": len(entities), "submodels": len(subs), "multitokens": n_mt,
                          "words": int(sum(s["words"] for s in subs)),
                          "postings": int(sum(m["stats"]["postings"] for _, _, m in built)),
                          "pairs": int(sum(m["stats"]["pairs"] for _, _, m in built))}}
    save_split(out_dir, built, router, manifest)
    if report is not None:
        report.setdefault("seconds", {})["split"] = round(time.perf_counter() - t0, 3)
    return load_split(out_dir)


def _router_tables(whole, n_mt, route_mt, route_sub, route_df, route_total, surf_id, surf_sub, surf_n, group,
                   route_start):
    """The router's tables: the collection's dictionary and, per multitoken, its counts in each sub-model.

    What a prompt reads is laid out so that each of its multitokens costs a few contiguous
    reads, however many sub-models it is routed to: ``route_indptr`` (one row per multitoken),
    then the row's entries in ``route_entry`` (sub-model, document frequency there, first
    posting there: one record per sub-model that has it), and the collection's sums in
    ``all_stats`` (df, total count). With the first posting and the df of a multitoken in a
    sub-model, its postings are read without that sub-model's row pointers (a table of the
    collection's size in every sub-model)."""
    from .tables.build import Tables
    from .tables.counts import csr_from_sorted_rows
    from .tables.hashing import hash_rows, sort_rows
    from .tables.schema import narrow_uint

    def by_row(rows, cols, *vals):
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        o = np.argsort(r, kind="stable")  # by row, then sub-model (the order they came in)
        return (r[o], np.concatenate(cols)[o], *(np.concatenate(v)[o] for v in vals))

    mt, sub, df, total, start = by_row(route_mt, route_sub, route_df, route_total, route_start)
    sid, ssub, sn = by_row(surf_id, surf_sub, surf_n)
    mt_len = (whole.mt_words >= 0).sum(axis=1)
    multi = np.flatnonzero(mt_len >= 2)
    sng_hash = hash_rows(sort_rows(whole.mt_words[multi]))
    so = np.argsort(sng_hash, kind="stable")
    position = np.concatenate([np.flatnonzero(group == s) for s in range(int(group.max()) + 1)])
    # the whole collection's statistics, summed once here: the full scope (every caller without an
    # access key) maps them at load instead of summing the per-sub-model rows over the dictionary
    all_df = np.bincount(mt, weights=df, minlength=n_mt).astype(np.int64)
    all_total = np.bincount(mt, weights=total, minlength=n_mt).astype(np.int64)
    all_surf = np.bincount(sid, weights=sn, minlength=len(whole.surfaces)).astype(np.int64)
    from .tables.counts import display_words

    display = display_words(list(whole.stems), whole.surface_stem, all_surf, list(whole.surfaces))
    arrays = {
        "mt_words": whole.mt_words.astype(np.int32), "sng_hash": sng_hash[so], "sng_mt": multi[so].astype(np.int32),
        "route_indptr": narrow_uint(csr_from_sorted_rows(mt, n_mt)), "route_total": total.astype(np.int64),
        "surf_indptr": csr_from_sorted_rows(sid, len(whole.surfaces)), "surf_sub": ssub.astype(np.int32),
        "surf_count": sn.astype(np.int64), "surface_stem": whole.surface_stem.astype(np.int32),
        # corpus position of each entity, sub-model after sub-model: merged ties go by corpus order
        "position": position.astype(np.int64),
        # narrow unsigned columns (what a prompt reads per multitoken: the fewer bytes, the fewer pages);
        # an entry's end (first posting + df) fits the same type
        "route_entry": _narrow(np.stack([sub.astype(np.int64), df.astype(np.int64), start.astype(np.int64)], axis=1),
                               int((start + df).max()) if len(start) else 0),
        "all_stats": _narrow(np.stack([all_df, all_total], axis=1)),
    }
    return Tables(arrays=arrays, strings={"stems": list(whole.stems), "surfaces": list(whole.surfaces),
                                          "all_display": display})


def _narrow(a: np.ndarray, top: int = 0) -> np.ndarray:
    """Non-negative counts in uint16 or uint32 when they (and ``top``) fit, else int64."""
    top = max(top, int(a.max()) if a.size else 0)
    for dt in (np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return a.astype(dt)
    return a.astype(np.int64)


def save_split(out_dir, built, router, manifest: dict) -> Path:
    """Write the sub-models and the router under ``out_dir`` atomically (see tables/store.py)."""
    from .tables.store import _check_target, _os_error, _remove_unnamed, model_lock, save_tables, switch_in

    out = Path(out_dir)
    _check_target(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _os_error(e, out, "create the model directory") from None
    with model_lock(out):
        _check_target(out)
        tmp = out / f".tablelm-tmp-{uuid.uuid4().hex}"
        try:
            tmp.mkdir()
            # written without one fsync per file (hundreds of files), then synced at once before the switch
            for name, tables, sub_manifest in built:
                save_tables(tmp / name, tables, sub_manifest, fsync=False)
            save_tables(tmp / "router", router, {"kind": "router", "build_params": manifest["build_params"],
                                                 "analyzer": manifest["analyzer"], "stats": {}}, fsync=False)
            _link_duplicates(tmp)
            os.sync()
            folder = "split-" + hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]
            manifest = dict(manifest, folder=folder)
            switch_in(out, tmp, folder, manifest)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _os_error(e, out, "write the model to") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _remove_unnamed(out, folder)  # the previous model (split or not) and leftovers of killed builds
    return out


def _link_duplicates(root: Path) -> None:
    """Hard-link the table files that are byte for byte the same in several sub-models (the
    collection's dictionary: stems, multitokens, sorted n-grams...), found by the checksums of their
    manifests; one copy on disk and in the page cache. Nothing writes a table file in place."""
    first: dict[tuple, Path] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        manifest = json.loads((folder / "manifest.json").read_bytes())
        tables = folder / manifest["folder"]
        for meta in manifest["tables"].values():
            key = (meta["sha256"], meta["bytes"])
            path = tables / meta["file"]
            if key not in first:
                first[key] = path
                continue
            tmp = path.with_name(path.name + ".link")
            try:
                os.link(first[key], tmp)
                os.replace(tmp, path)
            except OSError:  # a file system without hard links: keep the copy
                tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- loading
def is_split(model_dir) -> bool:
    try:
        return json.loads((Path(model_dir) / "manifest.json").read_bytes()).get("kind") == SPLIT_KIND
    except (OSError, ValueError, AttributeError):
        return False


def read_split_manifest(model_dir) -> dict:
    path = Path(model_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path} cannot be read ({e}); rebuild the model with tablelm build --split-by.") from None
    subs = manifest.get("submodels")
    folder = manifest.get("folder")
    if (not isinstance(subs, list) or not subs or not isinstance(folder, str) or not folder.startswith("split-")
            or "/" in folder or not all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in subs)):
        raise ModelError(f"{path}: the sub-model list or folder is missing or damaged; rebuild the model with "
                         "tablelm build --split-by.")
    return manifest


def load_split(model_dir) -> SplitModel:
    """Load a split model: the manifest and the router's tables (memory-mapped); sub-models load on first use."""
    from .tables.store import load_tables

    for _ in range(5):
        manifest = read_split_manifest(model_dir)
        try:
            router, _, _ = load_tables(Path(model_dir) / manifest["folder"] / "router")
        except ModelError:
            if read_split_manifest(model_dir)["folder"] != manifest["folder"]:
                continue  # a writer switched the manifest meanwhile: read the new one
            raise
        return SplitModel(Path(model_dir), manifest, router)
    raise ModelError(f"{model_dir} kept changing while it was read (another build?); try again.")


# --------------------------------------------------------------------------- scopes
def route_columns(a: dict, idx=None):
    """(sub-model, document frequency) of the router's entries ``idx`` (all: None), int64; from
    ``route_entry``, or the separate columns of a split model built before it."""
    if "route_entry" in a:
        e = a["route_entry"] if idx is None else a["route_entry"][idx]
        return e[:, 0], e[:, 1]
    sub, df = (a["route_sub"], a["route_df"]) if idx is None else (a["route_sub"][idx], a["route_df"][idx])
    return sub.astype(np.int64), df.astype(np.int64)


class Scope:
    """The collection statistics of a set of sub-models (all, or those an access key may read).

    The full scope maps the sums the split build wrote (``all_stats``: df and count per
    multitoken, and ``all_display``, in the router's tables): loading makes no pass over the dictionary, as for
    an unsplit model. A restricted scope (an access key's) sums its sub-models' rows of the
    router's table once, when first asked (and so does a split model built before those tables).
    """

    def __init__(self, split: SplitModel, subs: tuple[int, ...]):
        self.subs = subs
        meta = [split.manifest["submodels"][s] for s in subs]
        self.n_docs = int(sum(m["entities"] for m in meta))
        self.len_sum = np.asarray([sum(m["len_sum"][f] for m in meta) for f in range(5)], dtype=np.float64)
        self.n_words = int(sum(m["words"] for m in meta))
        r = split.router
        a = split.router_arrays
        #: whether this scope is the whole collection with its precomputed sums (nothing is absent)
        self.full = len(subs) == len(split.names) and "all_stats" in a and "all_display" in r.strings
        if self.full:  # columns of the mapped (multitoken, 2) table, as int64 for the rows read
            from .tables.schema import RowSum

            stats = a["all_stats"]
            self.df: Any = RowSum(stats[:, 0], lambda rows: rows.astype(np.int64))
            self.mt_total: Any = RowSum(stats[:, 1], lambda rows: rows.astype(np.int64))
            self.display = r.strings["all_display"]
            return
        n_mt = len(a["mt_words"])
        rows = np.repeat(np.arange(n_mt), np.diff(a["route_indptr"]))
        r_sub, r_df = route_columns(a)
        keep = np.isin(r_sub, np.asarray(subs))
        self.df = np.bincount(rows[keep], weights=r_df[keep], minlength=n_mt).astype(np.int64)
        self.mt_total = np.bincount(rows[keep], weights=a["route_total"][keep], minlength=n_mt).astype(np.int64)
        n_s = len(r.strings["surfaces"])
        srows = np.repeat(np.arange(n_s), np.diff(a["surf_indptr"]))
        skeep = np.isin(a["surf_sub"], np.asarray(subs))
        s_count = np.bincount(srows[skeep], weights=a["surf_count"][skeep], minlength=n_s)
        from .tables.counts import display_words

        self.display = display_words(r.strings["stems"], a["surface_stem"], s_count.astype(np.int64),
                                     r.strings["surfaces"])

    def avg_len(self, fw) -> float:
        return float(self.len_sum @ np.asarray(fw, dtype=np.float64)) / max(self.n_docs, 1)

    def n_present(self) -> int:
        """How many multitokens the scope's entities hold (one pass over the counts: for ``info``)."""
        table = self.mt_total._table if self.full else self.mt_total
        return int(np.count_nonzero(np.asarray(table)))


class ScopeTables:
    """The tables a prompt is planned with: the collection's dictionary, seen through a scope.

    A multitoken no sub-model of the scope has is not in this dictionary (a restricted key
    cannot learn that a word occurs elsewhere); its counts (``mt_total``, ``df``) are the scope's.
    The full scope reads the router's memory-mapped tables as a plain model reads its own (stem
    ids by binary search, row lengths for the rows read): no table of the dictionary's size is
    built in memory.
    """

    def __init__(self, split: SplitModel, scope: Scope):
        from .tables.schema import RowSum, StemIds

        r = split.router
        a = split.router_arrays
        self.scope = scope
        self.mt_words = a["mt_words"]
        #: the single words come first among the collection's multitokens (a word's id is its stem id)
        self.n_stems = len(r.strings["stems"])
        self.mt_total = scope.mt_total
        self.n_docs = scope.n_docs
        self.n_words = scope.n_words
        self._display = scope.display
        self._display_cache: dict[int, str] = {}
        if scope.full:
            self.mt_len = RowSum(self.mt_words, lambda rows: (rows >= 0).sum(axis=-1))
            self.sng_hash, self.sng_mt = a["sng_hash"], a["sng_mt"]
            self.stem_ids: StemIds | dict[str, int] = StemIds(r.strings["stems"])
            return
        self.mt_len = (self.mt_words >= 0).sum(axis=1)
        present = scope.mt_total > 0
        sng_mt = a["sng_mt"]
        ok = present[sng_mt]
        self.sng_hash = a["sng_hash"][ok]
        self.sng_mt = sng_mt[ok]
        stems = r.strings["stems"]
        self.stem_ids = {s: i for i, s in enumerate(stems) if present[i]}  # a single word's mt id is its stem id

    def display_stem(self, stem_id: int) -> str:
        return self._display[stem_id]

    def display(self, mt: int) -> str:
        text = self._display_cache.get(mt)
        if text is None:
            if len(self._display_cache) >= 100_000:  # bounded: a server shows ever new multitokens
                self._display_cache.clear()
            text = self._display_cache[mt] = " ".join(self._display[int(w)] for w in self.mt_words[mt] if w >= 0)
        return text

    def df(self, mts) -> np.ndarray:
        return self.scope.df[np.asarray(mts, dtype=np.int64)]

    def lookup_multitoken(self, stem_ids):
        from .tables.schema import TableSet

        return TableSet.lookup_multitoken(self, stem_ids)  # type: ignore[arg-type]


class _ScopedTables:
    """A sub-model's own tables, with the scope's document frequencies."""

    def __init__(self, base, scope: Scope):
        self._base, self._scope = base, scope

    def df(self, mts) -> np.ndarray:
        return self._scope.df[np.asarray(mts, dtype=np.int64)]

    def __getattr__(self, name):
        return getattr(self._base, name)


# --------------------------------------------------------------------------- the split model
class SplitModel:
    """A model split into sub-models, asked through the router; the same calls as :class:`Model`.

    ``submodels`` (names) pins the sub-models to ask; ``route`` is ``"auto"`` (the router picks
    from the counts, tablelm/router.py) or ``"all"`` (every sub-model of the scope: the unsplit
    model's answer). :meth:`scoped` gives the same object restricted to some sub-models (an
    access key's): it never reads the others.
    """

    #: True: search scores the asked sub-models in one kernel pass (:meth:`_fused`); False: one pass per
    #: sub-model; None (default): one pass with the numpy kernels, per sub-model with the compiled ones (there
    #: a pass costs ~10 µs, less than gathering the postings into one batch; docs/submodels.md)
    one_pass: bool | None = None

    def __init__(self, path: Path, manifest: dict, router, subs: tuple[int, ...] | None = None, parent=None):
        self.path = path
        self.manifest = manifest
        self.router = router
        #: the router's arrays as plain ndarray views of their memory maps (no np.memmap indexing overhead)
        self.router_arrays = {k: np.asarray(v) for k, v in router.arrays.items()}
        self.names = [s["name"] for s in manifest["submodels"]]
        self.scope_subs = tuple(range(len(self.names))) if subs is None else tuple(subs)
        self.build_params = manifest["build_params"]
        from .model import _analyzer_of

        self.analyzer = _analyzer_of(manifest)
        self.defaults = P.resolve(manifest.get("profile", {}).get("params", {}), stage=("query", "render"))
        self._root = parent or self
        if parent is None:
            self._models: dict[int, object] = {}
            self._lock = threading.Lock()
            self._scopes: dict[tuple, tuple] = {}
            self._offsets_list: list[int] | None = None
            self._every: list | None = None
            self._inv: np.ndarray | None = None
        self._scope_state: tuple | None = None
        self._id_index: dict[str, tuple[int, int]] | None = None

    # ------------------------------------------------------------ scope
    def scoped(self, names) -> SplitModel:
        """This model restricted to the sub-models ``names`` (``"*"``: all of this scope's)."""
        subs = self.scope_subs if names == "*" else tuple(sorted(self._resolve(names)))
        return SplitModel(self.path, self.manifest, self.router, subs, parent=self._root)

    def _resolve(self, names) -> list[int]:
        if isinstance(names, str):
            names = [n for n in names.split(",") if n.strip()]
        out = []
        allowed = [self.names[s] for s in self.scope_subs]
        for n in names:
            n = n.strip()
            if n not in allowed:
                raise TablelmError(f"No sub-model {n!r} in this model; it has: {', '.join(allowed)}.")
            out.append(self.names.index(n))
        if not out:
            raise TablelmError(f"Name at least one sub-model; this model has: {', '.join(allowed)}.")
        return out

    def _state(self):
        """(Scope, ScopeTables, planner) of this scope, computed once per scope and shared."""
        if self._scope_state is None:
            root = self._root
            with root._lock:
                got = root._scopes.get(self.scope_subs)
                if got is None:
                    from .query.plan import Planner

                    scope = Scope(root, self.scope_subs)
                    tables = ScopeTables(root, scope)
                    facade = _Facade(self, tables)
                    got = root._scopes[self.scope_subs] = (scope, tables, Planner(facade), facade)
            self._scope_state = got
        return self._scope_state

    @property
    def tables(self) -> ScopeTables:
        return self._state()[1]

    @property
    def n_docs(self) -> int:
        return self._state()[0].n_docs

    @property
    def submodels(self) -> list[dict]:
        """The sub-models of this scope: name, label, entities."""
        return [{k: self.manifest["submodels"][s][k] for k in ("name", "label", "entities")}
                for s in self.scope_subs]

    # ------------------------------------------------------------ sub-models
    def submodel(self, name: str):
        """The sub-model ``name`` as a plain :class:`~tablelm.model.Model` (its own statistics)."""
        (s,) = self._resolve([name])
        return self._load(s)

    def _load(self, s: int):
        root = self._root
        got = root._models.get(s)
        if got is None:
            from .model import load

            with root._lock:
                got = root._models.get(s)
                if got is None:
                    got = load(self.path / self.manifest["folder"] / self.names[s])
                    want = self.manifest["submodels"][s].get("fingerprint")
                    if want is not None and got.manifest.get("fingerprint") != want:
                        # the router's counts and posting offsets describe the sub-model as built
                        raise ModelError(f"{self.path}: sub-model {self.names[s]!r} was changed after the split "
                                         "was built (its tables are not the ones the router counts); rebuild "
                                         "the model with tablelm build --split-by.")
                    root._models[s] = got
        return got

    def _view(self, s: int):
        """Sub-model ``s`` scoring with this scope's statistics (cached per scope)."""
        scope = self._state()[0]
        key = ("view", self.scope_subs, s)
        root = self._root
        got = root._scopes.get(key)
        if got is None:
            base = self._load(s)
            got = copy.copy(base)
            got.tables = _ScopedTables(base.tables, scope)
            got.collection = scope
            got._weights = {}
            root._scopes[key] = got
        return got

    # ------------------------------------------------------------ parameters
    def params(self, **overrides) -> dict:
        return P.resolve(overrides, stage=("query", "render"), base=self.defaults)

    def _split_args(self, kwargs: dict):
        route = {k: kwargs.pop(k) for k in ROUTE_ARGS if k in kwargs}
        pinned = route.get("submodels")
        pinned = None if pinned in (None, "", (), []) else self._resolve(pinned)
        mode = route.get("route") or "auto"
        if mode not in ("auto", "all"):
            raise TablelmError(f"route must be 'auto' or 'all'. Got {mode!r}.")
        from .router import DEFAULT_COVERAGE, DEFAULT_MAX, DEFAULT_METHOD

        rmax, share = route.get("route_max", DEFAULT_MAX), route.get("route_coverage", DEFAULT_COVERAGE)
        try:
            rmax = None if rmax in (None, "", 0, "0") else int(rmax)
            share = float(share)
        except (TypeError, ValueError):
            raise TablelmError(f"route_max must be an int and route_coverage a number. Got {rmax!r}, {share!r}.") \
                from None
        if (rmax is not None and rmax < 1) or not 0.0 < share <= 1.0:
            raise TablelmError(f"route_max must be >= 1 (0: no cap) and route_coverage in (0, 1]. "
                               f"Got {rmax}, {share}.")
        method = route.get("route_method") or DEFAULT_METHOD
        if method not in ("pairs", "share"):
            raise TablelmError(f"route_method must be 'pairs' or 'share'. Got {method!r}.")
        return pinned, mode, rmax, (share, method)

    def _params_for(self, pinned, params: dict) -> dict:
        """Defaults, then the collection profile, then (one pinned sub-model) its own profile, then the call's."""
        base = self.defaults
        if pinned is not None and len(pinned) == 1:
            prof = self._load(pinned[0]).manifest.get("profile", {}).get("params", {})
            if prof:
                base = P.resolve(prof, stage=("query", "render"), base=self.defaults)
        return P.resolve(params, stage=("query", "render"), base=base)

    # ------------------------------------------------------------ answering
    def _route(self, plan, pinned, mode, rmax, ratio, explain: bool = True):
        """``ratio``: (route_coverage, route_method) from :meth:`_split_args`."""
        from .router import choose

        scope, tables, _, _ = self._state()
        share, method = ratio
        return choose(self, scope, tables, plan, pinned, mode, rmax, share, explain, method)

    def _ranked(self, prompt, plan, p, chosen, k):
        """Rank in each chosen sub-model; merge by (score, corpus position). Returns the merged hits
        [(score, position, sub, local index)] and the per-sub-model ranking state."""
        pos = self.router_arrays["position"]
        offsets = self._offsets()
        hits, state = [], {}
        from .query.rank import top_k

        for s in chosen:
            view = self._view(s)
            plan_s = copy.copy(plan)
            plan_s.terms = list(plan.terms)
            _, scorer, scores, exclude, factors = view._rank(prompt, p, plan_s)
            idx = top_k(scores, k, exclude)
            state[s] = (view, plan_s, scorer, scores, factors)
            gpos = pos[offsets[s] + idx]
            hits += list(zip((-scores[idx]).tolist(), gpos.tolist(), [s] * len(idx), idx.tolist()))
        hits.sort()
        return [(-h[0], h[1], h[2], h[3]) for h in hits[:k]], state

    def search(self, query: str, k: int = 100, **params) -> list[tuple[str, float]]:
        return self.search_many({0: query}, k, **params)[0]

    @gc_paused()  # as Model.search_many: many small objects, no cycles
    def search_many(self, queries: dict, k: int = 100, **params) -> dict:
        """:meth:`Model.search_many` over the routed sub-models: the prompts are planned and routed
        in one batch; each sub-model scores the plain plans routed to it in one compiled pass
        (kernel.search_batch, the unsplit model's path: same floats), the others one by one."""
        from .model import Model
        from .query import kernel
        from .query.agents import agent_bit
        from .query.rank import gather, idf
        from .router import choose_many
        from .tables.schema import decode_ids

        k = P.check_k(k, limit=None)
        pinned, mode, rmax, ratio = self._split_args(params)
        p = self._params_for(pinned, params)
        scope, tables, planner, facade = self._state()
        texts = list(queries.values())
        plans = planner.plan_many(texts, p)
        pos = self.router_arrays["position"]
        offsets = self._offsets()
        boost = p["agent_boost"]
        # a split model built before the router's entries reads each sub-model's own row pointers
        direct = self.router_arrays.get("route_indptr") if "route_entry" in self.router_arrays else None
        hits: list[list] = [[] for _ in plans]  # per prompt: (scores, global entity indices) per asked sub-model
        batches: dict[int, list] = {}
        fused: list = []
        routed = choose_many(self, scope, tables, plans, pinned, mode, rmax, ratio[0], ratio[1])
        one_pass = self.one_pass if self.one_pass is not None else kernel.compiled() is None
        for i, (plan, chosen) in enumerate(zip(plans, routed)):
            if Model._plain(plan, p):
                prepared = (*kernel.prepare(plan.active(), lambda mts: idf(facade, mts)),
                            agent_bit(plan.agent) if boost != 1.0 else 0)
                entry = None
                if direct is not None:  # the router's entries of its multitokens, for every sub-model
                    term, idx = gather(direct, prepared[0])
                    entry = (term, self.router_arrays["route_entry"][idx])
                if entry is not None and one_pass:  # one pass over the asked sub-models' postings together
                    fused.append((i, prepared, entry, chosen))
                else:
                    for s in chosen:
                        batches.setdefault(s, []).append((i, prepared, entry))
            else:
                got = self._ranked(texts[i], plan, p, chosen, k)[0]
                hits[i].append((np.asarray([h[0] for h in got], dtype=np.float64),
                                np.asarray([offsets[h[2]] + h[3] for h in got], dtype=np.int64)))
        if fused:
            for (i, _, _, _), got in zip(fused, self._fused(p, fused, k)):
                hits[i].append(got)
        for s, batch in batches.items():
            view = self._view(s)
            post, queries_s, bits = view.postings_for(p), [q for _, q, _ in batch], None
            if direct is not None:
                post, queries_s, bits = self._direct(post, s, queries_s, [e for _, _, e in batch])
            got = kernel.search_batch(post, queries_s, k, view.tables.entity_agents, boost, bits)
            for (i, _, _), (idx, sc) in zip(batch, got):
                hits[i].append((sc, offsets[s] + np.asarray(idx, dtype=np.int64)))
        out = {}
        if sum(len(g) for h in hits for _, g in h) * 4 >= len(pos):  # many results: decode every id once
            every = self._every_id()
            ids_at = lambda at: [every[i] for i in at]
        else:  # entity ids by global index (sub-model after sub-model)
            ids_at = lambda at: decode_ids(self.router.strings["ids"], at)
        for qid, h in zip(queries, hits):
            sc = np.concatenate([x for x, _ in h]) if h else np.zeros(0)
            g = np.concatenate([x for _, x in h]) if h else np.zeros(0, dtype=np.int64)
            top = np.lexsort((pos[g], -sc))[:k]  # by score, then corpus position: the unsplit order
            out[qid] = list(zip(ids_at(g[top].tolist()), sc[top].tolist()))
        return out

    def _fused(self, p: dict, items: list, k: int) -> list:
        """Plain prompts scored in **one** compiled pass over the postings of their asked sub-models.

        ``items``: (prompt, prepared query, its router entries (term, entry), asked sub-models).
        The postings of each term in every asked sub-model are copied into one row of a batch of
        its own, their entities renumbered to corpus positions (the unsplit model's entity order),
        with the length norms and agent bits of the entities touched scattered into arrays of the
        collection's size. The kernel then scores, applies the agent factor and keeps the top ``k``
        as for the unsplit model, ties by corpus position: the merged ranking without a pass, a
        top-k and a merge per asked sub-model. An entity's contributions add in term order as in
        the unsplit model: same floats. Returns per item (scores, global entity indices)."""
        from .query import kernel

        pos = self.router_arrays["position"]
        offsets = self._offsets()
        n_all = len(pos)
        lens = np.fromiter((len(q[0]) for _, q, _, _ in items), dtype=np.int64, count=len(items))
        q_ptr = np.zeros(len(items) + 1, dtype=np.int64)
        np.cumsum(lens, out=q_ptr[1:])
        n_terms = int(q_ptr[-1])
        # the router entries asked: (row = term of the batch, sub-model, df, first posting), by row then sub-model
        rows, ents = [], []
        for (_, _, (term, e), chosen), at in zip(items, q_ptr[:-1].tolist()):
            keep = np.isin(e[:, 0], np.asarray(chosen, dtype=np.int64)) if len(e) else np.zeros(0, dtype=bool)
            rows.append(term[keep] + at)
            ents.append(np.asarray(e[keep], dtype=np.int64))
        row = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        ent = np.concatenate(ents) if ents else np.zeros((0, 3), np.int64)
        df = ent[:, 1]
        indptr = np.zeros(n_terms + 1, dtype=np.int64)
        np.cumsum(np.bincount(row, weights=df, minlength=n_terms).astype(np.int64), out=indptr[1:])
        out_start = np.cumsum(df) - df  # entries in row order: each entry's first slot in the batch
        n_post = int(df.sum())
        # every asked sub-model is loaded (and checked against the router), whether it has the terms or not
        views = {s: self._view(s) for s in sorted({s for _, _, _, chosen in items for s in chosen})}
        posts = {s: views[s].postings_for(p) for s in np.unique(ent[:, 0]).tolist()}
        tf_type = np.result_type(*[x.tf.dtype for x in posts.values()]) if posts else np.uint8
        width = next(iter(posts.values())).tf.shape[1] if posts else 5
        docs = np.empty(n_post, dtype=np.int32)
        tf = np.empty((n_post, width), dtype=tf_type)
        norm = np.zeros(n_all)
        agents = np.zeros(n_all, dtype=np.uint8)
        for s, post in posts.items():
            mine = ent[:, 0] == s
            d_s = df[mine]
            step = np.repeat(np.cumsum(d_s) - d_s, d_s)
            local = np.arange(int(d_s.sum())) - step
            src = local + np.repeat(ent[mine, 2], d_s)
            dst = local + np.repeat(out_start[mine], d_s)
            ldocs = post.docs_at(src)
            gdocs = pos[offsets[s] + ldocs]
            docs[dst] = gdocs
            tf[dst] = post.tf[src]
            norm[gdocs] = post.norm[ldocs]
            if p["agent_boost"] != 1.0:
                agents[gdocs] = np.asarray(views[s].tables.entity_agents)[ldocs]
        first = next(iter(posts.values())) if posts else None
        batch = kernel.Postings.__new__(kernel.Postings)  # a batch of its own: no cache shared with a sub-model
        batch.indptr, batch.docs, batch.tf, batch.norm, batch.n_docs = indptr, docs, tf, norm, n_all
        batch.docs_table = docs
        batch.fw = first.fw if first is not None else np.ones(width)
        batch.kp1 = first.kp1 if first is not None else 1.0
        batch.imp = np.zeros(n_post, dtype=np.float32)  # the compiled kernels' impacts, filled for these rows
        batch.ready = np.zeros(n_terms, dtype=np.bool_)
        query = (q_ptr, np.arange(n_terms, dtype=np.int64), *(
            np.concatenate([q[j] for _, q, _, _ in items]).astype(dt, copy=False) if n_terms else np.zeros(0, dt)
            for j, dt in ((1, np.float64), (2, np.int64))))
        bits = [q[3] for _, q, _, _ in items]
        got = kernel.search_batch(batch, query, k, agents, p["agent_boost"], bits)
        inv = self._inverse_position()
        return [(np.asarray(sc, dtype=np.float64), inv[np.asarray(idx, dtype=np.int64)]) for idx, sc in got]

    def _inverse_position(self) -> np.ndarray:
        """The global index (sub-model after sub-model) of each corpus position."""
        root = self._root
        if root._inv is None:
            pos = self.router_arrays["position"]
            inv = np.empty(len(pos), dtype=np.int64)
            inv[pos] = np.arange(len(pos))
            root._inv = inv
        return root._inv

    def _direct(self, post, s: int, queries: list, entries: list):
        """The postings and queries of sub-model ``s`` with its row pointers read from the router.

        The router's entry of each (multitoken, sub-model) holds the first posting and the count
        there (``entries``: per query, the (term, entry) rows of its multitokens, gathered once for
        every sub-model), so a batch gets a row-pointer table of its own: term ``j`` of the batch
        becomes row ``2j`` of ``[start_0, end_0, start_1, end_1, ...]`` (the kernels read
        ``indptr[m]`` and ``indptr[m + 1]`` only). The sub-model's ``post_indptr`` (one entry per
        multitoken of the collection) is never touched. Same postings, same floats."""
        lens = np.fromiter((len(q[0]) for q in queries), dtype=np.int64, count=len(queries))
        ptr = np.zeros(len(queries) + 1, dtype=np.int64)
        np.cumsum(lens, out=ptr[1:])
        n = int(ptr[-1])
        term = np.concatenate([t + at for (t, _), at in zip(entries, ptr[:-1].tolist())]) if n else ptr[:0]
        e = np.concatenate([x for _, x in entries]) if n else np.zeros((0, 3), dtype=np.int64)
        mine = e[:, 0] == s
        rows = 2 * term[mine]
        bounds = np.zeros(2 * n + 1, dtype=post.indptr.dtype)
        bounds[rows] = e[mine, 2]
        bounds[rows + 1] = e[mine, 2] + e[mine, 1]
        cat = lambda i, dt: np.concatenate([q[i] for q in queries]).astype(dt, copy=False) if n else np.zeros(0, dt)
        batch = (ptr, 2 * np.arange(n, dtype=np.int64), cat(1, np.float64), cat(2, np.int64))
        return post.with_bounds(bounds, cat(0, np.int64)), batch, [q[3] for q in queries]

    def ask(self, prompt: str, k: int = 10, **params):
        """:meth:`Model.ask` over the routed sub-models; ``answer.routing`` says which and why."""
        from .answer.summary import answer_summary
        from .answer.types import Answer
        from .query.sections import answer_shares, build_sections

        if not isinstance(prompt, str):
            raise TablelmError(f"The prompt must be a string. Got {type(prompt).__name__}.")
        k = P.check_k(k)
        t0 = time.perf_counter()
        pinned, mode, rmax, ratio = self._split_args(params)
        p = self._params_for(pinned, params)
        plan = self._state()[2].plan(prompt, p)
        chosen, routing = self._route(plan, pinned, mode, rmax, ratio)
        local = local_params(p)
        if local and len(chosen) > 1:
            routing["per_submodel"] = local  # parameters each sub-model applies with its own tables
        hits, state = self._ranked(prompt, plan, p, chosen, k)
        t1 = time.perf_counter()
        cards = []
        by_sub: dict[int, list] = {}
        for r, (_, _, s, d) in enumerate(hits):
            by_sub.setdefault(s, []).append((r, d))
        made = {}
        for s, items in by_sub.items():
            view, plan_s, scorer, scores, factors = state[s]
            active = plan_s.active()
            idx = np.asarray([d for _, d in items], dtype=np.int64)
            contrib = scorer.explain(active, idx) if p["ranker"] == "tablelm" else None
            for j, (r, d) in enumerate(items):
                card = view._card(r + 1, d, float(scores[d]), active, None if contrib is None else contrib[j],
                                  factors, scorer, p)
                card.submodel = self.names[s]
                made[r] = card
        cards = [made[r] for r in range(len(hits))]
        first = state[chosen[0]][1] if chosen else plan
        summary = answer_summary(self._state()[3], first, cards, p)
        t2 = time.perf_counter()
        sections = merge_sections([build_sections(state[s][0], state[s][1], p, answer_shares(state[s][1], cards))
                                   for s in chosen], p)
        t3 = time.perf_counter()
        return Answer(prompt=prompt, plan=first.to_dict(), cards=cards, sections=sections, params=dict(p, k=k),
                      summary=summary, routing=routing,
                      timings_ms={"rank": round((t1 - t0) * 1e3, 3), "cards": round((t2 - t1) * 1e3, 3),
                                  "sections": round((t3 - t2) * 1e3, 3), "total": round((t3 - t0) * 1e3, 3)},
                      model={"fingerprint": self.manifest["fingerprint"], "path": str(self.path)})

    # ------------------------------------------------------------ entities and facts
    @property
    def ids(self) -> list[str]:
        """The ids of this scope's entities, sub-model after sub-model."""
        offsets = self._offsets()
        return [json.loads(x) for s in self.scope_subs
                for x in self.router.strings["ids"][offsets[s]:offsets[s + 1]]]

    def _every_id(self) -> list:
        """Every entity id of the collection by global index, decoded once (shared by the scopes)."""
        root = self._root
        if root._every is None:
            from .tables.schema import decode_ids

            root._every = decode_ids(self.router.strings["ids"])
        return root._every

    def _offsets(self) -> list[int]:
        root = self._root
        if root._offsets_list is None:
            root._offsets_list = np.cumsum([0] + [m["entities"] for m in self.manifest["submodels"]]).tolist()
        return root._offsets_list

    def _owner(self, entity_id: str):
        """(sub-model, index in it) of an entity of this scope, from the router's id list (no
        sub-model is loaded to find it); None for an id this scope does not have."""
        root = self._root
        if root._id_index is None:
            offsets = self._offsets()
            index = {}
            for s in range(len(self.names)):
                for i, x in enumerate(self.router.strings["ids"][offsets[s]:offsets[s + 1]]):
                    index[json.loads(x)] = (s, i)
            root._id_index = index
        got = root._id_index.get(entity_id)
        return got if got is not None and got[0] in self.scope_subs else None

    def entity(self, entity_id: str):
        got = self._owner(entity_id)
        if got is None:
            raise KeyError(f"no entity with id {entity_id!r} in this model")
        return self._load(got[0]).entity_at(got[1])

    def info(self) -> dict:
        subs = self.submodels
        return {"path": str(self.path), "format_version": self._load(self.scope_subs[0]).manifest["format_version"],
                "tablelm_version": self.manifest["tablelm_version"], "fingerprint": self.manifest["fingerprint"],
                "corpus": {k: v for k, v in self.manifest["corpus"].items() if k != "entities"}
                | {"entities": self.n_docs},
                "build_params": self.build_params, "split": self.manifest["split"], "submodels": subs,
                "stats": {"entities": self.n_docs, "submodels": len(subs),
                          "multitokens": self._state()[0].n_present(), "words": self._state()[0].n_words},
                "profile": self.manifest.get("profile", {}), "tables": {}}

    def sample_counts(self) -> np.ndarray:
        """Per-field multitoken counts summed over this scope's sub-models (for sample prompts)."""
        total = np.zeros((len(self.tables.mt_words), 5), dtype=np.int64)
        for s in self.scope_subs:
            total += np.asarray(self._load(s).tables.mt_counts, dtype=np.int64)
        return total

    def set_profile(self, profile: dict) -> None:
        """The collection's default query parameters (used when more than one sub-model is asked)."""
        from .tables.store import _replace_manifest, model_lock

        validated = P.resolve(profile.get("params", {}), stage=("query", "render"), base={})
        profile = dict(profile, params=validated)
        with model_lock(self.path):
            manifest = dict(read_split_manifest(self.path), profile=profile)
            _replace_manifest(self.path, manifest)
        self.manifest = manifest
        self.defaults = P.resolve(validated, stage=("query", "render"))

    # ------------------------------------------------------------ changes
    def entities_in_order(self) -> list:
        """Every entity of the collection in corpus order (the order a build read them), from the
        sub-models' entity stores and the router's positions; no source is read."""
        offsets, pos = self._offsets(), self.router_arrays["position"]
        out: list = [None] * len(pos)
        for s in range(len(self.names)):
            sub = self._load(s)
            for i in range(offsets[s + 1] - offsets[s]):
                out[int(pos[offsets[s] + i])] = sub.entity_at(i)
        return out

    def add(self, sources=None, *, entities=None, replace: bool = False, field_map=None, encoding: str = "utf-8",
            on_error: str = "skip", reader_options: dict | None = None, report: dict | None = None,
            out_dir=None) -> SplitModel:
        """:meth:`Model.add` on a split model: each new entity goes to the sub-model of its value of
        the split field; a value the model has no sub-model for gets a new one (as a fresh build
        assigns it: while there are fewer values than ``max_submodels``, else it joins ``_other``).

        The result is, table for table, the split build of this model's entities (corpus order)
        followed by the new ones; the collection's statistics (df, N, field lengths) and the
        router are counted again with it. Cost: a split build of the whole collection from the
        stored entities (no source is re-read), not an incremental merge as on one model."""
        from .corpus import ReadStats, read_corpus

        new = list(entities or [])
        stats = ReadStats()
        if sources:
            new += read_corpus(sources, field_map=field_map, encoding=encoding, on_error=on_error, stats=stats,
                               **(reader_options or {}))
        model, done = self._change(add=new, replace=replace, on_error=on_error, out_dir=out_dir)
        if report is not None:
            report.update(done, errors=list(stats.errors), skipped=stats.skipped)
        return model

    def delete(self, ids, *, report: dict | None = None, out_dir=None) -> SplitModel:
        """Delete the entities with these ids (found in whichever sub-model holds them) and count
        the split again (see :meth:`add`); a sub-model left without entities disappears."""
        model, done = self._change(delete=list(ids), out_dir=out_dir)
        if report is not None:
            report.update(done)
        return model

    def _change(self, *, add=(), delete=(), replace: bool = False, on_error: str = "skip", out_dir=None):
        from .corpus import content_key
        from .model import _analyzer_of
        from .update import skip_existing

        t0 = time.perf_counter()
        if on_error not in ("fail", "skip"):
            raise TablelmError(f"on_error must be 'fail' or 'skip'. Got {on_error!r}.")
        if len(self.scope_subs) != len(self.names):
            raise TablelmError("add and delete change the whole split model: load it without an access scope.")
        if out_dir is None and self.path is None:
            raise TablelmError("A split model is written to a directory: pass out_dir.")
        ents = self.entities_in_order()
        at = {e.id: i for i, e in enumerate(ents)}
        missing = [i for i in delete if i not in at]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5]) + (f" and {len(missing) - 5} more"
                                                              if len(missing) > 5 else "")
            raise TablelmError(f"no entity with id {shown} in {self.path}; 'tablelm show -m MODEL ID' fetches an "
                               "id, 'tablelm search' finds ids.")
        gone = {at[i] for i in delete}
        if replace:
            gone |= {at[e.id] for e in add if e.id in at}
        report: dict = {}
        key = lambda e: content_key(e) or None
        contents = {k for i, e in enumerate(ents) if i not in gone and (k := key(e)) is not None}
        kept_new = []
        for e in add:
            if e.id in at and at[e.id] not in gone:
                skip_existing(e, on_error, report)
                continue
            k = key(e)
            if k is not None and k in contents:
                report.setdefault("duplicates", []).append(e.id)
                continue
            if k is not None:
                contents.add(k)
            kept_new.append(e)
        result = [e for i, e in enumerate(ents) if i not in gone] + kept_new
        if not gone and not kept_new:  # nothing to change (every record skipped): nothing is written
            report.update(deleted=0, added=0, recounted=0, seconds=round(time.perf_counter() - t0, 3))
            return self, report
        if not result:
            raise TablelmError("this change would leave the model without entities; build a new model instead.")
        before = set(self.names)
        split = self.manifest["split"]
        corpus = {k: v for k, v in self.manifest.get("corpus", {}).items() if k != "entities"}
        profiles = {}
        for s, name in enumerate(self.names):  # a sub-model keeps its own profile (tablelm tune -s)
            prof = self._load(s).manifest.get("profile") or {}
            if prof:
                profiles[name] = prof
        model = build_split(result, _analyzer_of(self.manifest), self.build_params, corpus,
                            out_dir if out_dir is not None else self.path, split_by=split["by"],
                            split_sep=split.get("sep"), max_submodels=split.get("max_submodels", MAX_SUBMODELS),
                            profile=self.manifest.get("profile") or {}, profiles=profiles)
        report.update(deleted=len(gone), added=len(kept_new), recounted=len(result) - len(kept_new),
                      promoted=0, demoted=0, submodels_added=sorted(set(model.names) - before),
                      submodels_removed=sorted(before - set(model.names)),
                      seconds=round(time.perf_counter() - t0, 3))
        return model, report


def local_params(p: dict) -> list[str]:
    """The parameters set in ``p`` that each sub-model applies from its own tables (pairs, labels,
    links, dense ranks, its own best entities' passages), so that merged scores are no longer exactly
    the unsplit model's."""
    out = [name for name in ("expansion_weight", "prf_weight", "w_context", "w_importance", "passage_words")
           if p[name] > 0]
    return out + (["ranker=reference"] if p["ranker"] == "reference" else [])


class _Facade:
    """What the planner and the summary read of a scope: its dictionary, analyzer and entities."""

    def __init__(self, split: SplitModel, tables: ScopeTables):
        self._split = split
        self.tables = tables
        self.analyzer = split.analyzer
        self.build_params = split.build_params
        self.n_docs = tables.n_docs

    def entity(self, entity_id: str):
        return self._split.entity(entity_id)


def merge_sections(parts: list[dict], params: dict) -> dict:
    """The sections of several sub-models as one: rows of the same label (or follow-up prompt)
    join (counts add, the best score stays), sorted as one section, ``max_rows`` kept."""
    if len(parts) == 1:
        return parts[0]
    out = {}
    limit = params["max_rows"]
    for name in params["sections"]:
        rows: dict[str, dict] = {}
        key = "multitoken" if name == "embeddings" else "label"
        for part in parts:
            for row in part.get(name, []):
                have = rows.get(row[key])
                if have is None:
                    rows[row[key]] = dict(row, via=list(row.get("via", [])))
                    continue
                for c in ("count", "n_ab"):
                    if c in row:
                        have[c] += row[c]
                have["score"] = max(have["score"], row["score"])
                have["via"] = sorted(set(have["via"]) | set(row.get("via", [])))
        out[name] = sorted(rows.values(), key=lambda r: (-r["score"], r[key]))[:limit]
    return out
