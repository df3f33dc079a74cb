"""Evaluation: judged queries in, trec_eval-compatible numbers out.

Readers for BEIR/TREC judgment files, the rank metrics of ``trec_eval``
(re-implemented, checked against ``pytrec_eval`` in ``tests/test_evaluation.py``),
a TREC run writer/reader, and two drivers that run a model: :func:`evaluate_model`
(judged queries → metrics + latency) and :func:`prompt_coverage` (reference
answers → share of their vocabulary found in the top cards).

Metric definitions (trec_eval 9.x, ``relevance_level`` 1)
----------------------------------------------------------
A document is *relevant* when its qrels grade is > 0; grades ≤ 0 and unjudged
documents count as not relevant (gain 0). ``R`` is the number of relevant
documents of the query in the qrels, whether retrieved or not.

* ``ndcg@k`` (trec_eval ``ndcg_cut.k``): DCG@k / IDCG@k with gain = grade and
  discount ``log2(rank + 1)`` (Järvelin & Kekäläinen 2002, as in trec_eval
  ``m_ndcg_cut.c``); the ideal ranking sorts *all* relevant judged documents by
  grade, cut at k.
* ``map@k`` (``map_cut.k``): sum of precision@rank over the relevant documents
  at ranks ≤ k, divided by R (not by min(R, k)).
* ``recall@k`` (``recall.k``): relevant documents in the top k divided by R.
* ``exhaustivity@k``: the same number as ``recall@k``, named for what a user
  sees — the share of a query's relevant entities among the first k cards.
* ``mrr@k``: 1 / rank of the first relevant document within the top k, else 0.
  (trec_eval ``recip_rank`` has no cutoff; it equals ``mrr@k`` on a run cut to k.)
* ``p@k`` (``P.k``): relevant documents in the top k divided by k.

Ranking as trec_eval reads a run: a query's results are re-sorted by score
descending, ties broken by document id *descending* (``strcmp(b, a)`` in
trec_eval ``form_res_rels.c`` ``comp_sim_docno``); the order in which the
results were given is ignored (pass ``sort=False`` to keep it). Only queries
in the qrels are scored; a judged query without results scores 0 on every
metric, and the means are over all judged queries (``trec_eval -c``). A query
with no relevant document scores 0 as in trec_eval.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from tablelm.errors import CorpusError

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "Comparison",
    "CoverageReport",
    "EvalReport",
    "compare_runs",
    "evaluate_model",
    "evaluate_run",
    "paired_test",
    "parse_metric",
    "prompt_coverage",
    "rank_run",
    "read_prompts",
    "read_qrels",
    "read_queries",
    "read_trec_run",
    "write_trec_run",
]

Run = Mapping[str, Sequence[tuple[str, float]]]
Qrels = Mapping[str, Mapping[str, int]]

DEFAULT_METRICS = ("ndcg@10", "map@100", "recall@100", "mrr@10", "exhaustivity@10")


# --------------------------------------------------------------------------- readers


def _open_lines(path) -> Iterable[tuple[int, str]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CorpusError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        # Report the line of the bad byte: the fix is to re-encode the file.
        raw = path.read_bytes()
        line = raw.count(b"\n", 0, exc.start) + 1
        raise CorpusError(path, f"not UTF-8 ({exc.reason} at byte {exc.start}); re-encode the file as UTF-8",
                          line=line) from None
    return enumerate(text.splitlines(), start=1)


def read_queries(path) -> dict[str, str]:
    """Read a BEIR ``queries.jsonl``: one ``{"_id": ..., "text": ...}`` object per line.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    dict
        query id (str) → query text, in file order. Blank lines are skipped.

    Raises
    ------
    CorpusError
        With the file and 1-based line number of a line that is not a JSON
        object, lacks ``_id`` or ``text``, or repeats an id.
    """
    queries: dict[str, str] = {}
    for lineno, line in _open_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CorpusError(path, f"invalid JSON ({exc.msg} at column {exc.colno})", line=lineno) from None
        if not isinstance(obj, dict):
            raise CorpusError(path, f"expected a JSON object, got {type(obj).__name__}", line=lineno)
        for key in ("_id", "text"):
            if key not in obj:
                raise CorpusError(path, f"no {key!r} field (found: {', '.join(obj) or 'none'}); "
                                        "BEIR queries need '_id' and 'text'", line=lineno)
        qid, text = str(obj["_id"]), obj["text"]
        if not isinstance(text, str):
            raise CorpusError(path, f"'text' must be a string, got {type(text).__name__}", line=lineno)
        if qid in queries:
            raise CorpusError(path, f"duplicate query id {qid!r}", line=lineno)
        queries[qid] = text
    return queries


_QRELS_HEADER = ("query-id", "corpus-id", "score")


def read_qrels(path) -> dict[str, dict[str, int]]:
    """Read relevance judgments in BEIR TSV or TREC qrels format.

    BEIR: ``query-id<TAB>corpus-id<TAB>score`` with an optional header line.
    TREC: ``qid iteration docid relevance`` separated by spaces or tabs
    (the iteration column is ignored). The format is decided per line by its
    number of columns, so both can be read without a flag.

    Returns
    -------
    dict
        query id → {document id → integer grade}. Grades ≤ 0 are kept (they
        mark judged non-relevant documents) but never count as relevant. If a
        pair is judged twice the last grade wins.

    Raises
    ------
    CorpusError
        With the file and line number of a line with another number of
        columns or a grade that is not an integer.
    """
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in _open_lines(path):
        if not line.strip():
            continue
        cols = line.split()
        if lineno == 1 and tuple(c.lower() for c in cols) == _QRELS_HEADER:
            continue
        if len(cols) == 3:
            qid, docid, grade = cols
        elif len(cols) == 4:
            qid, _, docid, grade = cols
        else:
            raise CorpusError(path, f"expected 3 columns (query-id corpus-id score) or 4 (qid 0 docid rel), "
                                    f"got {len(cols)}: {line[:80]!r}", line=lineno)
        try:
            value = float(grade)
        except ValueError:
            value = math.nan
        if not value.is_integer():
            raise CorpusError(path, f"relevance grade must be an integer, got {grade!r}", line=lineno)
        qrels.setdefault(qid, {})[docid] = int(value)
    return qrels


def read_prompts(path) -> list[tuple[str, str]]:
    """Read the reference system's ``prompt | reference answer`` file.

    One pair per line, split at the first ``|``; both sides are stripped.
    Blank lines and lines starting with ``#`` are skipped.

    Raises
    ------
    CorpusError
        With the file and line number of a line without ``|`` or with an
        empty prompt or answer.
    """
    pairs: list[tuple[str, str]] = []
    for lineno, line in _open_lines(path):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        prompt, sep, answer = line.partition("|")
        if not sep:
            raise CorpusError(path, "expected 'prompt | reference answer' (no '|' found)", line=lineno)
        prompt, answer = prompt.strip(), answer.strip()
        if not prompt or not answer:
            raise CorpusError(path, f"empty {'prompt' if not prompt else 'reference answer'}", line=lineno)
        pairs.append((prompt, answer))
    return pairs


# --------------------------------------------------------------------------- TREC runs


_TREC_UNSAFE = re.compile(r"[%\s]")


def trec_id(value) -> str:
    """An id as one TREC column: ``%`` and whitespace percent-encoded (RFC 3986 style).

    TREC files are whitespace-separated, and folder and Markdown ids are paths that may
    hold spaces; encoding them keeps every line at 6 columns and is undone exactly by
    :func:`read_trec_run` (``%`` is encoded too, so decoding is never ambiguous).
    """
    return _TREC_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")), str(value))


def write_trec_run(run: Run, out, tag: str = "tablelm") -> int:
    """Write a run as TREC lines ``qid Q0 docid rank score tag``; the one TREC writer.

    Queries come in the run's order; each query's results in the order given,
    ranked from 1. Scores are written with ``repr`` so that reading the file
    back (or trec_eval) sees the same ties. Query and document ids are passed
    through :func:`trec_id`.

    Parameters
    ----------
    run : mapping
        query id -> [(docid, score), ...].
    out : path or text stream
        A file path (written whole) or an open text stream (e.g. ``sys.stdout``).
    tag : str
        The run tag (last column).

    Returns
    -------
    int
        The number of lines written.

    Raises
    ------
    ValueError
        If the tag contains whitespace, or the tag, a query id or a document id is empty.
    """
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag {tag!r} is empty or contains whitespace; TREC runs are whitespace-separated")
    lines = []
    for qid, results in run.items():
        q = trec_id(qid)
        if not q:
            raise ValueError("a query id is empty; TREC lines need one")
        for rank, (docid, score) in enumerate(results, start=1):
            d = trec_id(docid)
            if not d:
                raise ValueError(f"query {qid!r}: a document id is empty; TREC lines need one")
            lines.append(f"{q} Q0 {d} {rank} {float(score)!r} {tag}\n")
    if hasattr(out, "write"):
        out.write("".join(lines))
    else:
        Path(out).write_text("".join(lines), encoding="utf-8")
    return len(lines)


def read_trec_run(path) -> dict[str, list[tuple[str, float]]]:
    """Read a TREC run file (``qid Q0 docid rank score tag``).

    Returns
    -------
    dict
        query id → [(docid, score), ...] in file order, queries in order of
        first appearance, ids decoded as :func:`trec_id` encodes them. The rank
        column is ignored, as trec_eval does.

    Raises
    ------
    CorpusError
        With the line number of a line without 6 columns or with a score that
        is not a number.
    """
    run: dict[str, list[tuple[str, float]]] = {}
    for lineno, line in _open_lines(path):
        if not line.strip():
            continue
        cols = line.split()
        if len(cols) != 6:
            raise CorpusError(path, f"expected 6 columns (qid Q0 docid rank score tag), got {len(cols)}",
                              line=lineno)
        try:
            score = float(cols[4])
        except ValueError:
            raise CorpusError(path, f"score must be a number, got {cols[4]!r}", line=lineno) from None
        run.setdefault(unquote(cols[0]), []).append((unquote(cols[2]), score))
    return run


# --------------------------------------------------------------------------- metrics


def _ndcg(rels: list[int], ideal: list[int], k: int) -> float:
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal[:k]))
    if idcg <= 0:
        return 0.0
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(rels[:k]) if g > 0)
    return dcg / idcg


def _map(rels: list[int], ideal: list[int], k: int) -> float:
    if not ideal:
        return 0.0
    hits, total = 0, 0.0
    for i, g in enumerate(rels[:k]):
        if g > 0:
            hits += 1
            total += hits / (i + 1)
    return total / len(ideal)


def _recall(rels: list[int], ideal: list[int], k: int) -> float:
    if not ideal:
        return 0.0
    return sum(1 for g in rels[:k] if g > 0) / len(ideal)


def _mrr(rels: list[int], ideal: list[int], k: int) -> float:
    for i, g in enumerate(rels[:k]):
        if g > 0:
            return 1.0 / (i + 1)
    return 0.0


def _precision(rels: list[int], ideal: list[int], k: int) -> float:
    return sum(1 for g in rels[:k] if g > 0) / k


#: metric name → (function of (ranked grades, ideal grades, k), trec_eval measure, description).
METRICS = {
    "ndcg": (_ndcg, "ndcg_cut.k", "nDCG at k, gain = grade, log2 discount"),
    "map": (_map, "map_cut.k", "average precision at k, divided by all relevant"),
    "recall": (_recall, "recall.k", "relevant in top k / all relevant"),
    "exhaustivity": (_recall, "recall.k", "share of the relevant entities among the first k cards"),
    "mrr": (_mrr, "recip_rank on a run cut to k", "1 / rank of the first relevant within k"),
    "p": (_precision, "P.k", "relevant in top k / k"),
}

_METRIC_RE = re.compile(r"^([a-z]+)@(\d+)$")


def parse_metric(name: str) -> tuple[str, int]:
    """Split ``"ndcg@10"`` into ``("ndcg", 10)``; raise ValueError naming the known metrics."""
    m = _METRIC_RE.match(name.strip().lower())
    if not m or m.group(1) not in METRICS or int(m.group(2)) < 1:
        known = ", ".join(f"{n}@k" for n in METRICS)
        raise ValueError(f"Unknown metric {name!r}: expected one of {known} with k ≥ 1, e.g. 'ndcg@10'.")
    return m.group(1), int(m.group(2))


def rank_run(results: Iterable[tuple[str, float]], sort: bool = True) -> list[str]:
    """Document ids in the order trec_eval ranks them: score descending, then docid descending.

    Raises ValueError on a document id listed twice (trec_eval would reject the run).
    """
    items = [(str(d), float(s)) for d, s in results]
    seen: set[str] = set()
    for d, _ in items:
        if d in seen:
            raise ValueError(f"document {d!r} appears twice in one query's results")
        seen.add(d)
    if sort:
        # Two stable sorts = key (score desc, docid desc); Python's str order is
        # code-point order, which equals strcmp on the UTF-8 bytes trec_eval compares.
        items.sort(key=lambda x: x[0], reverse=True)
        items.sort(key=lambda x: x[1], reverse=True)
    return [d for d, _ in items]


def evaluate_run(run: Run, qrels: Qrels, metrics: Sequence[str] = DEFAULT_METRICS,
                 sort: bool = True) -> dict:
    """Score a run against qrels with trec_eval's definitions (see the module docstring).

    Parameters
    ----------
    run : mapping
        query id → [(doc id, score), ...]. Queries absent from the qrels are ignored.
    qrels : mapping
        query id → {doc id → grade}, as from :func:`read_qrels`.
    metrics : sequence of str
        Names ``name@k`` with name in :data:`METRICS`.
    sort : bool
        Re-rank each query's results as trec_eval does (score desc, docid desc).
        With False the given order is the ranking.

    Returns
    -------
    dict
        ``{"mean": {metric: value}, "per_query": {qid: {metric: value}},
        "n_queries": int, "n_missing": int}``; ``n_missing`` counts judged
        queries with no results (they score 0 and are in the means).
    """
    parsed = [(name, *parse_metric(name)) for name in metrics]
    per_query: dict[str, dict[str, float]] = {}
    n_missing = 0
    for qid, judged in qrels.items():
        judged = {str(d): int(g) for d, g in judged.items()}
        ideal = sorted((g for g in judged.values() if g > 0), reverse=True)
        results = run.get(qid)
        if results is None:
            results = run.get(str(qid), ())  # tolerate int keys in one of the two
        if not results:
            n_missing += 1
        ranked = rank_run(results, sort=sort)
        rels = [judged.get(d, 0) for d in ranked]
        per_query[qid] = {name: METRICS[base][0](rels, ideal, k) for name, base, k in parsed}
    mean = {name: (float(np.mean([v[name] for v in per_query.values()])) if per_query else 0.0)
            for name, _, _ in parsed}
    return {"mean": mean, "per_query": per_query, "n_queries": len(per_query), "n_missing": n_missing}


# --------------------------------------------------------------------------- paired significance


def paired_test(a: Sequence[float], b: Sequence[float], n_resamples: int = 10000, seed: int = 0,
                tie: float = 1e-9) -> dict:
    """Paired comparison of two systems' per-query scores (same queries, same order).

    Two tests of the null hypothesis "the systems are exchangeable on each query":

    * the **paired randomization test** (Fisher's sign-flip permutation test, the
      test Smucker, Allan & Carterette 2007, "A comparison of statistical
      significance tests for information retrieval evaluation", CIKM, recommend
      for IR): each per-query delta d_i = a_i - b_i keeps or flips its sign at
      random; the two-sided p-value is the share of ``n_resamples`` sign
      assignments whose |mean| is at least the observed |mean(d)|, counted as
      (hits + 1) / (n_resamples + 1) so that it is never 0 (Phipson & Smyth 2010).
      The random signs come from ``numpy.random.default_rng(seed)``: the same
      inputs give the same p-value.
    * the **paired t-test**: t = mean(d) / (sd(d) / sqrt(n)) with n - 1 degrees
      of freedom (sd with Bessel's correction), two-sided p from Student's t.

    Parameters
    ----------
    a, b : sequence of float
        Per-query scores of system A and of system B (the baseline).
    n_resamples : int
        Random sign assignments of the randomization test.
    seed : int
        Seed of the sign assignments.
    tie : float
        |d_i| at most this is a tie (neither a win nor a loss for A).

    Returns
    -------
    dict
        ``n``, ``mean_a``, ``mean_b``, ``delta`` (mean(d)), ``wins`` / ``ties`` /
        ``losses`` (queries where A is above / equal to / below B),
        ``p_randomization``, ``p_ttest``, ``t`` and ``n_resamples``. With all
        deltas zero both p-values are 1.

    Raises
    ------
    ValueError
        If the two sequences differ in length or are empty.
    """
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if xa.shape != xb.shape or xa.ndim != 1:
        raise ValueError(f"paired scores must be two sequences of the same length, got {xa.shape} and {xb.shape}")
    n = len(xa)
    if n == 0:
        raise ValueError("no queries to compare: the two runs share no judged query")
    d = xa - xb
    observed = abs(d.mean())
    out = {"n": n, "mean_a": float(xa.mean()), "mean_b": float(xb.mean()), "delta": float(d.mean()),
           "wins": int((d > tie).sum()), "ties": int((np.abs(d) <= tie).sum()), "losses": int((d < -tie).sum()),
           "n_resamples": int(n_resamples)}
    if np.all(np.abs(d) <= tie):
        return dict(out, p_randomization=1.0, p_ttest=1.0, t=0.0)
    rng = np.random.default_rng(seed)
    hits, done = 0, 0
    chunk = max(1, 2_000_000 // n)  # bounded memory: a chunk of sign rows at a time
    while done < n_resamples:
        m = min(chunk, n_resamples - done)
        signs = rng.integers(0, 2, size=(m, n), dtype=np.int8) * 2 - 1
        # a relative tolerance so that the identity assignment always counts as a hit
        hits += int((np.abs(signs @ d) / n >= observed * (1 - 1e-12)).sum())
        done += m
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    if sd > 0:
        from scipy import stats  # SciPy: a dependency; imported here to keep query start-up light

        t = float(d.mean() / (sd / math.sqrt(n)))
        p_t = float(2 * stats.t.sf(abs(t), df=n - 1))
    else:  # every delta equal and non-zero: no variance, the difference is certain
        t, p_t = math.copysign(math.inf, d.mean()), 0.0
    return dict(out, p_randomization=(hits + 1) / (n_resamples + 1), p_ttest=p_t, t=t)


@dataclass
class Comparison:
    """Run A against run B (the baseline) on the same judged queries.

    ``tests`` maps each metric to the result of :func:`paired_test` (A - B);
    ``per_query`` maps each judged query id to ``{metric: [a, b, a - b]}``.
    """

    metrics: list[str]
    tests: dict[str, dict]
    per_query: dict[str, dict[str, list[float]]]

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def largest(self, metric: str, n: int = 5) -> tuple[list, list]:
        """The ``n`` queries A wins most and loses most on ``metric``: ([(qid, delta)], [(qid, delta)])."""
        deltas = [(q, v[metric][2]) for q, v in self.per_query.items()]
        wins = sorted((x for x in deltas if x[1] > 0), key=lambda x: (-x[1], x[0]))[:n]
        losses = sorted((x for x in deltas if x[1] < 0), key=lambda x: (x[1], x[0]))[:n]
        return wins, losses


def compare_runs(run_a: Run, run_b: Run, qrels: Qrels, metrics: Sequence[str] = ("ndcg@10", "recall@100"),
                 n_resamples: int = 10000, seed: int = 0) -> Comparison:
    """Per-query deltas and paired tests of run A against run B on every judged query.

    Both runs are scored with :func:`evaluate_run` (a judged query missing from a
    run scores 0 there, as with ``trec_eval -c``), then each metric's per-query
    scores go through :func:`paired_test`.

    Raises
    ------
    ValueError
        If neither run has a result for any judged query (usually the wrong run
        file or qrels).
    """
    if not any(run_a.get(q) or run_b.get(q) for q in qrels):
        raise ValueError("neither run has results for any judged query; are the runs and qrels "
                         "from the same collection?")
    ea, eb = evaluate_run(run_a, qrels, metrics), evaluate_run(run_b, qrels, metrics)
    qids = list(ea["per_query"])
    tests = {m: paired_test([ea["per_query"][q][m] for q in qids], [eb["per_query"][q][m] for q in qids],
                            n_resamples=n_resamples, seed=seed) for m in metrics}
    per_query = {q: {m: [ea["per_query"][q][m], eb["per_query"][q][m],
                         ea["per_query"][q][m] - eb["per_query"][q][m]] for m in metrics} for q in qids}
    return Comparison(metrics=list(metrics), tests=tests, per_query=per_query)


# --------------------------------------------------------------------------- running a model


@dataclass
class EvalReport:
    """What :func:`evaluate_model` measured.

    ``metrics`` are means over the judged queries; ``per_query`` the values per
    query; latencies are per ``model.search`` call in milliseconds (None when
    the queries were sent in one ``search_many`` call); ``queries_per_s`` is the
    number of queries divided by the total search time.
    """

    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    n_queries: int
    n_missing: int
    queries_per_s: float
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    total_s: float
    run: dict[str, list[tuple[str, float]]] = field(repr=False)

    def to_dict(self, with_run: bool = False) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "run"}
        if with_run:
            d["run"] = self.run
        return d


def evaluate_model(model, queries: Mapping[str, str], qrels: Qrels, k: int = 100,
                   metrics: Sequence[str] = DEFAULT_METRICS, per_query_timing: bool = True,
                   **params) -> EvalReport:
    """Run the judged queries through a model and score the results.

    Parameters
    ----------
    model
        Anything with ``search(query, k, **params)`` and, for
        ``per_query_timing=False``, ``search_many(queries, k, **params)``.
    queries : mapping
        query id → text (e.g. :func:`read_queries`). Only ids in ``qrels`` are sent.
    qrels : mapping
        As from :func:`read_qrels`.
    k : int
        Results asked per query; must cover the largest metric cutoff.
    per_query_timing : bool
        True: one ``search`` call per query, each timed with
        ``time.perf_counter`` (gives p50/p95 latency). False: one
        ``search_many`` call, timed as a whole (throughput only).
    **params
        Query parameters passed to the model unchanged.

    Raises
    ------
    ValueError
        If a judged query id has no text in ``queries`` (usually the wrong
        queries file for these qrels), or ``k`` is below a metric's cutoff.
    """
    max_cut = max(parse_metric(m)[1] for m in metrics)
    if k < max_cut:
        raise ValueError(f"k={k} is below the largest metric cutoff ({max_cut}); pass k={max_cut} or more.")
    missing = [q for q in qrels if q not in queries]
    if missing:
        raise ValueError(f"{len(missing)} judged query ids have no text in the queries "
                         f"(first: {missing[:5]}); are the queries and qrels from the same collection?")
    judged = {q: queries[q] for q in qrels}
    latencies = None
    if per_query_timing:
        run, latencies = {}, []
        for qid, text in judged.items():
            t0 = time.perf_counter()
            run[qid] = list(model.search(text, k=k, **params))
            latencies.append(time.perf_counter() - t0)
        total = float(sum(latencies))
    else:
        t0 = time.perf_counter()
        run = {q: list(r) for q, r in model.search_many(judged, k=k, **params).items()}
        total = time.perf_counter() - t0
    scores = evaluate_run(run, qrels, metrics)
    lat = np.asarray(latencies, dtype=float) * 1000.0 if latencies else None
    return EvalReport(
        metrics=scores["mean"], per_query=scores["per_query"], n_queries=scores["n_queries"],
        n_missing=scores["n_missing"],
        queries_per_s=(len(judged) / total) if total > 0 else math.inf,
        latency_ms_p50=float(np.percentile(lat, 50)) if lat is not None else None,
        latency_ms_p95=float(np.percentile(lat, 95)) if lat is not None else None,
        total_s=total, run=run,
    )


# --------------------------------------------------------------------------- prompt coverage

#: Small English stopword list for the coverage vocabulary: function words only,
#: so that the content words of a reference answer are what is counted.
COVERAGE_STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her here
hers him his how i if in into is it its itself just may me might more most must my no nor not of off on once only
or other our ours out over own same she should so some such than that the their theirs them then there these
they this those through to too under until up upon us very was we were what when where which while who whom why
will with within would you your yours e g eg ie etc include includes including
""".split())

