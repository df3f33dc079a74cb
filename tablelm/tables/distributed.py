"""The build on Dask: corpus shards counted on a ``dask.distributed`` cluster, reduced by key.

The same two passes as the bounded-memory build (``model._count_and_save_sharded``), with the
counting on Dask workers and the client doing what only it can do (reading the corpus, writing
the model):

1. The client reads the corpus (its readers: a bad record fails here, naming file and line)
   in consecutive shards. Each shard's entity-store lines (the bytes the model stores anyway,
   zlib-compressed) go to the spooled entity store and, inside a task, to a worker, which counts
   the shard's n-grams (stable 64-bit hashes) and cuts them into :data:`HASH_RANGES` hash ranges.
   One task per range sums the range over every shard and keeps the dictionary's part of it:
   a reduce by key, with no worker holding the n-gram counts of the whole corpus.
2. The dictionary (sorted hashes) is broadcast to the workers; every shard goes out again
   (from the client's spool) and comes back as a :class:`~tablelm.tables.counts.Partial` in its
   own id space. While the client would get more than :data:`CLIENT_FAN_IN` partials,
   neighbouring ones are merged on the workers (a tree of :func:`~tablelm.tables.counts.merge`
   calls, groups bounded by the per-worker memory budget); the client gathers what is left one
   partial at a time, spills it to disk and merges it k-way, like the one-machine sharded
   build, then assembles and saves the model.

The model directory is the same, byte for byte, as the single-process build's: shards are the
read order's consecutive runs, every result is placed by its shard's position (never by the
order tasks finish in), and :func:`merge` is canonical (its ids are a total order on the keys),
so the tree's shape does not matter.

What travels: each shard's text twice (compressed, client → scheduler → worker, once per pass),
its n-gram hashes between workers, the dictionary once per worker, the partials between workers
(the merges) and once to the client. Shard data rides inside its task, so the scheduler can rerun
the task on another worker when one dies; a task that kills workers repeatedly, or fails, stops
the build with an error naming the shard's records, before anything is written.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import itertools
import json
import os
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path

import numpy as np

from ..errors import TablelmError
from . import spill
from .build import content_hashes, count_partial, dictionary_from_counts, entity_records, gc_paused, sum_by_hash
from .counts import Partial, assemble, merge
from .spill import SHARDED_MMAP_THRESHOLD

#: hash ranges of the dictionary reduce (pass 1): each range task sums about 1/HASH_RANGES of
#: the distinct n-grams of the corpus
HASH_RANGES = 16
#: the largest shard of a Dask build, in characters (about 256 MB of counting at
#: model.BUILD_BYTES_PER_CHAR): small enough that a mid-sized corpus keeps every worker busy
SHARD_CHARS = 1 << 21
#: partials merged by one worker task at most
FAN_IN = 8
#: the client merges at most this many partials: more shards are first merged in groups of
#: FAN_IN on the workers (each level of that tree is one more pass over the counts, so a corpus
#: of a few shards goes to the client's k-way merge directly, as in the one-machine build)
CLIENT_FAN_IN = 16
INSTALL_HINT = "pip install 'tablelm[dask]' (or: pip install 'dask[distributed]')"


# --------------------------------------------------------------------------- on the workers


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """A hash of the code that counts (every file of the tablelm package but ``interfaces/``):
    a worker that runs other code than the client could not give the same tables."""
    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(pkg).as_posix()
        if not rel.startswith("interfaces/"):
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _identity() -> dict:
    from ..model import __version__

    return {"version": __version__, "code": code_fingerprint(), "path": str(Path(__file__).resolve().parents[1]),
            "python": sys.version.split()[0]}


def _check_worker(expected: dict) -> None:
    got = _identity()
    if (got["version"], got["code"]) != (expected["version"], expected["code"]):
        raise TablelmError(
            f"A Dask worker runs another tablelm ({got['version']} at {got['path']}, code {got['code']}) than the "
            f"client ({expected['version']} at {expected['path']}, code {expected['code']}); its counts could "
            "differ. Install the same tablelm on every worker machine (and restart the workers), or run the "
            "workers from the same checkout (PYTHONPATH).")


def _entities(packed: bytes) -> list:
    """A shard's entities from its compressed entity-store lines (the round trip of the sharded build)."""
    from ..corpus.entity import TextEntity

    return [TextEntity.from_dict(json.loads(line)) for line in zlib.decompress(packed).split(b"\n")[:-1]]


