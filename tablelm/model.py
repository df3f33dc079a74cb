"""The model: tables + analyzer + entity store, and the one core call, ``ask``."""

from __future__ import annotations

import hashlib
import itertools
import json
import mmap
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from . import params as P
from .answer.citations import cite
from .answer.summary import answer_summary
from .answer.types import Answer, Card
from .corpus.entity import TextEntity
from .errors import ModelError, TablelmError
from .query import kernel
from .query.agents import agent_bit, entity_agents
from .query.expand import expand
from .query.filters import excluded_entities
from .query.passages import Factors, passage_factor
from .query.plan import Planner
from .query.rank import Scorer, field_weights, idf, top_k
from .query.sections import answer_shares, build_sections, context_factor, importance_factor
from .tables import build as build_module
from .tables import spill
from .tables.bounded import make_room
from .tables.build import FIELDS, Tables, build_tables, content_hashes, entity_records, gc_paused
from .tables.schema import TableSet, conform
from .tables.store import FORMAT_VERSION, load_tables, read_blob, read_manifest, save_tables, update_manifest
from .text.analyzer import Analyzer

__version__ = "0.1.0"

#: peak bytes of counting one shard per character of its text, which turns a memory budget into
#: a shard size; a first estimate (SciFact adds about 70 per character in one shard), too low for
#: long documents, whose pairs cost more per character (docs/scaling.md)
BUILD_BYTES_PER_CHAR = 128