_WORD_RE = re.compile(r"\w+", re.UNICODE)


def _vocabulary(text: str, stemmer) -> set[str]:
    words = [w for w in _WORD_RE.findall(text.lower()) if w not in COVERAGE_STOPWORDS and w != "_"]
    return set(stemmer.stemWords(words))


@dataclass
class CoverageReport:
    """What :func:`prompt_coverage` measured.

    ``mean_coverage`` is the mean over prompts whose reference answer has at
    least one content word; ``per_prompt`` holds, per pair, the prompt, the
    coverage, the missing stems and the ids of the top-k entities.
    """

    mean_coverage: float
    k: int
    per_prompt: list[dict]

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def prompt_coverage(model, prompts: Sequence[tuple[str, str]], k: int = 10, **params) -> CoverageReport:
    """Share of each reference answer's content vocabulary found in the top-k entities.

    For each ``(prompt, reference)`` pair, ``model.search(prompt, k, **params)``
    gives the top-k entity ids; their ``title`` and ``text`` (from
    ``model.entity(id)``) form the retrieved text. Both sides are lowercased,
    split into word tokens, stripped of :data:`COVERAGE_STOPWORDS` and stemmed
    with the Snowball English stemmer (PyStemmer). Coverage = |reference stems
    found| / |reference stems|. It measures whether the answer's facts are on
    the cards, not whether they are ranked well.
    """
    import Stemmer  # PyStemmer: a tablelm dependency, imported here to keep the module light

    stemmer = Stemmer.Stemmer("english")
    per_prompt: list[dict] = []
    for prompt, reference in prompts:
        ids = [d for d, _ in model.search(prompt, k=k, **params)]
        texts = []
        for d in ids:
            ent = model.entity(d)
            texts.append(f"{ent.title} {ent.text}")
        want = _vocabulary(reference, stemmer)
        have = _vocabulary(" ".join(texts), stemmer)
        coverage = len(want & have) / len(want) if want else None
        per_prompt.append({"prompt": prompt, "reference": reference, "coverage": coverage,
                           "missing": sorted(want - have), "ids": ids})
    values = [p["coverage"] for p in per_prompt if p["coverage"] is not None]
    return CoverageReport(mean_coverage=float(np.mean(values)) if values else 0.0, k=k, per_prompt=per_prompt)
