"""The counting pass against a naive oracle.

The oracle below re-implements, in plain Python with ``collections.Counter``, the rules
stated in ``tablelm/tables/build.py``. It takes its words and boundaries from
``Analyzer.tokens_with_spans`` (the query/citation path), so these tests check the
counting, not the tokenizer, and they also check that the build's fast tokenizer and
the span tokenizer agree. Every table is compared exactly with ``build_tables`` on
small real slices (SciFact abstracts, xLLM records with tags and categories, CACM
records with keywords and citation links) for several build parameter sets, and on
random text made of real corpus words (hypothesis).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tablelm.corpus.entity import TextEntity
from tablelm.tables import build as build_module
from tablelm.tables.build import CONTEXTS, FIELDS, build_tables, label_path
from tablelm.tables.hashing import hash_rows, sort_rows
from tablelm.tables.schema import partners
from tablelm.text.analyzer import CLAUSE, SENTENCE, Analyzer, normalize

from conftest import CACM, SCIFACT, XLLM, needs_data, read_slice

# --------------------------------------------------------------------------- the oracle


def sorted_words_hash(word_ids) -> int:
    """The hash of one multitoken's sorted word ids, computed on its own row (the scalar path)."""
    row = np.full((1, 4), -1, dtype=np.int64)
    row[0, : len(word_ids)] = sorted(word_ids)
    return int(hash_rows(row)[0])


CONTEXT_FIELDS = [i for i, f in enumerate(FIELDS) if f != "meta"]  # metadata strings are not context


def field_parts(e):
    """The parts of each field, in FIELDS order; each part is a segment of its own."""
    parts = {"text": (e.text,), "title": (e.title,), "category": e.category, "tags": e.tags}
    if "meta" in FIELDS:
        parts["meta"] = build_module.meta_values(e)
    return [parts[f] for f in FIELDS]


def segments(entities, analyzer):
    """``(doc, field, words)`` per non-empty field part; words = [(stem, surface, sentence, clause)]."""
    out = []
    for d, e in enumerate(entities):
        for f, texts in enumerate(field_parts(e)):
            for t in texts:
                if not t:
                    continue
                words, sent, clause = [], 0, 0
                for kind, stem, start, end in analyzer.tokens_with_spans(t):
                    if kind == SENTENCE:
                        sent += 1
                        clause += 1
                    elif kind == CLAUSE:
                        clause += 1
                    else:
                        words.append((stem, normalize(t[start:end]), sent, clause))
                out.append((d, f, words))
    return out


def letter_pairs(entities, analyzer):
    """``(doc, field, (word stem, letter) or (letter, word stem))`` of every capital single letter
    right next to a content word (analyzer.py's rule: a token of the text itself, nothing but
    non-tokens between; "A" and "I" only after the word), read token by token from the text."""
    out = []
    if not analyzer.letters:
        return out
    for d, e in enumerate(entities):
        for f, texts in enumerate(field_parts(e)):
            for t in texts:
                toks = []  # per token: ("L", letter) or ("w", stems of a word of more than one character) or None
                for m in analyzer.token_re.finditer(t):
                    tok = m.group()
                    if len(tok) == 1 and "A" <= tok <= "Z":
                        toks.append(("L", tok))
                    elif tok[0].isalnum() and len(normalize(tok)) > 1 and analyzer.word_stems(normalize(tok)):
                        toks.append(("w", analyzer.word_stems(normalize(tok))))
                    else:
                        toks.append(None)
                for i, x in enumerate(toks):
                    if x is None or x[0] != "L":
                        continue
                    if i and toks[i - 1] is not None and toks[i - 1][0] == "w":
                        out.append((d, f, (toks[i - 1][1][-1], x[1])))
                    if x[1] not in "AI" and i + 1 < len(toks) and toks[i + 1] is not None and toks[i + 1][0] == "w":
                        out.append((d, f, (x[1], toks[i + 1][1][0])))
    return out


