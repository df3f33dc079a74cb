"""Prompt → plan: syntax, intent, tokens, sorted n-gram matching, distillation.

A plan is everything the ranker needs and everything a user needs to see why:
the words kept, unknown, ignored and excluded; the agent detected from intent
words; the matched multitokens with their role:

``prompt``
    a multitoken of the prompt, found in the dictionary;
``forced``
    an ``a~b`` multitoken written by the user;
``contained``
    a multitoken contained in a longer matched one (distillation);
``generic``
    a multitoken whose corpus count exceeds ``max_token_count`` (distillation).

Matching sorts the prompt's stems and looks every sub-combination of up to
``max_ngram`` words that skips at most ``match_skip`` prompt words up in the
sorted n-gram table, so "file read" finds the corpus multitoken "read file".
The skip bound bounds the work: a prompt of P words costs P times a small
constant of lookups instead of 2^P, all in one vectorized hash + binary search.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..tables.hashing import _POS, WIDTH, hash_rows, sort_rows
from ..text.analyzer import SEGMENT_END
from .agents import _NEEDLES, NEEDLES, detect_agent

_EXCLUDE_RE = re.compile(r"(?<!\S)!(\S+)")
_FORCED_RE = re.compile(r"(?<!\S)(\S+(?:~\S+)+)")
_PHRASE_RE = re.compile(r'"([^"]+)"')
MAX_PHRASE_PROMPT_WORDS = 12
#: Planner._prepare_many reads a batch in one pass from this many prompts without syntax (fewer: one by
#: one, which costs less than the pass's dozen numpy calls)
BATCH_MIN = 8
#: the tokens whose codes Planner._prepare_many keeps (see Planner._token_codes)
TOKEN_CODES = 50_000
_LETTER_RE = re.compile(r"(?<![\w.])([A-Za-z])(?![\w.])")
_WORDISH_RE = re.compile(r"[^\W_]+")
# a word of _WORDISH_RE that is one capital letter (the capital first: the search skips to capitals ~3x faster
# than with the lookbehind first)
_ONE_CAPITAL_RE = re.compile(r"[A-Z](?<![^\W_][A-Z])(?![^\W_])")


def _may_have_letters(text: str) -> bool:
    """Whether ``text`` can have a letter phrase or a single letter worth saying: a one-letter word
    that is a capital, or a ``~`` (which joins a letter of any case); "a" alone is neither."""
    if "~" in text:
        return True
    return not text.islower() and _ONE_CAPITAL_RE.search(text) is not None  # islower: no capital at all
_GLUE_RE = re.compile(r"[ \t~-]+")  # what may stand between a letter and the word it belongs to
# "type I", "class II"...: after these words a capital I is a numeral, not the pronoun
_NUMERAL_WORDS = frozenset("type class phase grade stage category group part chapter level world war".split())
# one of them as a word of a lowercased text: a capital I may be a numeral there (a word's lowercase is
# the lowercase of its characters, and lowercasing makes no letter or digit of a character that is
# neither, so this finds every word whose lowercase is one of them)
_NUMERAL_ANY = re.compile(r"(?<![^\W_])(?:" + "|".join(sorted(_NUMERAL_WORDS)) + r")(?![^\W_])")


def letter_phrases(prompt: str, is_content) -> list[tuple[str, str, list[tuple[str, int]]]]:
    """Single letters attached to a neighbouring word: ``(letter, display, [(word, side), ...])``.

    A single letter is no term of its own; the build indexes a capital one with the content word
    right next to it as a two-word multitoken ("vitamin A", "T cells", "C API", "type I"; see
    text/analyzer.py). The prompt's letters are read by the same rule: a capital letter ("I"
    only after a word such as "type": elsewhere it is the pronoun), or any letter joined by ``~``
    ("vitamin~d", which stands for "vitamin D"), is attached to the content words right before
    (side -1) and right after it (side +1; not for "A" and "I": "A deficiency of" starts with the
    article). ``is_content(word)``: whether a word counts (not a stopword, not a letter).
    """
    if not _may_have_letters(prompt):  # most prompts: one fast search
        return []
    toks = [(m.group(), m.start(), m.end()) for m in _WORDISH_RE.finditer(prompt)]
    out = []
    for i, (w, s, e) in enumerate(toks):
        if len(w) != 1 or not w.isascii() or not w.isalpha():
            continue
        if prompt[s - 1:s] == "." or prompt[e:e + 1] == ".":  # "e.g.", "U.S."
            continue
        prev = toks[i - 1] if i and _GLUE_RE.fullmatch(prompt[toks[i - 1][2]:s]) else None
        nxt = toks[i + 1] if i + 1 < len(toks) and _GLUE_RE.fullmatch(prompt[e:toks[i + 1][1]]) else None
        forced = (prev is not None and "~" in prompt[prev[2]:s]) or (nxt is not None and "~" in prompt[e:nxt[1]])
        if not forced and not (w.isupper() and (w != "I" or (prev is not None and prev[0].lower() in _NUMERAL_WORDS))):
            continue
        # the content words next to it: "vitamin A", "T cells", "conventional T cells" (both)
        sides: list[tuple[str, int]] = []
        if prev is not None and is_content(prev[0]):
            sides.append((prev[0], -1))
        if nxt is not None and is_content(nxt[0]) and (w.upper() not in "AI" or forced):  # "A deficiency"
            sides.append((nxt[0], 1))
        if sides:
            shown = " ".join([x for x, side in sides if side < 0] + [w] + [x for x, side in sides if side > 0])
            out.append((w, shown, sides))
    return out


@dataclass
class Term:
    """A multitoken as the plan uses it."""

    mt: int
    text: str
    n: int
    role: str
    weight: float = 1.0
    via: str | None = None  # for expansions: the prompt multitoken it came from
    qtf: int = 1  # times the prompt says it
    stretch: int | None = None  # phrases of one stretch of the prompt share an id: they count once

    def to_dict(self) -> dict:
        d = {"multitoken": self.text, "words": self.n, "role": self.role, "weight": round(self.weight, 6)}
        if self.qtf > 1:
            d["qtf"] = self.qtf
        if self.stretch is not None:
            d["stretch"] = self.stretch
        if self.via:
            d["via"] = self.via
        return d


@dataclass
class Plan:
    prompt: str
    agent: str | None = None
    words: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    excluded_mts: list[int] = field(default_factory=list)
    # per excluded word: (stem id, the word, whether a prompt word has its stem: then the
    # exclusion checks the word itself in the entities, so "!publication" keeps "public")
    exclusions: list[tuple[int, str, bool]] = field(default_factory=list)
    forced_missing: list[str] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)        # "exact phrase" texts
    required_mts: list[int] = field(default_factory=list)   # their multitokens: entities must have them
    letters: list[str] = field(default_factory=list)        # single letters (no terms of their own)
    # letters attached to a word ("vitamin A"), as the prompt says them
    letter_phrases: list[str] = field(default_factory=list)
    # their two-word multitokens that the model has (scored as matched multitokens), and their display
    letter_mts: list[int] = field(default_factory=list)
    letter_found: list[str] = field(default_factory=list)
    # False: the model was built before letters were indexed (its analyzer records none)
    letters_indexed: bool = True
    filters: list[str] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)

    def active(self) -> list[Term]:
        """Terms the ranker scores (not generic, not zero-weight)."""
        return [t for t in self.terms if t.role != "generic" and t.weight > 0]

    def to_dict(self) -> dict:
        by = lambda role: [t.text for t in self.terms if t.role == role]
        return {
            "agent": self.agent,
            "tokens_kept": self.words,
            "unknown": self.unknown,
            "ignored": self.ignored,
            "excluded": self.excluded,
            "forced_not_in_dictionary": self.forced_missing,
            "phrases": self.phrases,
            "single_letters": self.letters,
            "letter_phrases": self.letter_phrases,
            "letter_multitokens": self.letter_found,
            "letters_indexed": self.letters_indexed,
            "filters": self.filters,
            "multitokens_matched": [t.text for t in self.terms if t.role in ("prompt", "forced")],
            "dropped": {"contained": by("contained"), "generic": by("generic")},
            "expanded": [t.to_dict() for t in self.terms if t.role in ("expansion", "feedback")],
            "terms": [t.to_dict() for t in self.terms],
        }


#: the compiled planner's role codes (_jit.finish_plans), by code
ROLES = ("prompt", "forced", "contained", "generic")


class PlanBatch:
    """The plans of a batch of prompts (:meth:`Planner.plan_batch`), whose terms may still be arrays.

    ``arrays``: the compiled planner's output, ``(q_ptr, mts, words, roles, weights, qtfs,
    stretches)``, prompt i's terms at ``q_ptr[i]:q_ptr[i+1]`` in plan order (role codes as
    :data:`ROLES`, stretch -1: none), or None when every plan's terms are filled. ``fill(i)``
    makes plan i's :class:`Term` objects from them (what ``ask`` and ``why`` read); the batched
    search reads :meth:`kernel_input` instead and never makes them. ``lazy``: the plans whose
    ``words`` and ``unknown`` (what ``to_dict`` shows, no score reads them) ``fill(i)`` makes too
    (those of :meth:`Planner._prepare_many`'s batched pass), or None: none.
    """

    def __init__(self, planner: Planner, plans: list[Plan], arrays, compiled=None, lazy=None):
        self.planner = planner
        self.plans = plans
        self.arrays = arrays
        self.compiled = np.zeros(len(plans), dtype=bool) if arrays is None else compiled
        self._filled = ~self.compiled
        self._lazy = lazy

    def fill(self, i: int) -> Plan:
        """Plan ``i`` with its terms (and its words)."""
        plan = self.plans[i]
        if self._lazy is not None and self._lazy[i]:
            _, plan.words, plan.unknown, _ = self.planner._words(plan.prompt)
            self._lazy[i] = False
        if not self._filled[i]:
            q_ptr, mt, n, role, w, qtf, st = self.arrays
            lo, hi = int(q_ptr[i]), int(q_ptr[i + 1])
            display = self.planner.model.tables.display
            plan.terms = [Term(m, display(m), nn, ROLES[r], ww, None, qq, None if s < 0 else s)
                          for m, nn, r, ww, qq, s in zip(*(a[lo:hi].tolist() for a in (mt, n, role, w, qtf, st)))]
            self._filled[i] = True
        return plan

    def kernel_input(self, group: list[int], idf_of):
        """``kernel.prepare_many`` of the active terms of the plans ``group``, read from the arrays."""
        from . import kernel

        g = np.asarray(group, dtype=np.int64)
        comp = self.compiled[g] if len(g) else np.zeros(0, dtype=bool)
        if not comp.any():
            return kernel.prepare_many([self.fill(i).active() for i in group], idf_of)
        q_ptr, mt, _, role, w, _, st = self.arrays
        at = np.flatnonzero(comp)  # the compiled plans' terms read from the arrays
        starts = q_ptr[g[at]]
        lens = q_ptr[g[at] + 1] - starts
        idx = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
        owner = np.repeat(at, lens)
        keep = (role[idx] != 3) & (w[idx] > 0)  # Plan.active(): not generic, a positive weight
        idx, owner = idx[keep], owner[keep]
        t_mt, t_w, t_st = mt[idx], w[idx], st[idx]
        if not comp.all():  # the others (a forced multitoken, a quoted phrase) from their terms alone:
            rest = np.flatnonzero(~comp)  # one such prompt no longer makes the batch build every plan's
            terms = [(j, t) for j in rest.tolist() for t in self.fill(int(g[j])).active()]
            owner = np.concatenate((owner, np.fromiter((j for j, _ in terms), dtype=np.int64, count=len(terms))))
            t_mt = np.concatenate((t_mt, np.fromiter((t.mt for _, t in terms), dtype=np.int64, count=len(terms))))
            t_w = np.concatenate((t_w, np.fromiter((t.weight for _, t in terms), dtype=np.float64,
                                                   count=len(terms))))
            t_st = np.concatenate((t_st, np.fromiter((-1 if t.stretch is None else t.stretch for _, t in terms),
                                                     dtype=np.int64, count=len(terms))))
            order = np.argsort(owner, kind="stable")  # by plan, each plan's terms in their order
            owner, t_mt, t_w, t_st = owner[order], t_mt[order], t_w[order], t_st[order]
        ptr = np.zeros(len(g) + 1, dtype=np.int64)
        ptr[1:] = np.cumsum(np.bincount(owner, minlength=len(g)))
        return kernel.prepare_arrays(ptr, t_mt, t_w, t_st, idf_of)


def _flatten(seqs: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(all the stem ids in one int64 array, pointers: prompt i's at ``ptr[i]:ptr[i+1]``)."""
    ptr = np.zeros(len(seqs) + 1, dtype=np.int64)
    ptr[1:] = np.cumsum([len(x) for x in seqs])
    return np.fromiter(itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(ptr[-1])), ptr


def _unflatten(flat: np.ndarray, ptr: np.ndarray) -> list[list[int]]:
    """:func:`_flatten`'s lists back."""
    values, bounds = flat.tolist(), ptr.tolist()
    return [values[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])]