class Model:
    """An untrained LLM: backend tables that answer prompts with cited cards.

    Create one with :func:`tablelm.build` or :func:`tablelm.load`.
    """

    #: the collection statistics a sub-model of a split model scores with (tablelm/submodels.py);
    #: None: the model's own
    collection = None

    def __init__(self, tables: Tables, manifest: dict, entity_store, path: Path | None = None):
        self.manifest = manifest
        self.path = path
        #: the access layer every query and answer module reads through (tables/schema.py)
        self.tables = TableSet(tables.arrays, tables.strings, manifest["stats"], where=str(path or "the model"))
        self._store = entity_store  # bytes or mmap of entities.jsonl
        self.build_params = manifest["build_params"]
        self.analyzer = _analyzer_of(manifest)
        self._planner = Planner(self)
        self._weights: dict = {}  # BM25F lengths and norms per parameter set (a few, see _cached)
        self._shown: dict[str, int] = {}  # id -> index of the entities of recent cards (bounded, see _card)
        #: opt-in: append the parameters users set to a local file (see tablelm.tune)
        self.record_usage = os.environ.get("TABLELM_RECORD_USAGE", "") not in ("", "0")
        self.defaults = P.resolve(manifest.get("profile", {}).get("params", {}), stage=("query", "render"))

    @property
    def n_docs(self) -> int:
        return self.tables.n_docs

    @property
    def ids(self) -> list[str]:
        return self.tables.ids

    def index_of(self, entity_id: str) -> int | None:
        got = self._shown.get(entity_id)  # an entity of a recent card: no index of every id needed
        return got if got is not None else self.tables.index_of(entity_id)

    # ------------------------------------------------------------ derived weights
    def _cached(self, key, compute):
        """Weights derived from the counts, kept for the last few parameter sets only."""
        got = self._weights.get(key)
        if got is None:
            make_room(self._weights, 8)
            got = self._weights[key] = compute()
        return got

    def doc_len_weighted(self, fw: tuple) -> np.ndarray:
        return self._cached(("len", fw), lambda: np.asarray(self.tables.doc_len, dtype=np.float64) @ np.asarray(fw))

    def avg_len(self, fw: tuple) -> float:
        """The average weighted entity length of BM25F: from exact per-field sums, so that a
        sub-model given its collection's sums (``collection``) computes the same number."""
        if self.collection is not None:
            return self.collection.avg_len(fw)
        sums = np.asarray(self.tables.doc_len, dtype=np.int64).sum(axis=0).astype(np.float64)
        return float(sums @ np.asarray(fw, dtype=np.float64)) / max(self.n_docs, 1)

    def postings_for(self, params: dict) -> kernel.Postings:
        """The postings as the scoring kernels read them, with the BM25F length norm of every entity,
        k1·(1−b+b·len/avglen), for this parameter set's (k1, b, field weights).

        Impacts are computed from the term frequencies for the postings a query touches only
        (kernel.py), so a new parameter set costs one pass over the entities, none over the postings.
        """
        fw = tuple(field_weights(params).tolist())
        k1, b = float(params["k1"]), float(params["b"])

        def compute():
            dl = self.doc_len_weighted(fw)
            norm = k1 * (1.0 - b + b * dl / max(self.avg_len(fw), 1e-9))
            return kernel.Postings(self.tables, norm, fw, k1)
        return self._cached(("postings", k1, b, fw), compute)

    def entity_at(self, index: int) -> TextEntity:
        offsets = self.tables.entity_offsets
        s, e = int(offsets[index]), int(offsets[index + 1])
        return TextEntity.from_dict(json.loads(bytes(self._store[s:e])))

    def entity_record(self, index: int) -> str:
        """The stored JSON record of entity ``index`` as text (UTF-8, not parsed): for fast text checks."""
        offsets = self.tables.entity_offsets
        return bytes(self._store[int(offsets[index]):int(offsets[index + 1])]).decode("utf-8", "replace")

    def entity_records(self, indices) -> list[str]:
        """:meth:`entity_record` of each of ``indices``, their offsets read in one gather."""
        offsets = self.tables.entity_offsets
        at = np.asarray(indices, dtype=np.int64)
        store = self._store
        return [bytes(store[s:e]).decode("utf-8", "replace")
                for s, e in zip(np.asarray(offsets[at]).tolist(), np.asarray(offsets[at + 1]).tolist())]

    def entity(self, entity_id: str) -> TextEntity:
        """The full entity with this id; KeyError names the id."""
        i = self.index_of(entity_id)
        if i is None:
            raise KeyError(f"no entity with id {entity_id!r} in this model")
        return self.entity_at(i)

    # ------------------------------------------------------------ answering
    def params(self, **overrides) -> dict:
        """The query parameters a call would use: defaults (or the tuned profile) + overrides."""
        return P.resolve(overrides, stage=("query", "render"), base=self.defaults)

    @staticmethod
    def _plain(plan, params: dict) -> bool:
        """Whether :meth:`_rank` gives this plan the plain term sum (tablelm ranker) times the agent
        factor, with nothing excluded: then search_many scores it in the compiled batch. Anything
        :meth:`_rank` adds must make this False, or search_many would skip it."""
        return Model._plain_params(params) and not plan.exclusions and not plan.filters and not plan.required_mts

    @staticmethod
    def _plain_params(params: dict) -> bool:
        """The part of :meth:`_plain` that the parameters decide (the same for every plan of a batch)."""
        return (params["ranker"] == "tablelm" and params["expansion_weight"] <= 0 and params["prf_weight"] <= 0
                and params["w_context"] <= 0 and params["w_importance"] <= 0 and params["passage_words"] <= 0)

    def _rank(self, prompt: str, params: dict, plan=None):
        """Plan and score. Returns the plan, the scorer, the scores, the excluded entities and the
        per-entity factors applied on top of the term contributions ({name: array}, for ``why``)."""
        plan = plan or self._planner.plan(prompt, params)
        scorer = Scorer(self, params)
        factors = Factors()
        if params["ranker"] == "reference":
            scores, _ = scorer.reference(plan.active())
        else:
            scores = scorer.tablelm(plan.active())
            # the best passage of the prompt's own terms (their sum, before expansion and the priors)
            passage = passage_factor(self, plan, scores, scorer, params)
            if passage is not None:
                factors["best passage"], factors.spans = passage
            if params["expansion_weight"] > 0 or params["prf_weight"] > 0:
                scores = expand(self, plan, scorer, scores, params)
            factor = context_factor(self, plan, params)
            if factor is not None:
                factors["knowledge graph"] = factor
            prior = importance_factor(self, params)
            if prior is not None:
                factors["importance (in-links)"] = prior
            bit = agent_bit(plan.agent)
            if bit and params["agent_boost"] != 1.0:
                factors[f"agent {plan.agent}"] = np.where(self.tables.entity_agents & bit, params["agent_boost"], 1.0)
            for f in factors.values():
                scores = scores * f
        exclude = excluded_entities(self, plan, scores)  # !word, "exact phrase", filter
        return plan, scorer, scores, exclude, factors

    def search(self, query: str, k: int = 100, **params) -> list[tuple[str, float]]:
        """Ranked ``(entity id, score)`` pairs: ``ask`` without cards or sections."""
        return self.search_many({0: query}, k, **params)[0]

    @gc_paused()  # a batch allocates many small objects and no cycles: collections would find nothing
    def search_many(self, queries: dict, k: int = 100, **params) -> dict[Any, list[tuple[str, float]]]:
        """:meth:`search` for each ``{query id: text}``; the prompts are planned in one batch, and
        those :meth:`_plain` allows are scored and cut to ``k`` in one compiled pass (kernel.py)."""
        p = self.params(**params)
        k = P.check_k(k, limit=None)
        texts = list(queries.values())
        planned = self._planner.plan_batch(texts, p)  # the batch reads the terms as arrays
        plans = planned.plans
        plain = [i for i, plan in enumerate(plans) if not plan.exclusions and not plan.filters
                 and not plan.required_mts] if self._plain_params(p) else []  # = self._plain(plan, p)
        boost = p["agent_boost"]
        if plain:
            batch = planned.kernel_input(plain, lambda mts: idf(self, mts))
            bits = [agent_bit(plans[i].agent) for i in plain] if boost != 1.0 else None
            r_ptr, r_docs, r_scores = kernel.search_batch_flat(self.postings_for(p), batch, k,
                                                               self.tables.entity_agents, boost, bits)
        if not plans:
            return {}
        if len(plain) == len(plans):  # the kernel's results are the batch's, in query order
            bounds, flat, scores = r_ptr.tolist(), r_docs.tolist(), r_scores.tolist()
        else:
            ranked: list = [None] * len(plans)
            if plain:
                b = r_ptr.tolist()
                for j, i in enumerate(plain):
                    ranked[i] = r_docs[b[j]:b[j + 1]], r_scores[b[j]:b[j + 1]]
            for i in range(len(plans)):
                if ranked[i] is None:
                    _, _, sc, exclude, _ = self._rank(texts[i], p, planned.fill(i))
                    idx = top_k(sc, k, exclude)
                    ranked[i] = idx, sc[idx]
            bounds = np.cumsum([0] + [len(idx) for idx, _ in ranked]).tolist()
            flat = np.concatenate([idx for idx, _ in ranked]).tolist()
            scores = np.concatenate([sc for _, sc in ranked]).tolist()
        # every query's (id, score) pairs made in one pass over all the results, then cut per query
        if len(flat) * 4 >= self.n_docs:  # many results: decode every id once
            ids = list(map(self.tables.ids.__getitem__, flat))
        else:
            ids = self.tables.ids_at(flat)
        pairs = list(zip(ids, scores))
        return {qid: pairs[lo:hi] for qid, lo, hi in zip(queries, bounds, bounds[1:])}

    def ask(self, prompt: str, k: int = 10, **params) -> Answer:
        """Answer ``prompt`` with up to ``k`` ranked, cited cards and the sections.

        Parameters
        ----------
        prompt : str
            Free text; ``!word`` excludes entities containing the word, ``a~b`` forces the
            multitoken "a b".
        k : int
            Number of cards.
        **params
            Any query or render parameter of the registry (``tablelm params``).
        """
        if not isinstance(prompt, str):
            raise TablelmError(f"The prompt must be a string. Got {type(prompt).__name__}.")
        t0 = time.perf_counter()
        p = self.params(**params)
        if self.record_usage and params:
            from .tune import record_usage

            record_usage(self, P.resolve(params, stage=("query", "render"), base={}))
        k = P.check_k(k)
        plan, scorer, scores, exclude, factors = self._rank(prompt, p)
        t1 = time.perf_counter()
        idx = top_k(scores, k, exclude)
        active = plan.active()
        contrib = scorer.explain(active, idx) if p["ranker"] == "tablelm" else None
        cards = [self._card(r + 1, d, float(scores[d]), active, None if contrib is None else contrib[r],
                            factors, scorer, p) for r, d in enumerate(idx.tolist())]
        summary = answer_summary(self, plan, cards, p)
        t2 = time.perf_counter()
        sections = build_sections(self, plan, p, answer_shares(plan, cards))
        t3 = time.perf_counter()
        return Answer(prompt=prompt, plan=plan.to_dict(), cards=cards, sections=sections, params=dict(p, k=k),
                      summary=summary,
                      timings_ms={"rank": round((t1 - t0) * 1e3, 3), "cards": round((t2 - t1) * 1e3, 3),
                                  "sections": round((t3 - t2) * 1e3, 3), "total": round((t3 - t0) * 1e3, 3)},
                      model={"fingerprint": self.manifest["fingerprint"],
                             "path": str(self.path) if self.path else None})

    def _card(self, rank, d, score, active, contrib, factors, scorer, p) -> Card:
        """One card: the entity, why it scored (term contributions, factors) and its evidence."""
        e = self.entity_at(d)
        if len(self._shown) >= 10_000:
            self._shown.clear()
        self._shown[e.id] = d  # the summary and the citations look it up by id next
        applied = [{"name": name, "multiplier": round(float(f[d]), 6)} for name, f in factors.items() if f[d] != 1.0]
        for item in applied:
            if item["name"] == "best passage":  # the window that scored: its characters in the text
                item["span"] = list(factors.spans[d])
        tfs = [scorer.term_tf(t.mt, np.array([d]))[0] for t in active]
        if contrib is not None:
            # contributions include the factors, so that they add up to the score
            contrib = contrib * float(np.prod([f[d] for f in factors.values()]))
            order = [j for j in np.argsort(-contrib, kind="stable") if contrib[j] > 0]
        else:  # the reference ranker: the matched multitokens, with their corpus counts
            order = [j for j, tf in enumerate(tfs) if tf.sum() > 0]
        why = []
        stretch_size = Counter(t.stretch for t in active if t.stretch is not None)
        for j in order:
            t = active[j]
            item = {"multitoken": t.text, "role": t.role, "tf": {f: int(v) for f, v in zip(FIELDS, tfs[j]) if v}}
            if t.qtf > 1:
                item["qtf"] = t.qtf  # the prompt says it qtf times: its weight grows, saturating (qtf_k3)
            if stretch_size.get(t.stretch, 0) > 1:
                item["best_of"] = stretch_size[t.stretch]  # overlapping phrases of one stretch count once
            if contrib is not None:
                item["contribution"] = round(float(contrib[j]), 6)
            else:
                item["corpus_count"] = int(self.tables.mt_total[t.mt])
            why.append(item)
        used = [active[j] for j in order]
        citations, snippet = cite(self, e, used, p["snippet_chars"], used[0].text if used else None)
        return Card(rank=rank, id=e.id, title=e.title, category=list(e.category), tags=list(e.tags),
                    score=round(score, 6), why=why, citations=citations, snippet=snippet,
                    source=e.source, related=list(e.related), factors=applied)

    # ------------------------------------------------------------ persistence and facts
    def info(self) -> dict:
        """Manifest facts and table sizes."""
        sizes = {name: list(np.shape(a)) for name, a in sorted(self.tables.arrays.items())}
        return {
            "path": str(self.path) if self.path else None,
            "format_version": self.manifest["format_version"],
            "tablelm_version": self.manifest["tablelm_version"],
            "fingerprint": self.manifest["fingerprint"],
            "corpus": self.manifest["corpus"],
            "build_params": self.build_params,
            "stats": self.manifest["stats"],
            "profile": self.manifest.get("profile", {}),
            "tables": sizes,
        }

    def set_profile(self, profile: dict) -> None:
        """Make ``profile['params']`` this model's default query parameters, saved in its manifest.

        An empty ``params`` restores the registry defaults.
        """
        validated = P.resolve(profile.get("params", {}), stage=("query", "render"), base={})
        profile = dict(profile, params=validated)
        if self.path is not None:
            self.manifest = dict(self.manifest, **update_manifest(self.path, {"profile": profile}))
        else:
            self.manifest = dict(self.manifest, profile=profile)
        self.defaults = P.resolve(validated, stage=("query", "render"))

    # ------------------------------------------------------------ changes (tablelm/update.py)
    def add(self, sources=None, *, entities=None, replace: bool = False, field_map=None, encoding: str = "utf-8",
            on_error: str = "skip", reader_options: dict | None = None, report: dict | None = None,
            out_dir=None) -> Model:
        """Add the entities of ``sources`` (files or folders, read as a build reads them) and/or
        ``entities`` (TextEntity objects), without a rebuild; return the changed model.

        The result is what a build of this model's entities followed by the new ones gives.
        Ids the model already has are skipped, or with ``replace=True`` replace the model's
        entity (which then moves to the end). A saved model is changed in place atomically
        (or written to ``out_dir``); ``report`` (a dict) is filled with what was done.
        """
        from .corpus import ReadStats, read_corpus
        from .update import apply

        if isinstance(sources, (str, os.PathLike, TextEntity)):
            sources = [sources]
        sources = list(sources or [])
        # entities given where the sources go (model.add([TextEntity(...)])): added, not read as paths
        new = list(entities or []) + [s for s in sources if isinstance(s, TextEntity)]
        sources = [s for s in sources if not isinstance(s, TextEntity)]
        stats = ReadStats()
        if sources:
            new += read_corpus(sources, field_map=field_map, encoding=encoding, on_error=on_error, stats=stats,
                               **(reader_options or {}))
        model, done = apply(self, add=new, replace=replace, on_error=on_error, out_dir=out_dir)
        if report is not None:
            report.update(done, errors=list(stats.errors), skipped=stats.skipped)
        return model

    def delete(self, ids, *, report: dict | None = None, out_dir=None) -> Model:
        """Delete the entities with these ids, without a rebuild; return the changed model."""
        from .update import apply

        model, done = apply(self, delete=list(ids), out_dir=out_dir)
        if report is not None:
            report.update(done)
        return model

    def save(self, out_dir) -> Path:
        """Write the model to ``out_dir`` (atomically) and return the path."""
        tables = Tables(arrays=dict(self.tables.arrays), strings=dict(self.tables.string_tables),
                        blobs={"entities.jsonl": bytes(self._store)})
        manifest = {k: v for k, v in self.manifest.items() if k not in ("tables", "folder", "format_version")}
        return save_tables(out_dir, tables, manifest)