def _range_bounds(ranges: int) -> np.ndarray:
    return np.array([r * (1 << 64) // ranges for r in range(1, ranges)], dtype=np.uint64)


def count_ngrams_task(packed: bytes, analyzer, params: dict, expected: dict, ranges: int) -> list:
    """Pass 1 on a worker: the shard's n-gram counts, cut into ``ranges`` hash ranges."""
    _check_worker(expected)
    with gc_paused(SHARDED_MMAP_THRESHOLD):
        h, n, kg = count_partial(_entities(packed), analyzer, params, ngrams_only=True)
    cuts = np.concatenate(([0], np.searchsorted(h, _range_bounds(ranges)), [len(h)]))
    return [(h[lo:hi].copy(), n[lo:hi].copy(), kg[lo:hi].copy()) for lo, hi in zip(cuts[:-1], cuts[1:])]


def pick(pieces: list, r: int):
    return pieces[r]


def constant(value):
    """A value sent inside its task: the scheduler keeps it, so a worker that dies with the
    result loses nothing (scattered data would be lost for good)."""
    return value


def dictionary_range_task(min_count: int, *pieces) -> np.ndarray:
    """Pass 1's reduce by key: one hash range summed over every shard, the dictionary's part of it."""
    with gc_paused(SHARDED_MMAP_THRESHOLD):
        return dictionary_from_counts(sum_by_hash(*zip(*pieces)), min_count)


def count_shard_task(packed: bytes, analyzer, params: dict, dictionary: np.ndarray, expected: dict) -> Partial:
    """Pass 2 on a worker: the shard's partial counts under the corpus's dictionary."""
    _check_worker(expected)
    with gc_paused(SHARDED_MMAP_THRESHOLD):
        return count_partial(_entities(packed), analyzer, params, dictionary=dictionary)


def merge_task(*parts: Partial) -> Partial:
    """Neighbouring partials (consecutive shards, in order) merged into one."""
    with gc_paused(SHARDED_MMAP_THRESHOLD):
        pieces, lo = [], 0
        for p in parts:
            pieces.append((p, 1, np.arange(lo, lo + p.n_docs)))
            lo += p.n_docs
        return merge(pieces, lo)


def partial_nbytes(p: Partial) -> int:
    """About the memory a partial takes (its arrays, ~64 bytes per string)."""
    total = 0
    for value in vars(p).values():
        if isinstance(value, np.ndarray):
            total += value.nbytes
        elif isinstance(value, list):
            total += 64 * len(value)
    for names, indptr, ids in p.labels.values():
        total += 64 * len(names) + np.asarray(indptr).nbytes + np.asarray(ids).nbytes
    return total


# --------------------------------------------------------------------------- on the client


def _import_distributed():
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError as e:
        raise TablelmError(f"The Dask engine needs dask.distributed, which cannot be imported here ({e}). "
                           f"Install it with: {INSTALL_HINT}; or build without --engine dask.") from None
    return distributed


@contextlib.contextmanager
def dask_client(scheduler=None, *, n_workers: int | None = None):
    """A ``distributed.Client``: of the scheduler at ``scheduler`` (an address such as
    ``tcp://host:8786``, or a Client, used as is), or of a new ``LocalCluster`` sized to the
    machine (one single-threaded worker process per core), closed on exit."""
    distributed = _import_distributed()
    if isinstance(scheduler, distributed.Client):
        yield scheduler
        return
    if scheduler is not None:
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise TablelmError(f"scheduler must be the address of a Dask scheduler (tcp://HOST:8786). "
                               f"Got {scheduler!r}.")
        try:
            client = distributed.Client(scheduler, timeout="10s", set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise TablelmError(f"Cannot connect to the Dask scheduler at {scheduler} ({e}). Start one with "
                               "`dask scheduler` and workers with `dask worker ADDRESS` (docs/distributed.md), "
                               "or leave --scheduler out for a local cluster.") from None
        with client:
            yield client
        return
    import logging

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    # the workers import the tablelm this client runs, wherever it comes from (a checkout, a venv)
    here = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])
    with warnings.catch_warnings():  # its HTTP server takes another port when 8787 is in use: fine
        warnings.filterwarnings("ignore", "Port .* is already in use", UserWarning)
        cluster = distributed.LocalCluster(n_workers=n_workers or cores, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR,
                                           env={"PYTHONPATH": path})
    try:
        with distributed.Client(cluster, set_as_default=False) as client:
            yield client
    finally:
        cluster.close()


class _Failed(TablelmError):
    pass


def _shard_where(sources: list) -> str:
    """The records of a shard, for an error: 'corpus.jsonl:1 to corpus.jsonl:500'."""
    first, last = (sources[0] or "?"), (sources[-1] or "?")
    return first if first == last else f"{first} to {last}"


def _result(future, what: str):
    """A task's result; its failure as a TablelmError that names the shard's records."""
    distributed = _import_distributed()
    try:
        return future.result()
    except TablelmError:
        raise
    except (distributed.KilledWorker, distributed.client.FutureCancelledError,
            distributed.client.FuturesCancelledError) as e:
        how = ("killed the workers that ran it, several times" if isinstance(e, distributed.KilledWorker)
               else "was lost: the workers that held it died or left the cluster")
        raise _Failed(f"The Dask build stopped: counting {what} {how}. Most often a worker ran out of "
                      "memory: give the workers more memory (dask worker --memory-limit) or lower --memory, "
                      "which also makes the shards smaller. No model was written.") from None
    except Exception as e:
        raise _Failed(f"The Dask build stopped: counting {what} failed on a worker ({type(e).__name__}: {e}). "
                      "No model was written.") from e


class _Window:
    """At most ``limit`` counting tasks in flight: the scheduler holds the shards it is sent."""

    def __init__(self, limit: int, on_done):
        self.limit, self.on_done = limit, on_done
        self.pending: dict = {}

    def add(self, future, info) -> None:
        self.pending[future] = info
        if len(self.pending) >= self.limit:
            self.drain(self.limit - 1)

    def drain(self, keep: int = 0) -> None:
        distributed = _import_distributed()
        while len(self.pending) > keep:
            try:
                done, _ = distributed.wait(list(self.pending), return_when="FIRST_COMPLETED")
            except distributed.client.FuturesCancelledError:  # lost with the workers that held them
                done = [f for f in self.pending if f.status != "pending"]
            for f in sorted(done, key=lambda f: self.pending[f][0]):
                info = self.pending.pop(f)
                if f.status != "finished":
                    _result(f, info[1])
                self.on_done(f, info)


def count_and_save(shards, analyzer, bp: dict, corpus: dict, out_dir, *, scheduler=None,
                   memory_mb: float = 2048, progress: bool = False, report: dict | None = None,
                   t0: float | None = None, profile: dict | None = None):
    """The build of ``shards`` (an iterable of lists of entities, in corpus order) on Dask; the Model.

    ``memory_mb`` is the per-worker budget: a shard's counting stays within it (shards of at most
    ``memory_mb`` MB / ``BUILD_BYTES_PER_CHAR`` characters, and :data:`SHARD_CHARS`), and so does
    a merge on a worker.
    """
    import dask

    from .. import model as M
    from ..query.agents import entity_agents

    distributed = _import_distributed()
    t_start = time.perf_counter()
    t0 = t_start if t0 is None else t0
    shard_chars = max(1, min(int(memory_mb * 2**20 / M.BUILD_BYTES_PER_CHAR), SHARD_CHARS))
    entities = itertools.chain.from_iterable(shards)
    params = dict(bp)
    min_count = int(params["min_multitoken_count"])
    expected = _identity()
    worker_analyzer = copy.copy(analyzer)
    worker_analyzer._cache = {}  # the client's word cache stays here
    with contextlib.ExitStack() as stack:
        spool = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tablelm-dask-")))
        client = stack.enter_context(dask_client(scheduler))
        stack.enter_context(client.as_current())  # distributed.wait finds it
        # a shard travels inside its task (so that a dead worker's task can run elsewhere)
        stack.enter_context(dask.config.set({"distributed.admin.large-graph-warning-threshold": "4GB"}))
        try:
            client.wait_for_workers(1, timeout=60)
        except (TimeoutError, OSError):
            raise TablelmError(f"No Dask worker joined the scheduler at {client.scheduler.address} in 60 s. "
                               "Start workers with `dask worker ADDRESS` (docs/distributed.md).") from None
        threads = max(1, sum(client.nthreads().values()))

        # ---- pass 1: read, spool the entity store, count n-grams on the workers
        bar = M._bar(progress, "reading, counting n-grams", "entities")
        window = _Window(2 * threads, lambda f, info: bar.update(info[2]))
        spans, sources, n = [], [], 0
        pieces_of_offsets: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
        agents: list[np.ndarray] = []
        content: list[np.ndarray] = []
        ids: list[str] = []
        pieces = []  # per shard: the futures of its HASH_RANGES pieces
        with open(spool / "entities.jsonl", "wb") as store:
            for k, shard in enumerate(M.shards_of(entities, shard_chars)):
                blob, off = entity_records(shard)
                store.write(blob)
                pieces_of_offsets.append(off[1:] + pieces_of_offsets[-1][-1])
                agents.append(entity_agents(shard))
                content.append(content_hashes(shard))
                ids += [json.dumps(e.id, ensure_ascii=False) for e in shard]
                spans.append((n, n + len(shard)))
                sources.append(_shard_where([shard[0].source, shard[-1].source]))
                n += len(shard)
                what = f"shard {k + 1} ({len(shard):,} entities: {sources[-1]})"
                f = client.submit(count_ngrams_task, zlib.compress(blob, 1), worker_analyzer, params, expected,
                                  HASH_RANGES, key=f"tablelm-ngrams-{k}-{os.urandom(4).hex()}", pure=False)
                pieces.append([client.submit(pick, f, r, pure=False) for r in range(HASH_RANGES)])
                window.add(f, (k, what, len(shard)))
                del shard, blob
            window.drain()
        bar.close()
        if not spans:
            raise TablelmError("No entities to build on Dask.")
        t_read = time.perf_counter()
        phases = {"read and count n-grams": t_read - t_start}
        ranges = [client.submit(dictionary_range_task, min_count, *(p[r] for p in pieces), pure=False)
                  for r in range(HASH_RANGES)]
        del pieces
        parts_of_dict = [_result(f, f"the dictionary (hash range {r + 1} of {HASH_RANGES})")
                         for r, f in enumerate(ranges)]
        del ranges
        dictionary = np.concatenate(parts_of_dict)
        del parts_of_dict
        dict_future = client.submit(constant, dictionary, key=f"tablelm-dictionary-{os.urandom(4).hex()}")
        del dictionary
        offsets = np.concatenate(pieces_of_offsets)
        phases["dictionary"] = time.perf_counter() - t_read

        # ---- pass 2: every shard again, against the dictionary
        bar = M._bar(progress, "counting", "entities", total=n)
        # few enough shards for the client's merge: each partial comes to the client (and leaves the
        # cluster) as soon as it is counted, while the workers count the next ones; more: the tree below
        direct = len(spans) <= CLIENT_FAN_IN
        spilled: list = [None] * len(spans)

        def counted(f, info):
            k, what, m = info
            if direct:
                spilled[k] = (M._spill(_result(f, what), spool / f"part-{k}"), 1, np.arange(*spans[k]))
            bar.update(m)

        window = _Window(2 * threads, counted)
        parts: list = []
        with open(spool / "entities.jsonl", "rb") as spooled:
            for k, (lo, hi) in enumerate(spans):
                spooled.seek(int(offsets[lo]))
                blob = spooled.read(int(offsets[hi] - offsets[lo]))
                what = f"shard {k + 1} ({hi - lo:,} entities: {sources[k]})"
                f = client.submit(count_shard_task, zlib.compress(blob, 1), worker_analyzer, params, dict_future,
                                  expected, key=f"tablelm-shard-{k}-{os.urandom(4).hex()}", pure=False)
                if not direct:
                    parts.append((f, what, hi - lo))
                window.add(f, (k, what, hi - lo))
                del f
            window.drain()
        del dict_future
        phases["count"] = time.perf_counter() - t_start - sum(phases.values())

        # ---- the tree: neighbours merged on the workers while a group fits the budget
        bar.set_postfix_str("merging on the workers")
        budget = memory_mb * 2**20 / 4  # a merge holds its inputs, its output and temporaries
        levels = 0
        while len(parts) > CLIENT_FAN_IN:
            sizes = [_result(client.submit(partial_nbytes, f, pure=False), what) for f, what, _ in parts]
            groups: list[list] = []
            cur: list = []
            cur_size = 0
            for part, size in zip(parts, sizes):
                if cur and (cur_size + size > budget or len(cur) >= FAN_IN):
                    groups.append(cur)
                    cur, cur_size = [], 0
                cur.append(part)
                cur_size += size
            groups.append(cur)
            if all(len(g) == 1 for g in groups):
                break
            levels += 1
            merged = []
            for g in groups:
                if len(g) == 1:
                    merged.append(g[0])
                    continue
                what = f"the merge of {g[0][1]} to {g[-1][1]}"
                merged.append((client.submit(merge_task, *(f for f, _, _ in g), pure=False), what,
                               sum(m for _, _, m in g)))
            parts = merged
            del merged, groups

        with contextlib.suppress(distributed.client.FuturesCancelledError):  # _result says why, below
            distributed.wait([f for f, _, _ in parts])  # the tree, for the timings
        phases["merge on the workers"] = time.perf_counter() - t_start - sum(phases.values())

        # ---- the client: gather what is left one partial at a time, spill, merge k-way, assemble
        bar.set_postfix_str("merging")
        if not direct:
            spilled.clear()
            lo = 0
            for i, (f, what, m) in enumerate(parts):
                part = _result(f, what)
                parts[i] = None  # the cluster may drop it now
                spilled.append((M._spill(part, spool / f"part-{i}"), 1, np.arange(lo, lo + m)))
                lo += m
                del part, f
        n_workers = len(client.nthreads())
        whole = merge(spilled, n, spool=spool)  # range by range onto the spool, as in the local sharded build
        spilled.clear()
        spill.trim()
        tables = assemble(whole, spool=spool)
        del whole
        spill.trim()
        bar.close()
        phases["merge and assemble"] = time.perf_counter() - t_start - sum(phases.values())
        tables.arrays.update({"entity_offsets": offsets, "entity_agents": np.concatenate(agents),
                              "entity_content": np.concatenate(content)})
        tables.strings["ids"] = ids
        tables.blobs["entities.jsonl"] = spool / "entities.jsonl"
        if report is not None:
            report.update(shards=len(spans), engine="dask", workers=n_workers, merge_levels=levels,
                          dask_seconds={k: round(v, 3) for k, v in phases.items()})
        return M._save_counted(tables, analyzer, bp, dict(corpus, entities=n), out_dir, report=report, t0=t0,
                               t_read=t_read, profile=profile)
