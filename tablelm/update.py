"""Add, delete and update entities of a model without a rebuild.

The tables are raw counts, so a change is a signed merge of partial counts
(tables/counts.py): the model's own counts, minus those of the entities that leave or
must be recounted, plus those of the entities that come in or are recounted. After any
sequence of changes the model is the one a full build of the resulting corpus gives,
byte for byte: the model's entities in their order, less the deleted ones, then the
added ones (an update is a delete and an add, so a replaced entity moves to the end).

The one threshold, ``min_multitoken_count``, is what makes this more than a sum. The
dictionary of a full build keeps an n-gram of two or more words when the corpus has it
at least that often (or in a knowledge-graph field). The model keeps, beside its
tables, every occurrence of the n-grams below the threshold (``pend_hash``,
``pend_doc``: stable hash and entity). A change first sums the n-gram counts it brings
and takes away; an n-gram that crosses the threshold upwards (promoted) or downwards
(demoted) changes the postings and pairs of the few entities that hold it (fewer than
``min_multitoken_count`` of them, by definition), and only those are recounted.

Cost: tokenizing the change and the entities it recounts, plus linear array passes over
the tables (ids are renumbered in the order a rebuild gives them) and one copy of the
entity store; no text of the unchanged entities is read.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from .errors import TablelmError
from .tables.build import content_hashes, count_partial, entity_records
from .tables.codecs import Encoded, KeptLines, Spliced, ZBlocks
from .tables.compiled import kernels
from .tables.counts import Partial, RowKeys, Tables, assemble, merge
from .tables.hashing import chain_hash
from .tables.schema import CONTEXTS, TableSet


def mt_hashes(mt_words: np.ndarray, stem_hash: np.ndarray) -> np.ndarray:
    """The stable hash of every multitoken, from its words' stem hashes (as the build chains them)."""
    words = np.asarray(mt_words, dtype=np.int64)
    h = stem_hash[np.maximum(words[:, 0], 0)]
    for j in range(1, words.shape[1]):
        more = words[:, j] >= 0
        if more.any():
            h = h.copy()
            h[more] = chain_hash(h[more], stem_hash[words[more, j]])
    return h


def _once(table) -> np.ndarray:
    """A table's values for one pass: an encoded table decoded without keeping the copy on the model."""
    return table.values() if isinstance(table, Encoded) else np.asarray(table)


def partial_of(t: TableSet) -> Partial:
    """A model's tables as one partial (its own ids are already canonical)."""
    labels = {}
    for name in CONTEXTS:
        c = t.context(name)
        labels[name] = (c.names, np.asarray(c.doc_indptr), np.asarray(c.doc_labels))
    stem_hash = np.asarray(t.stem_hash)
    kernels(len(t.pair_cols))  # numba for a large model's range decodes (loaded once, from 16 M values)
    # postings and pairs stay in the model's (mapped or encoded) tables, read a range at a time by the
    # merge; their row keys are made per range (RowKeys): an add to the 1M model held 1.3 GB of them
    return Partial(
        n_docs=t.n_docs, stems=t.strings("stems"), stem_hash=stem_hash, mt_words=np.asarray(t.mt_words),
        mt_hash=mt_hashes(t.mt_words, stem_hash), mt_counts=np.asarray(t.mt_counts, dtype=np.int64),
        post_mt=RowKeys(t.post_indptr), post_doc=t.post_docs, post_tf=t.post_tf,
        pair_a=RowKeys(t.pair_indptr), pair_b=t.pair_cols, pair_adj=t.pair_adj, pair_ctx=t.pair_ctx,
        pend_hash=_once(t.pend_hash), pend_doc=_once(t.pend_doc), surfaces=t.strings("surfaces"),
        surface_stem=np.asarray(t.surface_stem), surface_count=np.asarray(t.surface_count, dtype=np.int64),
        doc_len=np.asarray(t.doc_len, dtype=np.int64), labels=labels)