def oracle(entities, analyzer, max_ngram, max_dist, min_count):
    """Every table of the documented rules, keyed by word tuples (not ids)."""
    segs = segments(entities, analyzer)
    n_docs = len(entities)

    # occurrences of every n-gram (all of them, kept or not)
    count, kg = Counter(), Counter()
    occs = []  # (doc, field, seg index, words tuple, start, end)
    for si, (d, f, words) in enumerate(segs):
        for i in range(len(words)):
            for n in range(1, max_ngram + 1):
                j = i + n - 1
                if j >= len(words) or words[j][3] != words[i][3]:
                    break
                key = tuple(w[0] for w in words[i:j + 1])
                count[key] += 1
                if f != 0:
                    kg[key] += 1
                occs.append((d, f, si, key, i, j))
    letters = letter_pairs(entities, analyzer) if max_ngram >= 2 else []
    for _d, f, key in letters:
        count[key] += 1
        if f != 0:
            kg[key] += 1
    kept = {k for k in count if len(k) == 1 or count[k] >= min_count or kg[k] > 0}
    # a letter's stem is the capital letter; its single-word row has no count, and it is kept
    # while a kept multitoken holds it
    held = {w for _, _, key in letters if key in kept for w in key if len(w) == 1 and "A" <= w <= "Z"}
    kept |= {(w,) for w in held}

    stems = sorted({w[0] for _, _, words in segs for w in words} | held)
    rank = {s: i for i, s in enumerate(stems)}
    mts = sorted(kept, key=lambda k: (len(k), [rank[s] for s in k]))

    mt_counts = defaultdict(lambda: [0] * len(FIELDS))
    post = defaultdict(lambda: [0] * len(FIELDS))  # (mt, doc) -> tf per field
    kept_occ = defaultdict(list)  # seg index -> [(key, start, end, sentence)]
    for d, f, si, key, i, j in occs:
        if key in kept:
            mt_counts[key][f] += 1
            post[(key, d)][f] += 1
            kept_occ[si].append((key, i, j, segs[si][2][i][2]))
    for d, f, key in letters:  # postings and counts, no pairs
        if key in kept:
            mt_counts[key][f] += 1
            post[(key, d)][f] += 1
    for w in held:
        mt_counts[(w,)] = [0] * len(FIELDS)  # the row, with no count

    doc_len = np.zeros((n_docs, len(FIELDS)), dtype=np.int64)
    for d, f, words in segs:
        doc_len[d, f] += len(words)

    # pairs: non-overlapping, same sentence, b after a with gap <= max_dist, unordered
    adj, ctx = Counter(), Counter()
    for lst in kept_occ.values():
        by_start = defaultdict(list)
        for kb, ib, _jb, sb in lst:
            by_start[ib].append((kb, sb))
        for ka, _ia, ja, sa in lst:
            for ib in range(ja + 1, ja + 2 + max_dist):  # b starts after a ends, gap <= max_dist
                gap = ib - ja - 1
                for kb, sb in by_start.get(ib, ()):
                    if kb == ka or sb != sa:
                        continue
                    pair = (min(ka, kb), max(ka, kb))
                    (adj if gap == 0 else ctx)[pair] += 1

    # context tables
    labels = {
        "category": [[label_path(e.category)] if label_path(e.category) else [] for e in entities],
        "tags": [sorted({" ".join(t.split()) for t in e.tags if t.strip()}) for e in entities],
        "titles": [[" ".join(e.title.split())] if e.title.strip() else [] for e in entities],
        "related": [sorted({r.strip() for r in e.related if r.strip()}) for e in entities],
    }
    context = {name: Counter() for name in CONTEXTS}
    for (key, d), tf in post.items():
        for name in CONTEXTS:
            for lab in labels[name][d]:
                c = sum(tf[i] for i in CONTEXT_FIELDS)
                if c:
                    context[name][(key, lab)] += c

    # unstemming: most frequent surface (ties: alphabetical); KW_map expansions have none
    surf = Counter()
    for _, _, words in segs:
        for stem, surface, _, _ in words:
            if len(analyzer.kw_map.get(surface, (surface,))) <= 1:
                surf[(stem, surface)] += 1
    display = {}
    for (stem, surface), _c in sorted(surf.items(), key=lambda x: (x[0][0], -x[1], x[0][1])):
        display.setdefault(stem, surface)

    return {
        "stems": stems, "mts": mts, "mt_counts": dict(mt_counts), "post": dict(post),
        "doc_len": doc_len, "adj": adj, "ctx": ctx, "labels": labels, "context": context,
        "display": [display.get(s, s) for s in stems], "count": count, "kg": kg,
        "words": sum(len(w) for _, _, w in segs),
    }