def _several_words(flat: np.ndarray, ptr: np.ndarray) -> bool:
    """Whether a prompt of the flat stems has two or more known stems, the same one twice included (a
    window of two known words may be a multitoken: "cells ... cells" may find "cell cell")."""
    known = np.zeros(len(flat) + 1, dtype=np.int64)
    np.cumsum(flat >= 0, out=known[1:])
    return bool((known[ptr[1:]] - known[ptr[:-1]] >= 2).any())


def _no_syntax(prompt: str) -> bool:
    """Whether :meth:`Planner._prepare` reads ``prompt`` as it is: no ``a~b``, no ``!word``, no quoted
    phrase that counts (2 to 4 words, in a prompt of at most MAX_PHRASE_PROMPT_WORDS), and no
    :data:`SEGMENT_END` (the batched pass's separator)."""
    if "~" in prompt or SEGMENT_END in prompt or ("!" in prompt and _EXCLUDE_RE.search(prompt)):
        return False
    return '"' not in prompt or len(prompt.split()) > MAX_PHRASE_PROMPT_WORDS or \
        not any(2 <= len(m.group(1).split()) <= 4 for m in _PHRASE_RE.finditer(prompt))


def _owners(texts: list[str], positions: list[int]) -> list[int]:
    """The text of each position of ``texts`` joined by one character."""
    starts = np.zeros(len(texts), dtype=np.int64)
    np.cumsum([len(t) + 1 for t in texts[:-1]], out=starts[1:])
    return (np.searchsorted(starts, np.asarray(positions, dtype=np.int64), side="right") - 1).tolist()