def _old_counts(t: TableSet, multi_hash: np.ndarray, multi_mt: np.ndarray, hashes: np.ndarray):
    """Count and knowledge-graph count of each n-gram hash in the model (in the dictionary or pending)."""
    pos = np.minimum(np.searchsorted(multi_hash, hashes), max(len(multi_hash) - 1, 0))
    known = (multi_hash[pos] == hashes) if len(multi_hash) else np.zeros(len(hashes), dtype=bool)
    mt = np.where(known, multi_mt[pos] if len(multi_mt) else 0, -1)
    counts = np.asarray(t.mt_counts, dtype=np.int64)
    n = np.zeros(len(hashes), dtype=np.int64)
    kg = np.zeros(len(hashes), dtype=np.int64)
    n[known] = counts[mt[known]].sum(axis=1)
    kg[known] = counts[mt[known], 1:].sum(axis=1)
    pend = np.asarray(t.pend_hash)
    lo, hi = np.searchsorted(pend, hashes[~known], "left"), np.searchsorted(pend, hashes[~known], "right")
    n[~known] = hi - lo
    return n, kg, known, mt


def _aligned(hashes: np.ndarray, counts) -> tuple[np.ndarray, np.ndarray]:
    """Counts and knowledge-graph counts of ``counts`` (hashes, n, kg) at ``hashes`` (0 where absent)."""
    h, n, kg = counts
    pos = np.minimum(np.searchsorted(h, hashes), max(len(h) - 1, 0))
    hit = (h[pos] == hashes) if len(h) else np.zeros(len(hashes), dtype=bool)
    return np.where(hit, n[pos] if len(n) else 0, 0), np.where(hit, kg[pos] if len(kg) else 0, 0)