def load(model_dir):
    """Load a model directory; arrays are memory-mapped, so this is fast.

    A model built with ``split_by`` loads as a :class:`tablelm.submodels.SplitModel` (same calls).
    """
    from .submodels import is_split, load_split

    if is_split(model_dir):
        return load_split(model_dir)
    tables, manifest, _folder = load_tables(model_dir)  # maps entities.jsonl too, in the same pass
    return Model(tables, manifest, tables.blobs.pop("entities.jsonl", b""), Path(model_dir))


@gc_paused()
def build(sources=None, out_dir=None, *, field_map=None, encoding: str = "utf-8", on_error: str = "fail",
          kw_map: dict | None = None, stopwords=None, progress: bool = False, report=None,
          reader_options: dict | None = None, memory_mb: float = 2048, split_by: str | None = None,
          split_sep: str | None = None, max_submodels: int | None = None, engine: str = "local", scheduler=None,
          **build_params):
    """Read a corpus, count its tables, and return the model (saved to ``out_dir`` if given).

    Parameters
    ----------
    sources : list of path, optional
        Files or folders (JSONL/BEIR, .txt/.md folders, xLLM ``ID~~{...}`` files). None: the
        built-in corpus, Python's own documentation.
    out_dir : path, optional
        Model directory to write atomically; an existing model there is replaced only once the
        new one is complete.
    on_error : {'fail', 'skip'}
        What a malformed record does: stop the build, or be reported and skipped.
    progress : bool
        Show progress bars on standard error.
    report : dict, optional
        Filled with the reading statistics (read, skipped, duplicates, errors) and timings.
    reader_options : dict, optional
        More options of :func:`tablelm.corpus.read_corpus`: ``pdf_unit`` ('paragraph' or 'page'),
        ``max_file_mb``, ``dedupe_content``.
    memory_mb : float
        Memory budget of the counting: a corpus whose text exceeds about ``memory_mb`` MB /
        ``BUILD_BYTES_PER_CHAR`` characters is read and counted in shards of that size
        (the tables are the same; see tables/counts.py). With ``engine='dask'``, the budget of
        each Dask worker.
    split_by : str, optional
        Build one sub-model per top value of this field (``category``, ``tags``, ``metadata.KEY``
        ...) under ``out_dir``, asked through a router: returns a :class:`tablelm.submodels.SplitModel`.
        ``split_sep`` keeps a value's part before that separator; ``max_submodels`` caps their
        number (the rarest values share one). See tablelm/submodels.py.
    engine : {'local', 'dask'}
        Count in this process, or on a Dask cluster (``pip install 'tablelm[dask]'``): the same
        model, byte for byte (tables/distributed.py, docs/distributed.md).
    scheduler : str or distributed.Client, optional
        With ``engine='dask'``: the scheduler's address (``tcp://HOST:8786``) or a Client; None
        starts a local cluster sized to the machine.
    **build_params
        Build-stage parameters of the registry (``tablelm params``).
    """
    from .corpus import ReadStats, read_corpus

    t0 = time.perf_counter()
    bp = P.resolve(build_params, stage="build")
    if not sources and kw_map is None:
        from .text.analyzer import python_kw_map

        kw_map = python_kw_map()  # the built-in corpus's synonyms
    P.check("on_error", on_error)
    if engine not in ("local", "dask") or (scheduler is not None and engine != "dask"):
        raise TablelmError(f"engine must be 'local' or 'dask' (a scheduler goes with engine='dask'). "
                           f"Got engine={engine!r}, scheduler={scheduler!r}.")
    if engine == "dask":
        if split_by is not None:
            raise TablelmError("split_by builds its sub-models in this process: leave engine='dask' out.")
        from .tables.distributed import _import_distributed

        _import_distributed()  # before reading the corpus: say at once how to install it
    analyzer = Analyzer(stem=bp["stem"], kw_map=kw_map, language=bp["language"],
                        **({"stopwords": stopwords} if stopwords is not None else {}))
    stats = ReadStats()
    if not isinstance(memory_mb, (int, float)) or isinstance(memory_mb, bool) or not memory_mb >= 64:
        raise TablelmError(f"memory_mb must be a number of megabytes >= 64. Got {memory_mb!r}.")
    shards = shards_of(read_corpus(sources, field_map=field_map, encoding=encoding, on_error=on_error, stats=stats,
                                   **(reader_options or {})), int(memory_mb * 2**20 / BUILD_BYTES_PER_CHAR))
    entities: Any = next(shards, [])  # a list, or an iterator of shards when the build is sharded
    more = next(shards, None)
    if more is not None:  # more than one shard: the bounded-memory build, reading the corpus as it goes
        entities = itertools.chain([entities, more], shards)
    if not entities:
        where = ", ".join(map(str, sources)) if sources else "the built-in corpus"
        why = "".join(f"\n  {line}" for line in stats.reasons())  # in skip mode, what was skipped and why
        raise TablelmError(f"No entities found in {where}: nothing to build. Check the paths and the "
                           f"--text-field/--id-field options (tablelm build --help).{why}")
    if stopwords is None and not analyzer.stopwords:  # a language without a list: the corpus's own
        from .text.languages import corpus_stopwords

        if not isinstance(entities, list):  # they need the whole corpus first: this build is not sharded
            entities = [e for shard in entities for e in shard]
        analyzer = Analyzer(stem=bp["stem"], kw_map=kw_map, language=bp["language"],
                            stopwords=corpus_stopwords((e.text for e in entities), analyzer))
    corpus = {"sources": [str(s) for s in sources] if sources else ["builtin:python-docs"]}
    if not sources:
        from .corpus.pydocs import builtin_corpus_facts

        if not isinstance(entities, list):  # the built-in corpus fits in memory: count its sources
            entities = [e for shard in entities for e in shard]
        corpus.update(builtin_corpus_facts(entities))
        from .builtin import builtin_profile

        profile = builtin_profile(corpus["html_docs"] is not None)  # the built-in corpus's own query defaults
    else:
        profile = {}
    if split_by is not None:
        from .submodels import MAX_SUBMODELS, build_split

        if not isinstance(entities, list):  # a split counts the whole collection in memory
            entities = [e for shard in entities for e in shard]
        model = build_split(entities, analyzer, bp, corpus, out_dir, split_by=split_by, split_sep=split_sep,
                            max_submodels=MAX_SUBMODELS if max_submodels is None else max_submodels,
                            progress=progress, report=report)
    elif engine == "dask":
        from .tables.distributed import count_and_save

        model = count_and_save([entities] if isinstance(entities, list) else entities, analyzer, bp, corpus,
                               out_dir, scheduler=scheduler, memory_mb=memory_mb, progress=progress,
                               report=report, t0=t0, profile=profile)
    else:
        model = _count_and_save(entities, analyzer, bp, corpus, out_dir, progress=progress, report=report, t0=t0,
                                profile=profile)
    if report is not None:  # after the count: a sharded build reads the corpus while it counts
        report.update(stats.to_dict() if hasattr(stats, "to_dict") else vars(stats))
    return model


