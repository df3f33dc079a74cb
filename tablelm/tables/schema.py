"""The one table schema, and the access layer that query and answer code read through.

Every table of a model is declared once in :data:`SCHEMA`: its name, dtype, shape (in
named dimensions), what it holds, and how two partial versions of it merge:

``count``
    raw counts: partial versions merge by summing equal keys; add/delete add and
    subtract them. Stored in the narrowest unsigned dtype that holds the largest
    count (``dtype="uint"``), so the width depends only on the data.
``key``
    what the counts are keyed by (multitoken words, stems, labels, ids): partial
    versions merge by the union of keys, in the canonical order (sorted).
``index``
    CSR row pointers and column ids that locate the counts: rebuilt from the keys
    after a merge.
``derived``
    recomputed from the other tables after a merge (transposed index, forward index,
    sorted n-gram hashes); never merged itself.
``entity``
    one row per entity: partial versions concatenate in corpus order.

Derived *weights* (idf, PMI, BM25 impacts) are not tables: they are computed at query
time from the counts, so that counts stay exact under add and delete.

A format change touches this module and the build; :class:`TableSet` checks on load
that every declared table is there with its dtype kind and consistent sizes (cheap:
no data is read), and gives query code named access instead of string lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from ..errors import ModelError
from . import spill
from .codecs import Encoded
from .hashing import hash_rows, sort_rows

FIELDS = ("text", "title", "category", "tags", "meta")
CONTEXTS = ("category", "tags", "titles", "related")


@dataclass(frozen=True)
class Spec:
    """One table: ``dims`` names each axis (``"multitokens+1"`` is one more than that size)."""

    name: str
    kind: str  # count | key | index | derived | entity | strings | blob
    dtype: str | None  # numpy dtype, "uint" (narrowest unsigned that fits), None for strings and blobs
    dims: tuple
    merge: str
    doc: str
    collapses: bool = False  # stored as [0] when its context has no labels (no index for nothing)
    #: how the file is encoded when that saves space (tables/codecs.py; chosen at save from the values):
    #: "dv" delta-varint blocks (ids ascending within rows), "bp" bit-packed counts with escapes,
    #: "dz" zlib of the deltas, read in full (tables only updates read), "fwd"/"fwdm" not stored (recomputed),
    #: "bc" each column of a 2-D count table bit-packed, "fb" fixed bits (ids in no order), "mw" mt_words,
    #: "db" a monotone index as its steps bit-packed (decoded in full on first use), "br" counts in ranked bits
    #: (or "bp", whichever is smaller)
    codec: str | None = None
    #: may be absent (a model of an older format: readers compute what it holds)
    optional: bool = False


def _context_specs(name: str) -> list[Spec]:
    lab = f"labels_{name}"
    return [
        Spec(lab, "key", None, (lab,), "union, sorted", f"the distinct {name} labels, sorted"),
        Spec(f"ctx_{name}_indptr", "index", "int", ("multitokens+1",), "rebuilt",
             f"row pointers of multitoken -> {name} label counts", collapses=True, codec="db"),
        Spec(f"ctx_{name}_labels", "index", "int32", (f"ctx_{name}",), "rebuilt", "label ids, sorted within a row",
             codec="dv"),
        Spec(f"ctx_{name}_counts", "count", "uint", (f"ctx_{name}",), "sum by (multitoken, label)",
             f"summed term frequency of the multitoken in entities with that {name} label (metadata excluded)",
             codec="br"),
        Spec(f"ctx_{name}_totals", "derived", "uint", (lab,), "rebuilt",
             f"the counts of each {name} label summed over every multitoken (the column totals of the PMI): "
             "a query reads them instead of summing the whole table", codec="br", optional=True),
        Spec(f"doc_{name}_indptr", "entity", "int", ("entities+1",), "concatenate",
             f"row pointers of entity -> its {name} labels", collapses=True, codec="db"),
        Spec(f"doc_{name}_labels", "entity", "int32", (f"doc_{name}",), "concatenate (relabelled)",
             "label ids of each entity, sorted", codec="fb"),
    ]


SCHEMA: tuple[Spec, ...] = tuple([
    # ---- the dictionary
    Spec("stems", "key", None, ("stems",), "union, sorted", "every stem of the corpus, sorted"),
    Spec("display", "derived", None, ("stems",), "recomputed from surface counts",
         "the most frequent surface word of each stem (ties: alphabetical), shown to users"),
    Spec("mt_words", "key", "int32", ("multitokens", 4), "union, sorted",
         "stem ids of each multitoken, padded with -1; ordered by length, then words", codec="mw"),
    Spec("mt_counts", "count", "uint", ("multitokens", 5), "sum by multitoken",
         "occurrences of each multitoken per field (text, title, category, tags, meta)", codec="bc"),
    # ---- postings
    Spec("post_indptr", "index", "int", ("multitokens+1",), "rebuilt", "row pointers of multitoken -> postings",
         codec="db"),
    Spec("post_docs", "index", "int32", ("postings",), "rebuilt", "entity of each posting, ascending in a row",
         codec="fb"),
    Spec("post_tf", "count", "uint", ("postings", 5), "sum by (multitoken, entity)",
         "term frequency of the multitoken in the entity, per field (capped at 65535)", codec="bc"),
    Spec("doc_len", "entity", "uint", ("entities", 5), "concatenate", "words per field of each entity", codec="bc"),
    Spec("fwd_indptr", "derived", "int", ("entities+1",), "rebuilt", "forward index: entity -> its postings",
         codec="db"),
    Spec("fwd_mt", "derived", "int32", ("postings",), "rebuilt", "multitoken of each forward entry", codec="fwdm"),
    Spec("fwd_post", "derived", "int", ("postings",), "rebuilt", "posting index of each forward entry",
         codec="fwd"),
    # ---- pairs (each unordered pair once, under its smaller id)
    Spec("pair_indptr", "index", "int", ("multitokens+1",), "rebuilt", "row pointers of the smaller id's pairs",
         codec="db"),
    Spec("pair_cols", "index", "int32", ("pairs",), "rebuilt", "the larger id of each pair, ascending in a row",
         codec="dv"),
    Spec("pair_adj", "count", "uint", ("pairs",), "sum by pair", "adjacent co-occurrences (gap 0)", codec="br"),
    Spec("pair_ctx", "count", "uint", ("pairs",), "sum by pair", "contextual co-occurrences (gap 1..max_dist)",
         codec="br"),
    Spec("pair_t_indptr", "derived", "int", ("multitokens+1",), "rebuilt",
         "transposed index: row pointers by the larger id", codec="dv"),
    Spec("pair_t_order", "derived", "int", ("pairs",), "rebuilt", "pair entries of each larger id, in row order",
         codec="dv"),
    # ---- sorted n-grams
    Spec("sng_hash", "derived", "uint64", ("sorted_ngrams",), "rebuilt",
         "hash of the sorted words of each multitoken of 2+ words, ascending"),
    Spec("sng_mt", "derived", "int32", ("sorted_ngrams",), "rebuilt", "the multitoken of each hash", codec="fb"),
    # ---- the count store: what add/delete need beyond the tables a query reads
    Spec("stem_hash", "key", "uint64", ("stems",), "union", "a stable 64-bit hash of each stem's string"),
    Spec("surfaces", "key", None, ("surfaces",), "union, sorted", "every surface word, sorted"),
    Spec("surface_stem", "key", "int32", ("surfaces",), "union", "the stem id of each surface", codec="dv"),
    Spec("surface_count", "count", "uint", ("surfaces",), "sum by surface", "occurrences of each surface word",
         codec="br"),
    Spec("pend_hash", "count", "uint64", ("pending",), "concatenate, sorted",
         "stable hash of each occurrence of an n-gram below min_multitoken_count (not in the dictionary), sorted",
         codec="dz"),
    Spec("pend_doc", "count", "int32", ("pending",), "concatenate", "the entity of each pending occurrence",
         codec="fb"),
    # ---- entities
    Spec("ids", "entity", None, ("entities",), "concatenate", "entity ids, JSON-encoded, in corpus order"),
    Spec("entity_offsets", "entity", "int", ("entities+1",), "concatenate (shifted)",
         "byte offsets of each entity in entities.jsonl (as it reads uncompressed)", codec="db"),
    Spec("entity_agents", "entity", "uint8", ("entities",), "concatenate", "one bit per agent of each entity"),
    Spec("entity_content", "entity", "uint64", ("entities",), "concatenate",
         "hash of the normalized content (0: no text), to drop duplicates on add"),
    Spec("entities.jsonl", "blob", None, (), "concatenate",
         "the entity store: one JSON object a line, stored in zlib blocks (entities.jsonl.z)"),
] + [s for name in CONTEXTS for s in _context_specs(name)])

SPECS = {s.name: s for s in SCHEMA}

_KIND_OF_DTYPE = {"uint": "u", "int": "i"}


def narrow_uint(a: np.ndarray) -> np.ndarray:
    """Counts in the narrowest unsigned dtype that holds their maximum (uint8, 16, 32 or 64)."""
    a = np.asarray(a)
    top = spill.span(a)[1]
    for dt in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dt).max:
            return spill.astype(a, dt)
    return spill.astype(a, np.uint64)


def storage_dtype(spec: Spec, arr: np.ndarray) -> np.ndarray:
    """``arr`` in the dtype the schema stores it with: counts in the narrowest unsigned type,
    indexes ("int") in int32 while their values allow it."""
    arr = np.asarray(arr)
    if spec.dtype == "uint":
        return narrow_uint(arr)
    if spec.dtype == "int":
        low, top = spill.span(arr)
        return spill.astype(arr, np.int32 if top < 2**31 and low >= -2**31 else np.int64)
    return spill.astype(arr, spec.dtype)


def partners(arrays: dict, mt: int):
    """Every pair of multitoken ``mt``: (partner ids, adjacent counts, contextual counts).

    Each unordered pair is stored once, under its smaller id (``pair_indptr``/``pair_cols``);
    the transposed index (``pair_t_indptr``/``pair_t_order``) finds the pairs where ``mt``
    is the larger id.
    """
    indptr, cols = arrays["pair_indptr"], arrays["pair_cols"]
    adj, ctx = arrays["pair_adj"], arrays["pair_ctx"]
    s, e = int(indptr[mt]), int(indptr[mt + 1])
    ts, te = int(arrays["pair_t_indptr"][mt]), int(arrays["pair_t_indptr"][mt + 1])
    idx = np.asarray(arrays["pair_t_order"][ts:te], dtype=np.int64)
    # the row (smaller id) of each entry; the needles in the row pointers' own (narrowed) type, or
    # numpy would convert the whole pointer table on every call
    below = np.searchsorted(indptr, idx.astype(indptr.dtype), side="right").astype(np.int64) - 1
    # the counts of the transposed entries gathered, those of the row read as a range (ranked bits, br,
    # then rank one escape of the range, not each)
    return (np.concatenate([below, np.asarray(cols[s:e], dtype=np.int64)]),
            np.concatenate([np.asarray(adj[idx], dtype=np.int64), np.asarray(adj[s:e], dtype=np.int64)]),
            np.concatenate([np.asarray(ctx[idx], dtype=np.int64), np.asarray(ctx[s:e], dtype=np.int64)]))


def conform(arrays: dict) -> dict:
    """Every array of the schema in its storage dtype (tables outside the schema unchanged)."""
    return {k: storage_dtype(SPECS[k], v) if k in SPECS and SPECS[k].dtype else v for k, v in arrays.items()}


class Context(NamedTuple):
    """One context table: multitoken -> label counts, and entity -> labels."""

    indptr: np.ndarray
    labels: np.ndarray
    counts: np.ndarray
    doc_indptr: np.ndarray
    doc_labels: np.ndarray
    names: list


class RowSum:
    """A per-row reduction of a 2-D table, computed for the rows indexed (a scalar or an index
    array), so that loading a model makes no pass over its multitokens."""

    def __init__(self, table: np.ndarray, reduce, direct=None):
        self._table = table
        self._reduce = reduce
        #: the reduction of the rows indexed, straight from an encoded table (tables/codecs.py: it
        #: reads only the columns that matter), instead of ``reduce(table[rows])``
        self._direct = direct

    def __getitem__(self, rows):
        if self._direct is not None:
            return self._direct(rows)
        return self._reduce(self._table[rows])

    def __len__(self) -> int:
        return len(self._table)


class StemIds:
    """Stem -> id over the sorted stems table, without a dict of the whole vocabulary: a binary
    search per new stem, and a bounded cache of the stems looked up (prompts repeat words)."""

    CACHE = 100_000

    def __init__(self, stems):
        self._stems = stems
        self._cache: dict[str, int] = {}

    def get(self, stem: str, default=None):
        i = self._cache.get(stem)
        if i is None:
            stems = self._stems
            line = getattr(stems, "line", stems.__getitem__)  # a mapped table: decode the probed lines only
            lo, hi = 0, len(stems)
            while lo < hi:
                mid = (lo + hi) // 2
                if line(mid) < stem:
                    lo = mid + 1
                else:
                    hi = mid
            i = lo if lo < len(stems) and line(lo) == stem else -1
            if len(self._cache) >= self.CACHE:
                self._cache.clear()
            self._cache[stem] = i
        return default if i < 0 else i

    def __contains__(self, stem) -> bool:
        return self.get(stem) is not None

    def __getitem__(self, stem: str) -> int:
        i = self.get(stem)
        if i is None:
            raise KeyError(stem)
        return i

    def __len__(self) -> int:
        return len(self._stems)


def decode_ids(raw, indices: list[int] | None = None) -> list:
    """The ids at ``indices`` (None: all) of a stored id table (JSON strings, one an entity), decoded
    alone: a query's results need not decode every id."""
    if indices is None:
        return [_decode_id(x) for x in raw]
    texts = raw.take(indices) if hasattr(raw, "take") else [raw[i] for i in indices]
    return [x[1:-1] if x[:1] == '"' and "\\" not in x else _decode_id(x) for x in texts]