def change_tables(model, add: list, delete: list[int], spool: Path | None = None) -> tuple[Tables, dict]:
    """The tables of ``model`` with the entities at ``delete`` removed and ``add`` appended.

    Returns the tables (entity store included) and a report: entities recounted because an
    n-gram crossed ``min_multitoken_count``, promoted and demoted n-grams. With ``spool``, the
    merged tables are written there a range at a time and memory-mapped back, as the
    bounded-memory build does (the folder must outlive the returned tables).
    """
    t, analyzer, bp = model.tables, model.analyzer, model.build_params
    min_count = int(bp["min_multitoken_count"])
    n_old = t.n_docs
    gone = np.zeros(n_old, dtype=bool)
    gone[np.asarray(delete, dtype=np.int64)] = True
    deleted = [model.entity_at(i) for i in np.flatnonzero(gone).tolist()]

    # ---- the dictionary after the change, and the entities whose counts it changes
    multi = np.flatnonzero(np.asarray(t.mt_words)[:, 1] >= 0)
    m_hash = mt_hashes(np.asarray(t.mt_words)[multi], np.asarray(t.stem_hash))
    o = np.argsort(m_hash, kind="stable")
    multi_hash, multi_mt = m_hash[o], multi[o]
    c_del = count_partial(deleted, analyzer, bp, ngrams_only=True)
    c_add = count_partial(add, analyzer, bp, ngrams_only=True)
    touched = np.union1d(c_del[0], c_add[0])
    n, kg, known, mt = _old_counts(t, multi_hash, multi_mt, touched)
    n_d, kg_d = _aligned(touched, c_del)
    n_a, kg_a = _aligned(touched, c_add)
    kept_new = (n - n_d + n_a >= min_count) | (kg - kg_d + kg_a > 0)
    promoted, demoted = touched[~known & kept_new], touched[known & ~kept_new]
    pend_hash, pend_doc = np.asarray(t.pend_hash), t.pend_doc  # the promoted hashes' rows only are read
    lo, hi = np.searchsorted(pend_hash, promoted, "left"), np.searchsorted(pend_hash, promoted, "right")
    holders = [pend_doc[a:b] for a, b in zip(lo.tolist(), hi.tolist())]
    holders += [t.postings(int(m))[0] for m in mt[known & ~kept_new].tolist()]
    recount = np.unique(np.concatenate(holders)).astype(np.int64) if holders else np.zeros(0, np.int64)
    recount = recount[~gone[recount]]
    again = [model.entity_at(i) for i in recount.tolist()]
    # the new dictionary, sorted: the known hashes less the demoted, the promoted (all unknown) inserted
    # in place (what union1d(setdiff1d(...)) gives, without its sorts of the whole dictionary)
    kept = np.delete(multi_hash, np.searchsorted(multi_hash, demoted))
    dictionary = np.insert(kept, np.searchsorted(kept, promoted), promoted)

    # ---- the signed merge: model − (deleted + recounted, old dictionary) + (recounted + added, new one)
    new_pos = np.cumsum(~gone) - 1  # position of each kept entity in the new corpus
    n_new = n_old - int(gone.sum()) + len(add)
    old_map = np.where(gone, -1, new_pos)
    old_map[recount] = -1  # their rows come from the recount
    parts = [(partial_of(t), 1, old_map)]
    if deleted or again:
        parts.append((count_partial(deleted + again, analyzer, bp, dictionary=multi_hash), -1,
                      np.full(len(deleted) + len(again), -1)))
    if again or add:
        parts.append((count_partial(again + add, analyzer, bp, dictionary=dictionary), 1,
                      np.concatenate([new_pos[recount], n_old - int(gone.sum()) + np.arange(len(add))])))
    merged = merge(parts, n_new, spool=spool)
    del parts  # the model's decoded counts: not held while the tables are assembled
    tables = assemble(merged, spool=spool)
    del merged

    # ---- the entity tables: the kept entities' rows as they are, then the added ones
    keep = np.flatnonzero(~gone)
    offsets = np.asarray(t.entity_offsets, dtype=np.int64)
    store = model._store
    runs = np.split(keep, np.flatnonzero(np.diff(keep) != 1) + 1) if len(keep) else []
    spans = [(int(offsets[r[0]]), int(offsets[r[-1] + 1])) for r in runs if len(r)]
    add_blob, add_offsets = entity_records(add)
    if isinstance(store, ZBlocks):  # a saved model's: its compressed blocks before the first change are kept
        blob: bytes | Spliced = Spliced(store, spans, add_blob)
    else:
        blob = b"".join(bytes(store[a:b]) for a, b in spans) + add_blob
    lens = np.concatenate([np.diff(offsets)[keep], np.diff(add_offsets)])
    stored = getattr(t.string_tables.get("ids"), "_zb", None)  # a saved model's: blocks before the first delete kept
    ids = t.strings("ids")
    from .query.agents import entity_agents

    tables.arrays.update({
        "entity_offsets": np.concatenate(([0], np.cumsum(lens))).astype(np.int64),
        "entity_agents": np.concatenate([np.asarray(t.entity_agents)[keep], entity_agents(add)]).astype(np.uint8),
        "entity_content": np.concatenate([np.asarray(t.entity_content)[keep], content_hashes(add)]),
    })
    new_ids = [ids[i] for i in keep.tolist()] + [json.dumps(e.id, ensure_ascii=False) for e in add]
    first_gone = int(np.argmax(gone)) if gone.any() else n_old
    tables.strings["ids"] = KeptLines(new_ids, stored, first_gone) if stored is not None else new_ids
    tables.blobs["entities.jsonl"] = blob
    report = {"deleted": len(deleted), "added": len(add), "recounted": len(again),
              "promoted": len(promoted), "demoted": len(demoted)}
    return tables, report


def _check_ids(model, delete_ids) -> list[int]:
    idx: list[int] = []
    missing: list = []
    for i in delete_ids:
        j = model.index_of(i)
        (missing if j is None else idx).append(i if j is None else j)
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise TablelmError(f"no entity with id {shown} in {model.path or 'the model'}; "
                           "'tablelm show -m MODEL ID' fetches an id, 'tablelm search' finds ids.")
    return sorted(set(idx))