def _count_and_save(entities, analyzer: Analyzer, bp: dict, corpus: dict, out_dir, *, progress: bool = False,
                    report: dict | None = None, t0: float | None = None, profile: dict | None = None) -> Model:
    """Count the tables of ``entities`` (a list, or an iterator of shards: lists of entities) and
    return the model, saved to ``out_dir`` if given."""
    if not isinstance(entities, list):
        with tempfile.TemporaryDirectory(prefix="tablelm-build-") as spool:
            return _count_and_save_sharded(entities, analyzer, bp, corpus, out_dir, Path(spool),
                                           progress=progress, report=report, t0=t0, profile=profile)
    t_read = time.perf_counter()
    t0 = t_read if t0 is None else t0
    bar = _bar(progress, "counting", "entities", total=len(entities))

    def step(n, stage=None):
        if stage:
            bar.set_postfix_str(stage)
        elif n:
            bar.update(n)

    tables = build_tables(entities, analyzer, bp, progress=step, side_work=lambda: _entity_tables(entities))
    bar.close()
    return _save_counted(tables, analyzer, bp, dict(corpus, entities=len(entities)), out_dir, report=report,
                         t0=t0, t_read=t_read, profile=profile)


def _save_counted(tables: Tables, analyzer: Analyzer, bp: dict, corpus: dict, out_dir, *, report, t0: float,
                  t_read: float, profile: dict | None) -> Model:
    tables.arrays = conform(tables.arrays)
    manifest = _manifest(tables, analyzer, bp, corpus, profile or {})
    t_build = time.perf_counter()
    if report is not None:
        report["seconds"] = {"read": round(t_read - t0, 3), "tables": round(t_build - t_read, 3)}
    if out_dir is not None:
        save_tables(out_dir, tables, manifest)
        model = load(out_dir)
        if report is not None:
            report["seconds"]["save"] = round(time.perf_counter() - t_build, 3)
        return model
    manifest = dict(manifest, format_version=FORMAT_VERSION)
    blob = tables.blobs["entities.jsonl"]
    return Model(tables, manifest, blob.read_bytes() if isinstance(blob, Path) else blob, None)