def _decode_id(text: str):
    """One JSON-encoded id; a string without escapes (a backslash) is its text between the quotes."""
    if text[:1] == '"' and "\\" not in text:
        return text[1:-1]
    import json

    return json.loads(text)


class IdIndex:
    """Entity id -> index without a dict of every id: the ids' Python hashes, sorted (12 bytes an
    entity: 12 MB at 1M instead of ~150 MB of strings and dict), then the few candidates of a
    lookup decoded and compared. Built in one pass over the ids on the first lookup; the answers
    are those of ``{id: i for i, id in enumerate(ids)}`` (same hash and equality; last index wins)."""

    def __init__(self, tables: TableSet):
        self._tables = tables
        n = tables.n_docs
        every = tables._ids if tables._ids is not None else (_decode_id(x) for x in tables._strings["ids"])
        h = np.fromiter(map(hash, every), dtype=np.int64, count=n)
        self._order = np.argsort(h, kind="stable").astype(np.int32 if n < 2**31 else np.int64)
        self._hashes = h[self._order]

    def get(self, entity_id, default=None):
        try:
            k = hash(entity_id)
        except TypeError:  # unhashable: no entity has it (as a dict lookup would raise, callers pass ids)
            return default
        lo = int(np.searchsorted(self._hashes, k, side="left"))
        hi = int(np.searchsorted(self._hashes, k, side="right"))
        for j in range(hi - 1, lo - 1, -1):  # index order within a hash: the last match is the largest
            i = int(self._order[j])
            if self._tables.id_at(i) == entity_id:
                return i
        return default

    def get_many(self, entity_ids: list) -> np.ndarray:
        """``get`` of each id, -1 where none: the hashes searched at once and the candidates' ids
        decoded together (the importance prior looks up every link target of the model)."""
        out = np.full(len(entity_ids), -1, dtype=np.int64)
        if not len(entity_ids):
            return out
        h = np.fromiter(map(hash, entity_ids), dtype=np.int64, count=len(entity_ids))
        lo = np.searchsorted(self._hashes, h, side="left")
        hi = np.searchsorted(self._hashes, h, side="right")
        one = np.flatnonzero(hi - lo == 1)
        cand = self._order[lo[one]].astype(np.int64)
        for k, i, got in zip(one.tolist(), cand.tolist(), self._tables.ids_at(cand.tolist())):
            if got == entity_ids[k]:
                out[k] = i
        for k in np.flatnonzero(hi - lo > 1).tolist():  # a shared hash (or a repeated id): one by one
            i = self.get(entity_ids[k])
            out[k] = -1 if i is None else i
        return out