def _find_all(text: str, needles: tuple[str, ...]) -> list[int]:
    """Where any of ``needles`` starts in ``text`` (str.find per needle: a few times faster than one
    regex of the alternatives over a long text)."""
    out = []
    for needle in needles:
        i = text.find(needle)
        while i >= 0:
            out.append(i)
            i = text.find(needle, i + 1)
    return out


def _ro_u64(a) -> np.ndarray:
    """``a`` as a uint64 array (the compiled matcher's type; a view when it is one already)."""
    return np.asarray(a, dtype=np.uint64)


@lru_cache(maxsize=64)
def _patterns(skip: int, max_n: int) -> np.ndarray:
    """Offsets of the multi-word sub-combinations starting at 0 that skip at most ``skip`` words."""
    rows = []
    for n in range(2, max_n + 1):
        for rest in itertools.combinations(range(1, n + skip), n - 1):
            rows.append((0, *rest) + (-1,) * (WIDTH - n))
    return np.asarray(rows, dtype=np.int64).reshape(-1, WIDTH)


class Planner:
    """Turns prompts into plans against one model's tables."""

    def __init__(self, model):
        self.model = model
        self._stem_info: dict[str, tuple] = {}  # a prompt stem -> (stem, id, display) (bounded, see _stem_info_of)
        self._token_info: dict[str, tuple] = {}  # a prompt token -> its stems' infos (bounded, see _word_infos)
        self._codes: dict[str, int] | None = None  # a prompt token -> its code (see _prepare_many)
        self._lookups: dict[tuple, int | None] = {}  # stem ids -> their multitoken (bounded, see _lookup)
        self._code_n = np.zeros(0, dtype=np.int8)
        self._code_sid = np.zeros(0, dtype=np.int64)

    def _stems_of(self, text: str) -> list[str]:
        return self.model.analyzer.prompt_stems(text)

    def _stem_info_of(self, s: str) -> tuple:
        """(stem, its id or -1, its display or None), cached (bounded)."""
        got = self._stem_info.get(s)
        if got is None:
            t = self.model.tables
            sid = t.stem_ids.get(s, -1)
            got = (s, sid, t.display_stem(sid) if sid >= 0 else None)
            if len(self._stem_info) >= 50_000:
                self._stem_info.clear()
            self._stem_info[s] = got
        return got

    def _word_infos(self, text: str) -> list[tuple[str, tuple]]:
        """(surface, stem infos) of each word of ``text`` in order, as ``Analyzer.tokens_with_spans``
        gives them (boundaries left out; a CJK run gives each of its grams), each stem as
        :meth:`_stem_info_of` gives it; a token's infos are cached."""
        a = self.model.analyzer
        if a.bigrams:  # grams cite their own characters: the general path
            return [(text[i:j], (self._stem_info_of(s),)) for kind, s, i, j in a.tokens_with_spans(text) if kind == 0]
        cache = self._token_info
        out = []
        for tok in a.token_re.findall(text):
            got = cache.get(tok)
            if got is None:
                got = tuple(self._stem_info_of(s) for kind, s, _, _ in a.tokens_with_spans(tok) if kind == 0)
                if len(cache) >= 50_000:
                    cache.clear()
                cache[tok] = got
            if got:
                out.append((tok, got))
        return out

    def _words(self, text: str, ignore_stems=None, excluded_words=None, ignored=None):
        """``text``'s stem ids in order (-1: not in the corpus), the words kept (each stem's display,
        once), the unknown words (as written) and the stems kept; the surfaces of ``ignore_stems``'
        words go to ``ignored``, the words of ``excluded_words`` (casefolded) nowhere."""
        seq: list[int] = []
        seen_words: set[str] = set()
        unknown: list[str] = []
        kept: list[str] = []
        for surface, stems in self._word_infos(text):
            for s, sid, shown in stems:
                if ignore_stems and s in ignore_stems:
                    ignored.append(surface)
                    continue
                if excluded_words and surface.casefold() in excluded_words:  # "line ... !line": the word goes
                    continue
                seq.append(sid)
                if sid < 0:
                    unknown.append(surface)
                elif s not in seen_words:
                    seen_words.add(s)
                    kept.append(shown)
        return seq, kept, unknown, seen_words

    def plan(self, prompt: str, params: dict) -> Plan:
        """The plan of one prompt."""
        return self.plan_many([prompt], params)[0]

    def plan_many(self, prompts: list[str], params: dict) -> list[Plan]:
        """Plans of several prompts; the n-gram lookups of all of them are one vectorized pass."""
        batch = self.plan_batch(prompts, params)
        for i in range(len(batch.plans)):
            batch.fill(i)
        return batch.plans

    def plan_batch(self, prompts: list[str], params: dict) -> PlanBatch:
        """:meth:`plan_many` whose terms are left as arrays where the compiled planner made them
        (:class:`PlanBatch`: ``fill(i)`` makes plan i's Term objects, ``arrays(...)`` gives the
        kernels' input without them). Without numba (or ``TABLELM_KERNEL=numpy``), and for prompts
        with forced multitokens, :meth:`_finish` fills the terms here."""
        from . import kernel

        prepared, seq, s_ptr, lazy = self._prepare_many(prompts, params)
        who, matched = self._letter_pairs(prepared, *self._match_pairs(None, params, (seq, s_ptr)))
        n_stems = getattr(self.model.tables, "n_stems", None)
        jit = kernel.compiled()
        if jit is None or n_stems is None:
            seqs = _unflatten(seq, s_ptr)
            found = self._found(seqs, who, matched)
            words = self._words_of(set().union(*found) if found else set())
            plans = [self._finish(plan, f, forced, params, Counter(sq), words)
                     for (plan, _, forced), sq, f in zip(prepared, seqs, found)]
            return PlanBatch(self, plans, None, lazy=lazy)
        t = self.model.tables
        n = len(prepared)
        owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(s_ptr))
        known = seq >= 0  # single words: multitoken id == stem id
        n_mt = max(int(t.mt_words.shape[0]), 1)
        key = np.unique(np.concatenate([owner[known], who]) * n_mt + np.concatenate([seq[known], matched]))
        q, mts = key // n_mt, key % n_mt
        q_ptr = np.searchsorted(q, np.arange(n + 1))
        rows = np.asarray(t.mt_words[mts], dtype=np.int64)
        single = mts < n_stems
        rows[single] = -1
        rows[single, 0] = mts[single]
        cap = float(params["max_token_count"] or 0)
        totals = np.asarray(t.mt_total[mts], dtype=np.float64) if cap and len(mts) else np.zeros(len(mts))
        out = (np.empty(len(mts), dtype=np.int64), np.empty(len(mts), dtype=np.int64),
               np.empty(len(mts), dtype=np.int64), np.empty(len(mts), dtype=np.float64),
               np.empty(len(mts), dtype=np.int64), np.empty(len(mts), dtype=np.int64))
        jit.finish_plans(q_ptr, mts, rows, totals, s_ptr, seq, cap, float(params["contained_weight"]),
                         float(params["phrase_weight"]), float(params["qtf_k3"]),
                         params["phrase_mode"] == "stretch", *out)
        plans = []
        compiled = np.ones(n, dtype=bool)
        for i, (plan, sq, forced) in enumerate(prepared):
            if forced:  # a~b: the general path (a lookup per forced multitoken)
                self._finish(plan, set(mts[q_ptr[i]:q_ptr[i + 1]].tolist()), forced, params, Counter(sq))
                compiled[i] = False
            plans.append(plan)
        return PlanBatch(self, plans, (q_ptr, *out), compiled, lazy)

    def _long(self, mt: int) -> bool:
        """Whether multitoken ``mt`` has two or more words (single words come first: their ids
        are the stem ids; tables without ``n_stems``, such as a sub-model scope's, say it per row)."""
        n = getattr(self.model.tables, "n_stems", None)
        return mt >= n if n is not None else bool(self.model.tables.mt_len[mt] > 1)

    def _words_of(self, mts) -> dict:
        """Multitoken -> its stem ids, for the multi-word ones of ``mts`` (single words: id == stem id,
        and they come first in the multitoken order), in one gather for a whole batch."""
        n_stems = getattr(self.model.tables, "n_stems", None)
        long = [mt for mt in mts if mt >= n_stems] if n_stems is not None else [mt for mt in mts if self._long(mt)]
        if not long:
            return {}
        rows = self.model.tables.mt_words[np.asarray(long, dtype=np.int64)].tolist()
        return {mt: [x for x in row if x >= 0] for mt, row in zip(long, rows)}

    def _prepare_many(self, prompts: list[str], params: dict):
        """:meth:`_prepare` of every prompt, and their stem ids flattened (:func:`_flatten`):
        ``(prepared, seq, s_ptr, lazy)``.

        A batch of at least :data:`BATCH_MIN` prompts without syntax (:func:`_no_syntax`; no
        ``ignore`` words; a language without bigrams) is read in one pass instead of a Python
        loop per word: the prompts joined by :data:`SEGMENT_END` (no word, letter or needle
        crosses it), one ``findall`` for their tokens, each token's code (its stem id; cached,
        bounded) looked up in C, the stems flattened with numpy; the agent's regexes run only
        on the prompts that hold one of their needles, the letter rules only on those that hold
        a capital one-letter word. Those prompts' entries of ``prepared`` have no stem list
        (None: the flat arrays hold it) and their plans no ``words`` and ``unknown`` yet
        (``lazy``: :meth:`PlanBatch.fill` makes them, with :meth:`_words`); everything else is
        :meth:`_prepare`'s, value for value (tests/test_kernel.py checks it)."""
        a = self.model.analyzer
        fast = [] if a.bigrams or params["ignore"] else [i for i, p in enumerate(prompts) if _no_syntax(p)]
        if len(fast) < BATCH_MIN:
            one_by_one = [self._prepare(p, params) for p in prompts]
            return (one_by_one, *_flatten([x[1] for x in one_by_one]), None)
        texts = [prompts[i] for i in fast]
        joined = SEGMENT_END.join(texts)
        # ---- tokens: one code per distinct token (its stem count and id), looked up in C
        codes_of = self._token_codes()
        toks = a.segment_re.findall(joined)
        codes = np.fromiter(map(codes_of.get, toks, itertools.repeat(-1)), dtype=np.int64, count=len(toks))
        miss = np.flatnonzero(codes < 0)
        if len(miss):
            for tok in dict.fromkeys(toks[i] for i in miss.tolist()):
                self._add_token(tok)
            codes[miss] = [codes_of[toks[i]] for i in miss.tolist()]
        n_of, sid_of = self._code_n[codes], self._code_sid[codes]
        owner = np.cumsum(codes == 0)  # code 0: the separator; prompt j's tokens follow the j-th one
        slow = set(owner[n_of > 1].tolist())  # a KW_map word of several stems: that prompt the long way
        keep = n_of == 1
        if slow:
            keep &= ~np.isin(owner, np.fromiter(slow, dtype=np.int64, count=len(slow)))
        f_sid, f_own = sid_of[keep], owner[keep]
        # ---- intent and letters, only where they can be
        agents: list[str | None] = [None] * len(texts)
        maybe: list[int] | range = range(len(texts))
        if _NEEDLES.pattern:  # detect_agent's pre-check, on the ASCII prompts (lowercasing keeps their length)
            asc = [j for j, t in enumerate(texts) if t.isascii()]
            low = SEGMENT_END.join([texts[j] for j in asc]).lower()
            found = _owners([texts[j] for j in asc], _find_all(low, NEEDLES))
            maybe = sorted({asc[j] for j in found} | set(range(len(texts))).difference(asc))
        for j in maybe:
            agents[j] = detect_agent(texts[j])
        # the letter rules where a capital is a one-letter word, but not for "I" alone away from a numeral
        # word ("I am interested in": the pronoun, which letter_phrases and plan.letters leave out)
        at = [m.start() for m in _ONE_CAPITAL_RE.finditer(joined)]
        capitals = {j for j, pos in zip(_owners(texts, at), at)
                    if joined[pos] != "I" or _NUMERAL_ANY.search(texts[j].lower())}
        # ---- the plans, and the other prompts the long way
        n = len(prompts)
        prepared: list = [None] * n
        lazy = np.zeros(n, dtype=bool)
        lens = np.zeros(n, dtype=np.int64)
        filters = list(params.get("filter") or ())
        letters = a.letters
        for j, (i, text) in enumerate(zip(fast, texts)):
            if j in slow:
                continue
            plan = Plan(prompt=text, agent=agents[j])
            plan.letters_indexed = letters
            plan.filters = list(filters)
            if j in capitals:  # _prepare's letters of a prompt without "~"
                attached = self._letter_phrases(plan, text)
                plan.letters = [x for x in _LETTER_RE.findall(text) if (x.isupper() and x not in "AI") or x in attached]
            prepared[i] = (plan, None, [])
            lazy[i] = True
        fast_arr = np.asarray(fast, dtype=np.int64)
        lens[fast_arr] = np.bincount(f_own, minlength=len(texts))
        for i in range(n):
            if prepared[i] is None:
                prepared[i] = self._prepare(prompts[i], params)
                lens[i] = len(prepared[i][1])
        s_ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lens, out=s_ptr[1:])
        seq = np.empty(int(s_ptr[-1]), dtype=np.int64)
        f_lens = np.bincount(f_own, minlength=len(texts))
        f_start = np.cumsum(f_lens) - f_lens
        seq[s_ptr[fast_arr[f_own]] + np.arange(len(f_sid)) - f_start[f_own]] = f_sid
        for i in np.flatnonzero(~lazy).tolist():
            seq[s_ptr[i]:s_ptr[i + 1]] = prepared[i][1]
        return prepared, seq, s_ptr, lazy

    def _token_codes(self) -> dict[str, int]:
        """The token -> code table of :meth:`_prepare_many` (code 0: the separator), emptied when it
        holds :data:`TOKEN_CODES` tokens: bounded by that plus one batch's distinct tokens."""
        if self._codes is None or len(self._codes) >= TOKEN_CODES:
            codes: dict[str, int] = {}
            self._codes = codes
            self._code_n = np.zeros(64, dtype=np.int8)  # doubled as it fills
            self._code_sid = np.full(64, -1, dtype=np.int64)
            self._add_token(SEGMENT_END)
            return codes
        return self._codes

    def _add_token(self, tok: str) -> None:
        """A code for ``tok``: its number of stems (0: a stopword, a boundary, the separator; 2: two or
        more) and, for one, its id (-1: not in the corpus), as :meth:`_word_infos` reads the token."""
        codes = self._codes
        assert codes is not None
        code = len(codes)
        if code == len(self._code_n):
            self._code_n = np.concatenate((self._code_n, np.zeros(code, dtype=np.int8)))
            self._code_sid = np.concatenate((self._code_sid, np.full(code, -1, dtype=np.int64)))
        infos = tuple(self._stem_info_of(s) for kind, s, _, _ in self.model.analyzer.tokens_with_spans(tok)
                      if kind == 0)
        self._code_n[code] = min(len(infos), 2)
        if len(infos) == 1:
            self._code_sid[code] = infos[0][1]
        codes[tok] = code

    def _prepare(self, prompt: str, params: dict):
        """Syntax, intent and the prompt's stem ids in order (-1: not in the corpus)."""
        m = self.model
        plan = Plan(prompt=prompt, agent=detect_agent(prompt))
        text = prompt
        # ---- syntax: !word excludes, "exact phrase", a~b forces a multitoken
        excluded = []
        if "!" in text:
            for w in _EXCLUDE_RE.findall(text):
                plan.excluded.append(w)
                excluded += [(s, w) for s in self._stems_of(w)]
            text = _EXCLUDE_RE.sub(" ", text)
        excluded_words = {w.casefold() for _, w in excluded}
        # "exact phrase": two to four words (a multitoken) in double quotes in a prompt of at most
        # MAX_PHRASE_PROMPT_WORDS words: a forced multitoken that the entities must contain. A
        # quoted word, a long quote, or the quotes of pasted text are text.
        if '"' in text:
            short = len(text.split()) <= MAX_PHRASE_PROMPT_WORDS

            def phrase(mt):
                words = mt.group(1).split()
                if not short or not 2 <= len(words) <= 4:
                    return mt.group(0)
                plan.phrases.append(" ".join(words))
                return " " + "~".join(words) + " "

            text = _PHRASE_RE.sub(phrase, text)
        # single letters are no terms ("vitamin A", "T cells"): one attached to a word is a two-word
        # multitoken of the model (build and prompt read letters by one rule); the others are said
        a = m.analyzer
        attached: set[str] = set()
        # no capital one-letter word and no "~": no letter phrase and no single letter to say (the
        # letters kept below are capitals or attached ones)
        one_letter = _may_have_letters(text)
        plan.letters_indexed = a.letters
        if one_letter:
            attached = self._letter_phrases(plan, text)
        forced = []
        if "~" in text:
            for group in _FORCED_RE.findall(text):
                forced.append([self._stems_of(p) for p in group.split("~")])
            text = text.replace("~", " ")
        ignore_stems = {s for w in params["ignore"] for s in self._stems_of(w)} if params["ignore"] else set()
        plan.letters = [x for x in _LETTER_RE.findall(text) if (x.isupper() and x not in "AI") or x in attached] \
            if one_letter else []

        # ---- tokens of the prompt, in order (unknown words keep their position)
        stem_ids = m.tables.stem_ids
        seq, plan.words, plan.unknown, seen_words = self._words(text, ignore_stems, excluded_words, plan.ignored)
        # an excluded word never removes another prompt word: "public conference !publication"
        # keeps "public" (same stem) and leaves out the entities that contain "publication" itself
        for s, w in excluded:
            if s in stem_ids:
                plan.exclusions.append((stem_ids[s], w, s in seen_words))
        plan.excluded_mts = sorted({sid for sid, _, _ in plan.exclusions})
        plan.filters = list(params.get("filter") or ())
        return plan, seq, forced

    def _lookup(self, stem_ids: tuple[int, ...]) -> int | None:
        """``tables.lookup_multitoken`` of a word sequence, cached (bounded): a letter's multitoken
        ("vitamin A") costs a hash and a table search, and prompts repeat their letter phrases."""
        got = self._lookups.get(stem_ids, -1)
        if got == -1:
            got = self.model.tables.lookup_multitoken(list(stem_ids))
            if len(self._lookups) >= 50_000:
                self._lookups.clear()
            self._lookups[stem_ids] = got
        return got

    def _letter_phrases(self, plan: Plan, text: str) -> set[str]:
        """The letters of ``text`` attached to a word (:func:`letter_phrases`) into ``plan``: as said,
        and the two-word multitokens of them that the model has; returns the letters attached."""
        m = self.model
        a = m.analyzer

        def is_content(word: str) -> bool:
            return len(word) > 1 and bool(a.word_stems(word.lower()))

        attached = set()
        for letter, shown, sides in letter_phrases(text, is_content):
            attached.add(letter)
            plan.letter_phrases.append(shown)
            lid = m.tables.stem_ids.get(letter.upper(), -1) if a.letters else -1
            for word, side in sides if lid >= 0 else ():
                st = a.word_stems(word.lower())  # a KW_map expansion: the stem next to the letter
                sid = m.tables.stem_ids.get(st[-1] if side < 0 else st[0], -1)
                mt = self._lookup((sid, lid) if side < 0 else (lid, sid)) if sid >= 0 else None
                if mt is not None and mt not in plan.letter_mts:
                    plan.letter_mts.append(mt)
                    plan.letter_found.append(m.tables.display(mt))
        return attached

    def _finish(self, plan: Plan, matched: set, forced: list, params: dict, counts: Counter | None = None,
                known: dict | None = None) -> Plan:
        """Forced multitokens, distillation and term weights. ``known``: stem ids of multi-word
        multitokens already looked up (see :meth:`_words_of`)."""
        m = self.model
        t = m.tables
        roles = {mt: "prompt" for mt in sorted(matched)}
        if forced:
            stem_ids = t.stem_ids
            phrase_keys = {tuple(self._stems_of(p)) for p in plan.phrases}
            for parts in forced:
                flat = [stem_ids.get(s, -1) for p in parts for s in p]
                mt = t.lookup_multitoken(flat) if flat and min(flat) >= 0 else None
                if mt is None:
                    plan.forced_missing.append(" ".join(m.analyzer.stem_word(s) for p in parts for s in p) or "~")
                else:
                    roles[mt] = "forced"
                    if tuple(s for p in parts for s in p) in phrase_keys:
                        plan.required_mts.append(mt)
        known = known or {}
        n_stems = getattr(t, "n_stems", None)
        missing = [mt for mt in roles if mt not in known and (mt >= n_stems if n_stems is not None else self._long(mt))]
        if missing:
            known = {**known, **self._words_of(missing)}
        words = {mt: known.get(mt) or [mt] for mt in roles}  # a single word's multitoken id is its stem id
        lens = {mt: len(w) for mt, w in words.items()}
        self._distill(roles, params, lens, words)
        weight_of = {"prompt": 1.0, "forced": 1.0, "contained": params["contained_weight"], "generic": 0.0}
        phrase_w = params["phrase_weight"]
        k3 = params["qtf_k3"]
        counts = counts or Counter()
        repeated = k3 > 0 and any(c > 1 for x, c in counts.items() if x >= 0)
        stretch = self._stretches(roles, lens, words) if params["phrase_mode"] == "stretch" else {}
        display = t.display
        for mt in sorted(roles, key=lambda x: (-lens[x], x)):
            n = lens[mt]
            role = roles[mt]
            w = weight_of[role]
            if n >= 2 and role != "generic":
                w *= phrase_w if role != "forced" else max(phrase_w, 1.0)
            # qtf: how often the prompt says it (a phrase: as often as its least repeated word)
            qtf = max(1, min(counts.get(x, 1) for x in words[mt])) if repeated else 1
            if qtf > 1:
                w *= (k3 + 1) * qtf / (k3 + qtf)
            plan.terms.append(Term(mt, display(mt), n, role, w, None, qtf, stretch.get(mt)))
        return plan

    @staticmethod
    def _stretches(roles: dict, lens: dict, words: dict) -> dict:
        """Phrase -> stretch id (the smallest phrase id of the stretch).

        ``lens`` and ``words``: each matched multitoken's length and stem ids. Only phrases
        whose stretch has two or more of them are listed. Matched phrases
        (two or more words, role ``prompt`` or ``contained``) that share a word lie on one
        stretch of the prompt: "amp activated protein kinase" brings
        "activated protein kinase", "protein kinase", "amp activated" ... The ranker counts a
        stretch once per entity (its best phrase there), so the sub-phrases of one long match
        do not stack up as independent evidence. Connected components by shared words.
        """
        phrases = sorted(mt for mt, r in roles.items() if lens[mt] >= 2 and r in ("prompt", "contained"))
        if len(phrases) < 2:
            return {}
        label: dict[int, int] = {}  # stem id -> stretch id; phrases in id order, so a label is a phrase id
        for mt in phrases:
            joined = {label[w] for w in words[mt] if w in label}
            if not joined:
                s = mt
            else:
                s = min(joined)
                if s > mt:
                    s = mt
                if len(joined) > 1 or s not in joined:
                    label = {w: s if v in joined else v for w, v in label.items()}
            for w in words[mt]:
                label[w] = s
        ids = {mt: label[words[mt][0]] for mt in phrases}
        size = Counter(ids.values())
        return {mt: s for mt, s in ids.items() if size[s] > 1}  # a phrase alone is its own stretch: no grouping

    def _match(self, seqs: list[list[int]], params: dict) -> list[set]:
        """Multitoken ids found among the sub-combinations of each prompt's stems."""
        return self._found(seqs, *self._match_pairs(seqs, params))

    @staticmethod
    def _letter_pairs(prepared: list, who: np.ndarray, matched: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The matched (prompt index, multitoken id) pairs with each plan's letter multitokens
        ("vitamin A") added: they are matched multitokens like the others."""
        extra = [(i, mt) for i, (plan, _, _) in enumerate(prepared) for mt in plan.letter_mts]
        if not extra:
            return who, matched
        q, mts = np.asarray(extra, dtype=np.int64).T
        return np.concatenate([who, q]), np.concatenate([matched, mts])

    @staticmethod
    def _found(seqs: list[list[int]], who: np.ndarray, matched: np.ndarray) -> list[set]:
        """Per prompt: its known words' ids (single words: mt id == stem id) and its matched multitokens."""
        found = [{x for x in seq if x >= 0} for seq in seqs]
        for q, mt in zip(who.tolist(), matched.tolist()):
            found[q].add(mt)
        return found

    def _match_pairs(self, seqs: list[list[int]] | None, params: dict, flat=None) -> tuple[np.ndarray, np.ndarray]:
        """The multi-word multitokens found among the sub-combinations of each prompt's stems:
        (prompt index, multitoken id) pairs, in two arrays (a pair may repeat). ``flat``: the stems
        as :func:`_flatten` gives them, when the caller has them (then ``seqs`` may be None)."""
        m = self.model
        none = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        max_n = min(int(m.build_params["max_ngram"]), WIDTH)
        if max_n < 2 or len(m.tables.sng_hash) == 0:
            return none
        if flat is None:
            assert seqs is not None
            flat = _flatten(seqs)
        if not _several_words(*flat):
            return none
        skip = int(params["match_skip"])
        pat = _patterns(skip, max_n)
        from . import kernel

        jit = kernel.compiled()
        if jit is not None:  # the windows, hashes, lookups and checks in one compiled pass (same matches)
            t = m.tables
            row, who_c, cand, exact, row_exact = jit.match_windows(
                flat[0], flat[1], pat, _ro_u64(t.sng_hash), np.asarray(t.sng_mt), np.asarray(t.mt_words), _POS)
            rest = ~row_exact[row]
            r2, c2, w2 = row[rest], cand[rest], who_c[rest]
            order = np.lexsort((c2, -np.asarray(t.mt_total[c2], dtype=np.int64), r2))
            r2, c2, w2 = r2[order], c2[order], w2[order]
            first = np.ones(len(r2), dtype=bool)
            first[1:] = r2[1:] != r2[:-1]
            return np.concatenate([who_c[exact], w2[first]]), np.concatenate([cand[exact], c2[first]])
        # all prompts in one array, apart by more than a combination's span (-2 never matches)
        seqs = _unflatten(*flat) if seqs is None else seqs
        gap = [-2] * (max_n + skip)
        flat_l: list[int] = []
        owners: list[int] = []
        for i, seq in enumerate(seqs):
            flat_l.extend(seq)
            flat_l.extend(gap)
            owners.extend([i] * (len(seq) + len(gap)))
        stream, owner = np.asarray(flat_l, dtype=np.int64), np.asarray(owners, dtype=np.int64)
        n = len(stream)
        pos = (np.arange(n).reshape(-1, 1, 1) + pat.reshape(1, *pat.shape)).reshape(-1, WIDTH)
        pad = np.broadcast_to(pat < 0, (n,) + pat.shape).reshape(-1, WIDTH)
        words = np.where(pad, -1, stream[np.minimum(pos, n - 1)])
        ok = ~((pos >= n) & ~pad).any(axis=1) & ~((words < 0) & ~pad).any(axis=1)
        words, who = words[ok], owner[pos[ok, 0]]
        if len(words) == 0:
            return none
        key = sort_rows(words)
        h = hash_rows(key)
        # the hashes searched in sorted order (numpy's search then starts where the last one ended:
        # ~3x faster than in prompt order), the bounds put back in prompt order
        by = np.argsort(h)
        hs = h[by]
        lo = np.empty(len(h), dtype=np.int64)
        n_c = np.empty(len(h), dtype=np.int64)
        lo[by] = np.searchsorted(m.tables.sng_hash, hs, side="left")
        n_c[by] = np.searchsorted(m.tables.sng_hash, hs, side="right") - lo[by]
        if n_c.sum() == 0:
            return none
        row = np.repeat(np.arange(len(words)), n_c)
        cand = np.asarray(m.tables.sng_mt[np.arange(int(n_c.sum())) - np.repeat(np.cumsum(n_c) - n_c, n_c)
                                   + np.repeat(lo, n_c)], dtype=np.int64)
        cw = m.tables.mt_words[cand]
        ok = (sort_rows(cw) == key[row]).all(axis=1)  # a hash collision costs a miss, not a wrong match
        row, cand, cw = row[ok], cand[ok], cw[ok]
        # the corpus orders of these words: the prompt's own order if the corpus has it,
        # else the most frequent one ("file read" finds "read file")
        exact = (cw == words[row]).all(axis=1)
        has_exact = np.zeros(len(words), dtype=bool)
        has_exact[row[exact]] = True
        rest = ~has_exact[row]
        r2, c2 = row[rest], cand[rest]
        order = np.lexsort((c2, -m.tables.mt_total[c2], r2))
        r2, c2 = r2[order], c2[order]
        first = np.ones(len(r2), dtype=bool)
        first[1:] = r2[1:] != r2[:-1]
        return (np.concatenate([who[row[exact]], who[r2[first]]]).astype(np.int64),
                np.concatenate([cand[exact], c2[first]]).astype(np.int64))

    def _distill(self, roles: dict, params: dict, lens: dict, words: dict) -> None:
        """Roles ``generic`` (corpus count over ``max_token_count``) and ``contained`` (every word
        inside a longer matched multitoken); ``lens`` and ``words`` as in :meth:`_stretches`."""
        m = self.model
        cap = params["max_token_count"]
        if cap:
            for mt in roles:
                if roles[mt] != "forced" and m.tables.mt_total[mt] > cap:
                    roles[mt] = "generic"
        # a multitoken whose words all lie inside a longer matched multitoken is contained
        sets = {frozenset(words[mt]) for mt in roles if lens[mt] >= 2 and roles[mt] != "generic"}
        if not sets:
            return
        inside = set().union(*sets)
        for mt in roles:
            if roles[mt] != "prompt":
                continue
            if lens[mt] == 1:
                if mt in inside:
                    roles[mt] = "contained"
            else:  # its words a proper subset of a longer one's
                own = frozenset(words[mt])
                for longer in sets:
                    if own < longer:
                        roles[mt] = "contained"
                        break