def _count_and_save_sharded(shards, analyzer: Analyzer, bp: dict, corpus: dict, out_dir, spool: Path, *,
                            progress: bool, report, t0, profile) -> Model:
    """The bounded-memory build: the corpus streams through in shards, twice.

    Pass 1 writes each shard's entities to the spooled entity store and its n-gram counts
    (sorted stable hashes) to the spool folder; the dictionary is then summed hash range by
    hash range, so no pass holds the counts of the whole corpus. Pass 2 reads each shard back
    from the spooled store and counts it against the dictionary; the partials are merged by
    key. The tables are those of a one-shard build, byte for byte (tables/counts.py).
    """
    t_start = time.perf_counter()
    t0 = t_start if t0 is None else t0
    spill.map_large_allocations(spill.SHARDED_MMAP_THRESHOLD)
    bar = _bar(progress, "reading", "entities")
    spans, n = [], 0
    pieces: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    agents: list[np.ndarray] = []
    content: list[np.ndarray] = []
    ids: list[str] = []
    with open(spool / "entities.jsonl", "wb") as store:
        for k, shard in enumerate(shards):
            counts = build_module.count_partial(shard, analyzer, bp, ngrams_only=True)
            for name, arr in zip(("hash", "n", "kg"), counts):
                np.save(spool / f"ngrams-{k}-{name}.npy", arr)
            blob, off = entity_records(shard)
            store.write(blob)
            pieces.append(off[1:] + pieces[-1][-1])
            agents.append(entity_agents(shard))
            content.append(content_hashes(shard))
            ids += [json.dumps(e.id, ensure_ascii=False) for e in shard]
            spans.append((n, n + len(shard)))
            n += len(shard)
            bar.update(len(shard))
            del counts, blob, off
            spill.trim()
    bar.close()
    t_read = time.perf_counter()
    dictionary = _dictionary_from_spool(spool, len(spans), int(bp["min_multitoken_count"]))
    offsets = np.concatenate(pieces)
    bar = _bar(progress, "counting", "entities", total=n)
    parts: list[tuple] = []
    with open(spool / "entities.jsonl", "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for lo, hi in spans:
            shard = [TextEntity.from_dict(json.loads(mm[int(offsets[i]):int(offsets[i + 1])])) for i in range(lo, hi)]
            part = build_module.count_partial(shard, analyzer, bp, dictionary=dictionary)
            parts.append((_spill(part, spool / f"part-{len(parts)}"), 1, np.arange(lo, hi)))
            del shard
            spill.trim()
            bar.update(hi - lo)
    bar.set_postfix_str("merging")
    merged = build_module.merge(parts, n, spool=spool)
    del parts, part
    spill.trim()
    tables = build_module.assemble(merged, spool=spool)
    del merged
    spill.trim()
    bar.close()
    tables.arrays.update({"entity_offsets": offsets, "entity_agents": np.concatenate(agents),
                          "entity_content": np.concatenate(content)})
    tables.strings["ids"] = ids
    tables.blobs["entities.jsonl"] = spool / "entities.jsonl"
    if report is not None:
        report["shards"] = len(spans)
    return _save_counted(tables, analyzer, bp, dict(corpus, entities=n), out_dir, report=report, t0=t0,
                         t_read=t_read, profile=profile)


def _spill(part, prefix: Path):
    """The partial with its per-row arrays written to the spool and memory-mapped back: the merge
    reads them one range at a time, so a shard's counts do not stay in memory until the merge."""
    for name in ("mt_words", "mt_hash", "mt_counts", "post_mt", "post_doc", "post_tf", "pair_a", "pair_b",
                 "pair_adj", "pair_ctx", "pend_hash", "pend_doc", "doc_len"):
        setattr(part, name, spill.save(Path(f"{prefix}-{name}.npy"), getattr(part, name)))
    return part


def _dictionary_from_spool(spool: Path, n_shards: int, min_count: int, ranges: int = 16) -> np.ndarray:
    """The dictionary (sorted hashes of the multi-word n-grams kept) from the shards' spooled counts,
    one hash range at a time: each range holds about 1/``ranges`` of the distinct n-grams."""
    files = [[np.load(spool / f"ngrams-{k}-{name}.npy", mmap_mode="r") for name in ("hash", "n", "kg")]
             for k in range(n_shards)]
    bounds = [np.uint64(r * (1 << 64) // ranges) for r in range(1, ranges)]
    out = []
    for r in range(ranges):
        pieces = []
        for h, c, kg in files:
            lo = 0 if r == 0 else int(np.searchsorted(h, bounds[r - 1]))
            hi = len(h) if r == ranges - 1 else int(np.searchsorted(h, bounds[r]))
            pieces.append((h[lo:hi], c[lo:hi], kg[lo:hi]))
        summed = build_module.sum_by_hash(*zip(*pieces))
        out.append(build_module.dictionary_from_counts(summed, min_count))
    return np.concatenate(out)


def shards_of(entities, shard_chars: int):
    """Consecutive lists of entities of about ``shard_chars`` characters of text each."""
    shard, size = [], 0
    for e in entities:
        shard.append(e)
        size += len(e.text) + len(e.title) + 64
        if size >= shard_chars:
            yield shard
            shard, size = [], 0
    if shard:
        yield shard


def _manifest(tables: Tables, analyzer: Analyzer, bp: dict, corpus: dict, profile: dict) -> dict:
    """The manifest of freshly counted tables; the fingerprint covers the entities and the build."""
    blob = tables.blobs["entities.jsonl"]
    if isinstance(blob, Path):  # spooled to disk by a sharded build
        with open(blob, "rb") as f:
            h = hashlib.file_digest(f, "sha256")
    elif hasattr(blob, "chunks"):  # an add's or a delete's store (tables/codecs.py Spliced): read a piece at a time
        h = hashlib.sha256()
        for piece in blob.chunks():
            h.update(piece)
    else:
        h = hashlib.sha256(blob)
    h.update(json.dumps([bp, analyzer.config(), FORMAT_VERSION], sort_keys=True).encode())
    return {"tablelm_version": __version__, "fingerprint": h.hexdigest(), "build_params": bp,
            "analyzer": analyzer.config(), "corpus": corpus, "stats": tables.stats, "profile": profile}


def stored_entities(model_dir) -> tuple[list, dict]:
    """The entities a model directory stores and its manifest, whatever its format version.

    Lets ``upgrade`` rebuild a model of an older format from itself, without its sources.
    """
    manifest = read_manifest(model_dir, any_version=True)
    meta = manifest.get("tables", {}).get("entities.jsonl", {})
    path = Path(model_dir) / manifest.get("folder", "") / meta.get("file", "entities.jsonl")
    try:
        entities = [TextEntity.from_dict(json.loads(line)) for line in read_blob(path, meta).split(b"\n")
                    if line.strip()]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelError(f"{path} cannot be read ({e}); rebuild the model from its sources with tablelm build.") \
            from None
    return entities, manifest


def _analyzer_of(manifest: dict, letters: bool | None = None) -> Analyzer:
    """The analyzer a manifest records; ``letters`` overrides its letter rule (an upgrade's)."""
    a = manifest["analyzer"]
    return Analyzer(stem=a["stem"], stopwords=a["stopwords"], kw_map=a["kw_map"],
                    language=a.get("language", "en"),  # models built before languages: English
                    letters=a.get("letters", False) if letters is None else letters)  # before letters: none


@gc_paused()
def upgrade(model_dir, *, progress: bool = False) -> Model:
    """Rebuild a model of an older format (or the current one) in place from the entities it stores.

    The build parameters, analyzer, corpus description and tuned profile are kept (the analyzer
    takes the current letter rule: a model built before it gets its letter multitokens); the
    switch is atomic, like a build's.
    """
    entities, manifest = stored_entities(model_dir)
    try:
        bp = P.resolve(manifest.get("build_params", {}), stage="build")
        analyzer = _analyzer_of(manifest, letters=True)
    except (KeyError, TypeError) as e:
        raise ModelError(f"{model_dir}/manifest.json lacks the build settings ({e}); rebuild the model from its "
                         "sources with tablelm build.") from None
    return _count_and_save(entities, analyzer, bp, manifest.get("corpus", {}), model_dir, progress=progress,
                           profile=manifest.get("profile") or {})


def _entity_tables(entities) -> Tables:
    """The entity store, ids and agent bits (built while the counting pass counts pairs)."""
    blob, offsets = entity_records(entities)
    return Tables(arrays={"entity_offsets": offsets, "entity_agents": entity_agents(entities),
                          "entity_content": content_hashes(entities)},
                  strings={"ids": [json.dumps(e.id, ensure_ascii=False) for e in entities]},
                  blobs={"entities.jsonl": blob})


def _bar(enabled: bool, desc: str, unit: str, total=None):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=f" {unit}", disable=None if enabled else True, file=sys.stderr,
                dynamic_ncols=True, leave=False)