def skip_existing(e, on_error: str, report: dict) -> None:
    """An added entity whose id the model already has: an error with ``on_error="fail"``, else skipped
    and listed in ``report["skipped_ids"]``."""
    if on_error == "fail":
        raise TablelmError(f"id {e.id!r} ({e.source or 'new entity'}) is already in the model; "
                           "use 'tablelm update' to replace it, or --on-error skip to keep the model's.")
    report.setdefault("skipped_ids", []).append(e.id)


def _filter_new(model, entities, deleting: set, on_error: str, report: dict) -> list:
    """The entities an add keeps: ids new to the model, content the model does not already have."""
    from .corpus import content_key

    have = np.asarray(model.tables.entity_content)
    gone = np.zeros(len(have), dtype=bool)
    gone[list(deleting)] = True
    contents = set(have[~gone & (have != 0)].tolist())
    out = []
    for e in entities:
        j = model.index_of(e.id)
        if j is not None and j not in deleting:
            skip_existing(e, on_error, report)
            continue
        key = content_key(e)
        h = (int(key[:16], 16) or 1) if key else 0
        if h and h in contents:
            report.setdefault("duplicates", []).append(e.id)
            continue
        contents.add(h)
        out.append(e)
    return out


def apply(model, *, add=(), delete=(), replace: bool = False, on_error: str = "skip", out_dir=None):
    """Change ``model``: delete the entities with ids ``delete``, add the entities ``add``
    (with ``replace``, an added id already in the model replaces that entity).

    Returns ``(new model, report)``. Saved atomically to ``out_dir`` (default: the model's own
    directory) when the model has one; readers that have the old model open keep answering
    from its tables.
    """
    from .model import Model, _count_and_save, load
    from .tables.store import save_tables

    t0 = time.perf_counter()
    add = list(add)
    if on_error not in ("fail", "skip"):
        raise TablelmError(f"on_error must be 'fail' or 'skip'. Got {on_error!r}.")
    report: dict = {}
    positions = set(_check_ids(model, list(delete)))
    if replace:
        positions |= {j for e in add if (j := model.index_of(e.id)) is not None}
    add = _filter_new(model, add, positions, on_error, report)
    if len(positions) >= model.n_docs and not add:
        raise TablelmError("this change would leave the model without entities; build a new model instead.")
    target = out_dir if out_dir is not None else model.path
    if model.n_docs == len(positions):  # nothing left to merge with: the added entities are the corpus
        new = _count_and_save(add, model.analyzer, model.build_params, model.manifest.get("corpus", {}), target,
                              profile=model.manifest.get("profile") or {})
        report.update(deleted=len(positions), added=len(add), recounted=0)
        return new, report
    if target is None:  # in memory: no folder to spool to
        tables, manifest = _changed(model, add, sorted(positions), None, report, t0)
        from .tables.store import FORMAT_VERSION

        store = tables.blobs["entities.jsonl"]
        return Model(tables, dict(manifest, format_version=FORMAT_VERSION), bytes(store)), report
    # a saved model's change merges through a spool folder, as the bounded-memory build does: an add
    # to the 1M-document model peaked at 4.7 GB merging in memory
    with tempfile.TemporaryDirectory(prefix="tablelm-update-") as spool:
        tables, manifest = _changed(model, add, sorted(positions), Path(spool), report, t0)
        save_tables(target, tables, manifest)
        del tables
    return load(target), report


def _changed(model, add: list, delete: list[int], spool: Path | None, report: dict, t0: float):
    """The changed tables, conformed to the schema, and their manifest; the report updated."""
    from .model import _manifest
    from .tables.schema import conform

    tables, counted = change_tables(model, add, delete, spool)
    report.update(counted)
    tables.arrays = conform(tables.arrays)
    corpus = dict(model.manifest.get("corpus", {}), entities=tables.stats["entities"])
    manifest = _manifest(tables, model.analyzer, model.build_params, corpus, model.manifest.get("profile") or {})
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return tables, manifest


__all__ = ["apply", "change_tables", "mt_hashes", "partial_of"]