# --------------------------------------------------------------------------- reading the build


def mt_keys(tables):
    stems = tables.strings["stems"]
    return [tuple(stems[w] for w in row if w >= 0) for row in np.asarray(tables["mt_words"]).tolist()]


def csr_rows(indptr, *cols):
    """``(row, [column slices as lists])`` of a CSR table (plain lists: fast to compare)."""
    indptr = np.asarray(indptr).tolist()
    cols = [np.asarray(c).tolist() for c in cols]
    for r in range(len(indptr) - 1):
        s, e = indptr[r], indptr[r + 1]
        yield r, [c[s:e] for c in cols]


def ascending(xs) -> bool:
    return all(a < b for a, b in zip(xs, xs[1:]))


def compare(entities, analyzer, params):
    """Assert that build_tables equals the oracle on every table."""
    t = build_tables(entities, analyzer, params)
    o = oracle(entities, analyzer, params["max_ngram"], params["max_dist"], params["min_multitoken_count"])
    keys = mt_keys(t)
    n_mt = len(keys)

    # dictionary: words, ids ordered by length then alphabetically, no duplicates
    assert t.strings["stems"] == o["stems"]
    assert keys == o["mts"], "dictionary (multitokens and their id order) differs from the oracle"
    assert len(set(keys)) == n_mt
    assert t.strings["display"] == o["display"]

    mid = {k: i for i, k in enumerate(keys)}

    # per-field dictionary counts
    assert t["mt_counts"].shape == (n_mt, len(FIELDS))
    want = np.zeros((n_mt, len(FIELDS)), dtype=np.int64)
    for k, row in o["mt_counts"].items():
        want[mid[k]] = row
    np.testing.assert_array_equal(t["mt_counts"], want)

    # postings: rows by multitoken, docs strictly ascending within a row, tf per field
    indptr = np.asarray(t["post_indptr"])
    assert len(indptr) == n_mt + 1 and indptr[0] == 0
    rows = np.repeat(np.arange(n_mt), np.diff(indptr))
    got = np.column_stack([rows, t["post_docs"], t["post_tf"]]).astype(np.int64)
    assert np.all(np.lexsort((got[:, 1], got[:, 0])) == np.arange(len(got))), "postings not sorted"
    assert len(np.unique(got[:, :2], axis=0)) == len(got), "duplicate posting"
    want = np.array([[mid[k], d, *tf] for (k, d), tf in o["post"].items()], dtype=np.int64).reshape(-1, 2 + len(FIELDS))
    want = want[np.lexsort((want[:, 1], want[:, 0]))]
    np.testing.assert_array_equal(got, want, err_msg="postings differ from the oracle")

    # field lengths
    np.testing.assert_array_equal(t["doc_len"], o["doc_len"])

    # pairs: each unordered pair once under its smaller id (columns strictly ascending and larger
    # than the row), adjacent and contextual counts, no self-pair; the transposed index finds it
    # from the larger id
    indptr = np.asarray(t["pair_indptr"])
    assert len(indptr) == n_mt + 1 and len(t["pair_t_indptr"]) == n_mt + 1
    rows = np.repeat(np.arange(n_mt), np.diff(indptr))
    upper = np.column_stack([rows, t["pair_cols"], t["pair_adj"], t["pair_ctx"]]).astype(np.int64)
    assert np.all(np.lexsort((upper[:, 1], upper[:, 0])) == np.arange(len(upper))), "pairs not sorted"
    assert np.all(upper[:, 0] < upper[:, 1]), "pair not stored under its smaller id (or a self-pair)"
    assert np.all(upper[:, 2] + upper[:, 3] > 0), "pair with no count stored"
    got = []
    for r in range(n_mt):
        cols, a, c = partners(t.arrays, r)
        assert list(cols) == sorted(cols), "partners not in ascending order"
        got += [(r, int(x), int(y), int(z)) for x, y, z in zip(cols, a, c)]
    got = np.array(got, dtype=np.int64).reshape(-1, 4)
    want = []
    for pair in set(o["adj"]) | set(o["ctx"]):
        a, b = mid[pair[0]], mid[pair[1]]
        want += [(a, b, o["adj"][pair], o["ctx"][pair]), (b, a, o["adj"][pair], o["ctx"][pair])]
    want = np.array(want, dtype=np.int64).reshape(-1, 4)
    want = want[np.lexsort((want[:, 1], want[:, 0]))]
    np.testing.assert_array_equal(got, want, err_msg="pairs differ from the oracle")

    # context tables and doc → label lists
    for name in CONTEXTS:
        labels = t.strings[f"labels_{name}"]
        assert labels == sorted({x for xs in o["labels"][name] for x in xs})
        lab_id = {x: i for i, x in enumerate(labels)}
        indptr, doc_indptr = np.asarray(t[f"ctx_{name}_indptr"]), np.asarray(t[f"doc_{name}_indptr"])
        if not labels:  # an empty context is stored without its index arrays
            assert indptr.tolist() == [0] and doc_indptr.tolist() == [0]
            indptr, doc_indptr = np.zeros(n_mt + 1, dtype=np.int64), np.zeros(len(entities) + 1, dtype=np.int64)
        assert len(indptr) == n_mt + 1
        rows = np.repeat(np.arange(n_mt), np.diff(indptr))
        got = np.column_stack([rows, t[f"ctx_{name}_labels"], t[f"ctx_{name}_counts"]]).astype(np.int64)
        assert np.all(np.lexsort((got[:, 1], got[:, 0])) == np.arange(len(got)))
        assert np.all(got[:, 2] > 0), f"ctx_{name}_counts has zero entries"
        want = np.array([(mid[k], lab_id[lab], c) for (k, lab), c in o["context"][name].items()],
                        dtype=np.int64).reshape(-1, 3)
        want = want[np.lexsort((want[:, 1], want[:, 0]))]
        np.testing.assert_array_equal(got, want, err_msg=f"context table {name} differs from the oracle")
        doc_labels = [[labels[i] for i in ids]
                      for _, (ids,) in csr_rows(doc_indptr, t[f"doc_{name}_labels"])]
        assert doc_labels == o["labels"][name]

    # sorted n-gram table: exactly the multitokens of 2+ words, sorted by the hash of their sorted words,
    # and each found by a binary search for the hash of its words in any order
    multi = sorted(i for i, k in enumerate(keys) if len(k) >= 2)
    assert sorted(t["sng_mt"].tolist()) == multi
    hashes = t["sng_hash"].tolist()
    assert hashes == sorted(hashes)
    words = np.asarray(t["mt_words"])[np.asarray(t["sng_mt"])]
    np.testing.assert_array_equal(t["sng_hash"], hash_rows(sort_rows(words)))
    rev = np.where(words >= 0, words[:, ::-1][np.arange(len(words))[:, None],
                                                 (np.arange(4) + (4 - (words >= 0).sum(axis=1))[:, None]) % 4], -1)
    np.testing.assert_array_equal(t["sng_hash"], hash_rows(sort_rows(rev)))  # any word order, same hash
    for h, w in list(zip(hashes, words.tolist()))[::max(1, len(hashes) // 100)]:  # the scalar path
        w = [x for x in w if x >= 0]
        assert h == sorted_words_hash(w) == sorted_words_hash(w[::-1])
    lo = np.searchsorted(t["sng_hash"], t["sng_hash"], "left")
    hi = np.searchsorted(t["sng_hash"], t["sng_hash"], "right")
    sng_mt = t["sng_mt"].tolist()
    assert all(sng_mt[j] in sng_mt[a:b] for j, (a, b) in enumerate(zip(lo.tolist(), hi.tolist())))

    # stats
    s = t.stats
    assert s["entities"] == len(entities)
    assert s["words"] == o["words"]
    assert s["stems"] == len(o["stems"])
    assert s["multitokens"] == n_mt
    assert s["postings"] == len(o["post"])
    assert s["pairs"] == len(set(o["adj"]) | set(o["ctx"]))
    assert s["adjacent_pairs"] == len(o["adj"])
    assert s["contextual_pairs"] == len(o["ctx"])
    return t, o


# --------------------------------------------------------------------------- real slices


@pytest.fixture(scope="module")
def real_slice():
    """40 SciFact abstracts, 60 xLLM records (tags, categories), 40 CACM records (keywords, links)."""
    for p in (SCIFACT, XLLM, CACM):
        if not p.exists():
            pytest.skip(f"test data not found at {p}")
    ents = read_slice(SCIFACT, 40) + read_slice(XLLM, 60) + read_slice(CACM, 40, start=3000)
    assert sum(bool(e.tags) for e in ents) >= 90 and sum(bool(e.category) for e in ents) >= 60
    assert sum(bool(e.related) for e in ents) >= 20
    return ents


PARAM_SETS = [
    {"max_ngram": 1, "max_dist": 1, "min_multitoken_count": 1},
    {"max_ngram": 2, "max_dist": 3, "min_multitoken_count": 2},
    {"max_ngram": 3, "max_dist": 2, "min_multitoken_count": 1},
    {"max_ngram": 4, "max_dist": 3, "min_multitoken_count": 2},
    {"max_ngram": 4, "max_dist": 1, "min_multitoken_count": 1},
]


@needs_data
@pytest.mark.parametrize("params", PARAM_SETS,
                         ids=lambda p: "n{max_ngram}-d{max_dist}-c{min_multitoken_count}".format(**p))
def test_build_tables_equal_the_oracle_on_real_slices(real_slice, params):
    _t, o = compare(real_slice, Analyzer(), params)
    # the slice exercises what it should: KG-only multitokens, both pair kinds, every context
    if params["max_ngram"] >= 2 and params["min_multitoken_count"] >= 2:
        assert any(len(k) >= 2 and o["count"][k] < 2 and o["kg"][k] for k in o["mts"])
        assert any(len(k) >= 2 and o["count"][k] < 2 for k in o["count"] if k not in set(o["mts"]))
    assert o["adj"] and o["ctx"]
    assert all(o["context"][name] for name in CONTEXTS)


def test_segment_end_character_in_a_text_is_a_space():
    """The build joins texts with U+E000; a text that holds that character reads it as a space."""
    with_char = [TextEntity(id="a", text="cell\ue000growth rate\ue000", title="t\ue000u")]
    with_space = [TextEntity(id="a", text="cell growth rate ", title="t u")]
    p = {"max_ngram": 3, "max_dist": 2, "min_multitoken_count": 1}
    a = build_tables(with_char, Analyzer(), p)
    b = build_tables(with_space, Analyzer(), p)
    for name in b.arrays:
        assert np.array_equal(a.arrays[name], b.arrays[name]), name
    compare(with_char, Analyzer(), p)


@needs_data
def test_oracle_with_kw_map_and_without_stemming(real_slice):
    """KW_map expansions (one word → several) and the unstemmed analyzer follow the same rules."""
    kw = {"cells": "cell", "dna": "deoxyribonucleic acid", "sap": "systems applications products"}
    ents = real_slice[:40] + real_slice[40:100]
    assert any("sap" in e.text.lower().split() or "dna" in e.text.lower() for e in ents)
    compare(ents, Analyzer(kw_map=kw), {"max_ngram": 3, "max_dist": 2, "min_multitoken_count": 1})
    compare(ents, Analyzer(stem=False), {"max_ngram": 2, "max_dist": 2, "min_multitoken_count": 2})


def test_hand_checked_example():
    """A tiny corpus whose tables are checked by hand, not by the oracle."""
    ents = [TextEntity("a", "Read the file. Read file lines, then close the file.", title="File reading",
                       category=("io", "files"), tags=("read file",)),
            TextEntity("b", "Write file lines.", title="", category=("io",))]
    t = build_tables(ents, Analyzer(), {"max_ngram": 2, "max_dist": 1, "min_multitoken_count": 2})
    keys = mt_keys(t)
    idx = {k: i for i, k in enumerate(keys)}
    # "read file" occurs twice in text (kept by count), once in tags (KG); "file line" twice;
    # "line close" once, text only → not kept; "file read" occurs once in the title → kept (KG field)
    assert ("read", "file") in idx and ("file", "line") in idx and ("file", "read") in idx
    assert ("line", "close") not in idx and ("close", "file") not in idx
    assert t["mt_counts"][idx[("read", "file")]][:4].tolist() == [2, 0, 0, 1]   # text title category tags
    assert t["mt_counts"][idx[("file",)]][:4].tolist() == [4, 1, 1, 1]
    f = idx[("file",)]
    # doc lengths: a.text = read file read file line close file (7 kept words), title 2, category 2, tags 2
    assert t["doc_len"][:, :4].tolist() == [[7, 2, 2, 2], [3, 0, 1, 0]]
    def pair(a, b):
        cols, adj, ctx = partners(t.arrays, idx[a])
        hit = np.flatnonzero(cols == idx[b])
        return (int(adj[hit[0]]), int(ctx[hit[0]])) if len(hit) else (0, 0)

    # sentence 2 of a.text is "read file line | close file" (one clause break, one sentence)
    assert pair(("read",), ("line",)) == (0, 1)            # gap 1: contextual
    assert pair(("read", "file"), ("line",)) == (1, 0)     # adjacent after the multitoken ends
    assert pair(("read", "file"), ("file",)) == (0, 0)     # overlapping occurrences never pair
    assert pair(("file",), ("line",)) == (2, 1)            # a: adj + ctx (line→file), b: adj
    assert pair(("file",), ("close",)) == (1, 1)           # pairs cross clauses, not sentences
    # read→file in both a.text sentences, file→read in the title, read→file in the tags
    assert pair(("file",), ("read",)) == (4, 0)
    assert pair(("write",), ("line",)) == (0, 1)
    assert pair(("line",), ("file", "line")) == (0, 0)
    # context tables: "file" occurs 4 times in a (all fields) and 2 times in b
    cat = t.strings["labels_category"]
    assert cat == ["io", "io > files"]
    s, e = int(t["ctx_category_indptr"][f]), int(t["ctx_category_indptr"][f + 1])
    got = dict(zip((cat[i] for i in t["ctx_category_labels"][s:e].tolist()), t["ctx_category_counts"][s:e].tolist()))
    assert got == {"io > files": 6, "io": 1}


@pytest.mark.parametrize("text", ["cell growth… tumor size", "cell growth； tumor size",
                                  "cell growth（tumor） size", "İstanbul cell growth"])
def test_build_and_span_tokenizers_agree_on_non_ascii_text(text):
    """NFKC can create boundaries ('…' → '...') and lower() can split a word ('İ' → 'i̇'): the build's
    fast tokenizer and the query/citation tokenizer must still agree."""
    compare([TextEntity("a", text)], Analyzer(), {"max_ngram": 2, "max_dist": 1, "min_multitoken_count": 1})


@needs_data
def test_context_tables_hold_no_zero_counts(real_slice):
    """Metadata is not context: a multitoken seen only in metadata must not get label rows of count 0."""
    t = build_tables(real_slice, Analyzer(), {"max_ngram": 2, "max_dist": 2, "min_multitoken_count": 2})
    for name in CONTEXTS:
        assert np.all(np.asarray(t[f"ctx_{name}_counts"]) > 0), f"ctx_{name}_counts has zero entries"


@pytest.mark.parametrize("texts", [["hello"], ["", "the of and"], ["cell. growth. tumor"]])
def test_corpus_without_pairs_builds(texts):
    """No pair at all (one word, stopwords only, one-word sentences) is a valid corpus."""
    ents = [TextEntity(f"d{i}", t) for i, t in enumerate(texts)]
    t, _o = compare(ents, Analyzer(), {"max_ngram": 2, "max_dist": 2, "min_multitoken_count": 1})
    assert len(t["pair_cols"]) == 0 and t.stats["pairs"] == 0


# --------------------------------------------------------------------------- properties (hypothesis)


def _vocabulary() -> list[str]:
    """Real words of the first SciFact abstracts (stopwords included), or a fixed list."""
    words = []
    if SCIFACT.exists():
        for e in read_slice(SCIFACT, 8):
            for w in e.text.split():
                w = w.strip(".,;:()[]\"'")
                if w.isalnum() and w not in words:
                    words.append(w)
    return words[:80] or ["cell", "growth", "tumor", "the", "of", "Read", "file", "line", "and", "2", "x"]


WORDS = _vocabulary()
MARKS = [".", ",", ";", "(", ")", "!", "?", "\n\n", "...", ":"]
# non-ASCII text whose NFKC form or lowercase differs: boundaries and words must not move
ODD = ["…", "；", "（", "）", "！", "ﬁle", "İstanbul", "nai\u0308ve", "Straße", "ＡＢＣ", "x²", "Ⅻ", "growth…tumor"]
token = st.one_of(st.sampled_from(WORDS), st.sampled_from(WORDS), st.sampled_from(MARKS), st.sampled_from(ODD))
phrase = st.lists(token, max_size=25).map(" ".join)
short = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(" ".join)
entity_st = st.builds(
    lambda text, title, cat, tags, rel: (text, title, tuple(cat), tuple(tags), tuple(rel)),
    phrase, st.one_of(st.just(""), short), st.lists(short, max_size=2), st.lists(short, max_size=3),
    st.lists(st.sampled_from(["d0", "d1", "d2", "x"]), max_size=2))
corpus_st = st.lists(entity_st, min_size=1, max_size=6).map(
    lambda rows: [TextEntity(f"d{i}", text, title, cat, tags, rel)
                  for i, (text, title, cat, tags, rel) in enumerate(rows)])
params_st = st.fixed_dictionaries({"max_ngram": st.integers(1, 4), "max_dist": st.integers(1, 4),
                                   "min_multitoken_count": st.integers(1, 3)})
FAST = settings(max_examples=int(__import__("os").environ.get("TABLELM_HYPOTHESIS_EXAMPLES", 60)), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(corpus_st, params_st)
def test_property_build_equals_oracle(entities, params):
    compare(entities, Analyzer(), params)


@FAST
@given(corpus_st, params_st)
def test_property_pairs_symmetric_and_postings_sum_to_counts(entities, params):
    t = build_tables(entities, Analyzer(), params)
    n = len(t["mt_words"])
    pairs = {}
    for r in range(n):
        for col, na, nc in zip(*partners(t.arrays, r)):
            pairs[(r, int(col))] = (int(na), int(nc))
    assert all(pairs.get((b, a)) == v for (a, b), v in pairs.items()), "pair counts not symmetric"
    assert all(a != b for a, b in pairs)
    # per-field posting tf, summed over entities, equals the dictionary counts
    sums = np.zeros((n, len(FIELDS)), dtype=np.int64)
    rows = np.repeat(np.arange(n), np.diff(np.asarray(t["post_indptr"])))
    np.add.at(sums, rows, np.asarray(t["post_tf"], dtype=np.int64))
    np.testing.assert_array_equal(sums, t["mt_counts"])
    # single-word multitoken counts add up to the field lengths
    single = np.asarray(t["mt_words"])[:, 1] < 0
    np.testing.assert_array_equal(np.asarray(t["mt_counts"])[single].sum(axis=0), np.asarray(t["doc_len"]).sum(axis=0))


@FAST
@given(corpus_st, params_st)
def test_property_deterministic(entities, params):
    a = build_tables(entities, Analyzer(), params)
    b = build_tables([TextEntity(**e.to_dict()) for e in entities], Analyzer(), params)
    assert a.arrays.keys() == b.arrays.keys() and a.strings == b.strings and a.stats == b.stats
    for name in a.arrays:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@FAST
@given(corpus_st, params_st)
def test_property_sorted_ngram_hashes_match_sorted_words(entities, params):
    t = build_tables(entities, Analyzer(), params)
    words = np.asarray(t["mt_words"])
    sng_mt = np.asarray(t["sng_mt"])
    assert len(sng_mt) == int(((words >= 0).sum(axis=1) >= 2).sum())
    np.testing.assert_array_equal(t["sng_hash"], hash_rows(sort_rows(words[sng_mt])))
    for h, mt in zip(t["sng_hash"].tolist(), sng_mt.tolist()):
        w = [x for x in words[mt].tolist() if x >= 0]
        assert h == sorted_words_hash(w) == sorted_words_hash(w[::-1])


def assert_same_tables(a, b):
    assert a.arrays.keys() == b.arrays.keys() and a.strings == b.strings and a.stats == b.stats
    for name in a.arrays:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@FAST
@given(corpus_st, params_st, st.integers(1, 3))
def test_property_sharded_build_equals_one_shard(entities, params, shard_size):
    assert_same_tables(build_tables(entities, Analyzer(), params, shard_size=shard_size),
                       build_tables(entities, Analyzer(), params))


@needs_data
@pytest.mark.parametrize("params", [{"max_ngram": 4, "max_dist": 3, "min_multitoken_count": 2},
                                    {"max_ngram": 3, "max_dist": 1, "min_multitoken_count": 3}])
def test_sharded_build_equals_one_shard_on_real_slices(real_slice, params):
    one = build_tables(real_slice, Analyzer(), params)
    for shard_size in (1, 7, 64):
        assert_same_tables(build_tables(real_slice, Analyzer(), params, shard_size=shard_size), one)


@needs_data
def test_tables_counted_and_assembled_in_tiny_ranges_equal_one_pass(real_slice, monkeypatch):
    """Pairs counted a few occurrences at a time, merges and the assembly a few rows at a time:
    every table as in one pass."""
    from tablelm.tables import build, counts, spill

    params = {"max_ngram": 4, "max_dist": 3, "min_multitoken_count": 2}
    one = build_tables(real_slice, Analyzer(), params)
    monkeypatch.setattr(build, "PAIR_CHUNK", 5)
    monkeypatch.setattr(counts, "RANGE_ROWS", 3)
    monkeypatch.setattr(spill, "CHUNK_BYTES", 40)
    assert_same_tables(build_tables(real_slice, Analyzer(), params), one)
    assert_same_tables(build_tables(real_slice, Analyzer(), params, shard_size=16), one)


@pytest.mark.parametrize("within_one_part", [False, True])
def test_merge_reports_two_multitokens_with_one_hash(within_one_part):
    """A forged 64-bit hash collision (two different word tuples, one hash) stops the merge with
    HashCollision, whether the two tuples come from two partials or from one."""
    from tablelm.tables.counts import HashCollision, merge

    params = {"max_ngram": 2, "max_dist": 2, "min_multitoken_count": 1}
    a = build_module.count_partial([TextEntity("a", "red apple pie")], Analyzer(), params)
    b = build_module.count_partial([TextEntity("b", "green pear tart")], Analyzer(), params)
    assert len(a.mt_hash) >= 2 and len(b.mt_hash) >= 2
    if within_one_part:
        b.mt_hash = b.mt_hash.copy()
        b.mt_hash[0] = b.mt_hash[1]
    else:
        b.mt_hash = np.concatenate([a.mt_hash[:1], b.mt_hash[1:]])
    with pytest.raises(HashCollision):
        merge([(a, 1, np.arange(1)), (b, 1, np.arange(1, 2))], 2)
    merge([(a, 1, np.arange(1)), (a, 1, np.arange(1, 2))], 2)  # equal tuples, equal hashes: no collision


def test_builds_hold_glibcs_thresholds(monkeypatch):
    """An in-memory build maps blocks from 4 MB up and keeps 32 MB of freed heap (fewer fresh pages
    faulted in); the bounded-memory build keeps glibc's 128 kB for both (its peak has no margin)."""
    from tablelm.tables import spill

    calls = []

    class FakeLibc:
        def mallopt(self, what, value):
            calls.append((what, value))

    monkeypatch.setattr(spill, "_libc", FakeLibc())
    spill.map_large_allocations()
    assert calls == [(spill._M_MMAP_THRESHOLD, 1 << 22), (spill._M_TRIM_THRESHOLD, 1 << 25)]
    calls.clear()
    spill.map_large_allocations(spill.SHARDED_MMAP_THRESHOLD)
    assert calls == [(spill._M_MMAP_THRESHOLD, 1 << 17), (spill._M_TRIM_THRESHOLD, 1 << 17)]


@settings(max_examples=200, deadline=None)
@given(big=st.sets(st.text(max_size=3), max_size=60),
       small=st.lists(st.sets(st.text(max_size=3), max_size=4), max_size=3), at=st.integers(0, 3))
def test_union_sorted_is_the_sorted_set_union_with_each_lists_positions(big, small, at):
    """The merge's union of sorted string lists (stems, surfaces, labels): the fast path for one
    large list and a few small ones, and the general one, give the sorted union and true positions."""
    from tablelm.tables.counts import union_sorted

    lists = [sorted(x) for x in small]
    lists.insert(min(at, len(lists)), sorted(big))
    union, maps = union_sorted(lists)
    assert union == sorted(set().union(*lists))
    assert [[union[i] for i in m.tolist()] for m in maps] == lists