class TableSet:
    """Named, checked access to a model's tables.

    Arrays are plain ndarray views of the memory maps (``np.asarray``: same pages, no
    ``np.memmap`` indexing overhead). Attribute access works for every array of the
    schema (``tables.post_docs``); strings lists through :meth:`strings`.
    """

    def __init__(self, arrays: dict, strings: dict, stats: dict, where: str = "the model"):
        #: plain arrays, and the encoded tables as array-likes (tables/codecs.py)
        self._arrays: dict[str, Any] = {k: v if isinstance(v, Encoded) else np.asarray(v) for k, v in arrays.items()}
        self._strings = strings
        self.stats = stats
        self.where = where
        self._check()
        self.n_docs = len(self._strings["ids"])
        self.n_words = int(stats.get("words", 0))
        #: words of each multitoken and its total count: computed for the rows a query reads
        words, counts = self._arrays["mt_words"], self._arrays["mt_counts"]
        self.mt_len = RowSum(words, None, words.lengths) if hasattr(words, "lengths") else \
            RowSum(words, lambda rows: (rows >= 0).sum(axis=-1))
        #: single words come first among the multitokens, a word's multitoken id being its stem id
        self.n_stems = len(self._strings["stems"])
        self.mt_total = RowSum(counts, None, counts.row_sums) if hasattr(counts, "row_sums") else \
            RowSum(counts, lambda rows: rows.sum(axis=-1, dtype=np.int64))
        self._display_cache: dict[int, str] = {}
        self._stem_ids: StemIds | None = None
        self._ids: list[str] | None = None
        self._id_index: IdIndex | None = None

    # ------------------------------------------------------------ checks
    def _check(self) -> None:
        """Every declared table present, with its dtype kind, rank and consistent sizes."""
        sizes: dict[str, int] = {}
        for spec in SCHEMA:
            if spec.kind == "blob":
                continue
            if spec.dtype is None:
                if spec.name not in self._strings:
                    raise ModelError(f"{self.where} has no {spec.name!r} table; rebuild it (tablelm upgrade).")
                got = [len(self._strings[spec.name])]
            else:
                a = self._arrays.get(spec.name)
                if a is None and spec.optional:
                    continue
                if a is None:
                    raise ModelError(f"{self.where} has no {spec.name!r} table; rebuild it (tablelm upgrade).")
                want = _KIND_OF_DTYPE.get(spec.dtype) or np.dtype(spec.dtype).kind
                if a.dtype.kind != want or a.ndim != len(spec.dims):
                    raise ModelError(f"{self.where}: table {spec.name!r} has dtype {a.dtype} and shape {a.shape}, "
                                     f"the schema says {spec.dtype} with {len(spec.dims)} axes; "
                                     "the file is damaged: rebuild the model.")
                got = list(a.shape)
                if spec.collapses and got == [1]:
                    continue  # an empty context's index
            for dim, n in zip(spec.dims, got):
                if isinstance(dim, int):
                    ok = n == dim
                else:
                    base, plus = (dim[:-2], 1) if dim.endswith("+1") else (dim, 0)
                    ok = sizes.setdefault(base, n - plus) == n - plus
                if not ok:
                    raise ModelError(f"{self.where}: table {spec.name!r} has {n} rows on its {dim!r} axis, "
                                     "which disagrees with the other tables; the model is damaged: rebuild it.")

    # ------------------------------------------------------------ arrays and strings
    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_arrays"][name]
        except KeyError:
            raise AttributeError(name) from None

    def strings(self, name: str) -> list:
        """A string table as a list (a loaded model maps them and decodes a line at a time:
        this decodes the whole table once; query code indexes ``string_tables`` instead)."""
        v = self._strings[name]
        if not isinstance(v, list):
            v = self._strings[name] = list(v)
        return v

    @property
    def arrays(self) -> dict:
        return self._arrays

    @property
    def string_tables(self) -> dict:
        return self._strings

    # ------------------------------------------------------------ lookups
    @property
    def stem_ids(self) -> StemIds:
        """Stem -> stem id (``.get``, ``in``, ``[]``), by binary search in the sorted stems."""
        if self._stem_ids is None:
            self._stem_ids = StemIds(self._strings["stems"])
        return self._stem_ids

    @property
    def ids(self) -> list[str]:
        """Entity ids, decoded on first use."""
        if self._ids is None:
            self._ids = decode_ids(self._strings["ids"])
        return self._ids

    def id_at(self, index: int) -> str:
        """The id of one entity, decoded alone: a query's results need not decode every id."""
        if self._ids is not None:
            return self._ids[index]
        return _decode_id(self._strings["ids"][index])

    def ids_at(self, indices: list[int]) -> list:
        """The ids of the entities ``indices`` (a query's results), decoded alone."""
        if self._ids is not None:
            return [self._ids[i] for i in indices]
        return decode_ids(self._strings["ids"], indices)

    def index_of(self, entity_id: str) -> int | None:
        """The index of the entity with this id (the last one, should ids repeat), or None."""
        return self._ids_index().get(entity_id)

    def indices_of(self, entity_ids: list) -> np.ndarray:
        """:meth:`index_of` of each id at once, -1 where there is none."""
        return self._ids_index().get_many(entity_ids)

    def _ids_index(self) -> IdIndex:
        if self._id_index is None:
            self._id_index = IdIndex(self)
        return self._id_index

    def display_stem(self, stem_id: int) -> str:
        return self._strings["display"][stem_id]

    def display(self, mt: int) -> str:
        """A multitoken as users read it: the most frequent surface of each word."""
        text = self._display_cache.get(mt)
        if text is None:
            words = self._strings["display"]
            if len(self._display_cache) >= 100_000:  # bounded: a server shows ever new multitokens
                self._display_cache.clear()
            text = self._display_cache[mt] = " ".join(words[w] for w in self.mt_words[mt].tolist() if w >= 0)
        return text

    def lookup_multitoken(self, stem_ids: list[int]) -> int | None:
        """The multitoken id of an exact word sequence, or None."""
        if len(stem_ids) == 1:
            return int(stem_ids[0])
        if not 2 <= len(stem_ids) <= 4:
            return None
        row = np.full((1, 4), -1, dtype=np.int64)
        row[0, : len(stem_ids)] = stem_ids
        h = hash_rows(sort_rows(row))[0]
        lo, hi = np.searchsorted(self.sng_hash, h, "left"), np.searchsorted(self.sng_hash, h, "right")
        for j in range(lo, hi):
            mt = int(self.sng_mt[j])
            if list(self.mt_words[mt][: len(stem_ids)]) == list(stem_ids) and self.mt_len[mt] == len(stem_ids):
                return mt
        return None

    def postings(self, mt: int) -> tuple[np.ndarray, np.ndarray]:
        """(entities, field term frequencies) of one multitoken."""
        s, e = int(self.post_indptr[mt]), int(self.post_indptr[mt + 1])
        return self.post_docs[s:e], self.post_tf[s:e]

    def df(self, mts) -> np.ndarray:
        """Document frequency of each multitoken."""
        mts = np.asarray(mts, dtype=np.int64)
        return self.post_indptr[mts + 1] - self.post_indptr[mts]

    def partners(self, mt: int):
        """Every pair of multitoken ``mt`` (see :func:`partners`)."""
        return partners(self._arrays, mt)

    def n_partners(self, mt: int) -> int:
        """How many pairs :meth:`partners` of ``mt`` returns (two row lengths: nothing decoded)."""
        a = self._arrays
        return int(a["pair_indptr"][mt + 1]) - int(a["pair_indptr"][mt]) + \
            int(a["pair_t_indptr"][mt + 1]) - int(a["pair_t_indptr"][mt])

    def context(self, name: str) -> Context:
        a = self._arrays
        ptr, doc_ptr = a[f"ctx_{name}_indptr"], a[f"doc_{name}_indptr"]
        if len(ptr) == 1:  # a context the corpus leaves empty is stored without its index
            ptr = np.broadcast_to(ptr[:1], (len(self.mt_words) + 1,))
        if len(doc_ptr) == 1:
            doc_ptr = np.broadcast_to(doc_ptr[:1], (self.n_docs + 1,))
        return Context(ptr, a[f"ctx_{name}_labels"], a[f"ctx_{name}_counts"], doc_ptr, a[f"doc_{name}_labels"],
                       self._strings[f"labels_{name}"])
