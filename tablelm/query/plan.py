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
from .agents import detect_agent

_EXCLUDE_RE = re.compile(r"(?<!\S)!(\S+)")
_FORCED_RE = re.compile(r"(?<!\S)(\S+(?:~\S+)+)")
_PHRASE_RE = re.compile(r'"([^"]+)"')
MAX_PHRASE_PROMPT_WORDS = 12
_LETTER_RE = re.compile(r"(?<![\w.])([A-Za-z])(?![\w.])")
_WORDISH_RE = re.compile(r"[^\W_]+")
_ONE_CAPITAL_RE = re.compile(r"(?<![^\W_])[A-Z](?![^\W_])")  # a word of _WORDISH_RE that is one capital letter


def _may_have_letters(text: str) -> bool:
    """Whether ``text`` can have a letter phrase or a single letter worth saying: a one-letter word
    that is a capital, or a ``~`` (which joins a letter of any case); "a" alone is neither."""
    if "~" in text:
        return True
    return not text.islower() and _ONE_CAPITAL_RE.search(text) is not None  # islower: no capital at all
_GLUE_RE = re.compile(r"[ \t~-]+")  # what may stand between a letter and the word it belongs to
# "type I", "class II"...: after these words a capital I is a numeral, not the pronoun
_NUMERAL_WORDS = frozenset("type class phase grade stage category group part chapter level world war".split())


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
    search reads :meth:`kernel_input` instead and never makes them.
    """

    def __init__(self, planner: Planner, plans: list[Plan], arrays, compiled=None):
        self.planner = planner
        self.plans = plans
        self.arrays = arrays
        self.compiled = np.zeros(len(plans), dtype=bool) if arrays is None else compiled
        self._filled = ~self.compiled

    def fill(self, i: int) -> Plan:
        """Plan ``i`` with its terms."""
        plan = self.plans[i]
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

        prepared = [self._prepare(p, params) for p in prompts]
        seqs = [seq for _, seq, _ in prepared]
        seq, s_ptr = _flatten(seqs)
        who, matched = self._letter_pairs(prepared, *self._match_pairs(seqs, params, (seq, s_ptr)))
        n_stems = getattr(self.model.tables, "n_stems", None)
        jit = kernel.compiled()
        if jit is None or n_stems is None:
            found = self._found(seqs, who, matched)
            words = self._words_of(set().union(*found) if found else set())
            plans = [self._finish(plan, f, forced, params, Counter(seq), words)
                     for (plan, seq, forced), f in zip(prepared, found)]
            return PlanBatch(self, plans, None)
        t = self.model.tables
        n = len(seqs)
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
        return PlanBatch(self, plans, (q_ptr, *out), compiled)

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

        def is_content(word: str) -> bool:
            return len(word) > 1 and bool(a.word_stems(word.lower()))

        attached = set()
        # no capital one-letter word and no "~": no letter phrase and no single letter to say (the
        # letters kept below are capitals or attached ones)
        one_letter = _may_have_letters(text)
        plan.letters_indexed = a.letters
        for letter, shown, sides in letter_phrases(text, is_content) if one_letter else ():
            attached.add(letter)
            plan.letter_phrases.append(shown)
            lid = m.tables.stem_ids.get(letter.upper(), -1) if a.letters else -1
            for word, side in sides if lid >= 0 else ():
                st = a.word_stems(word.lower())  # a KW_map expansion: the stem next to the letter
                sid = m.tables.stem_ids.get(st[-1] if side < 0 else st[0], -1)
                mt = m.tables.lookup_multitoken([sid, lid] if side < 0 else [lid, sid]) if sid >= 0 else None
                if mt is not None and mt not in plan.letter_mts:
                    plan.letter_mts.append(mt)
                    plan.letter_found.append(m.tables.display(mt))
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
        seq: list[int] = []
        seen_words: set[str] = set()
        unknown, kept = plan.unknown, plan.words
        for surface, stems in self._word_infos(text):
            for s, sid, shown in stems:
                if ignore_stems and s in ignore_stems:
                    plan.ignored.append(surface)
                    continue
                if excluded_words and surface.casefold() in excluded_words:  # "line ... !line": the word goes
                    continue
                seq.append(sid)
                if sid < 0:
                    unknown.append(surface)
                elif s not in seen_words:
                    seen_words.add(s)
                    kept.append(shown)
        # an excluded word never removes another prompt word: "public conference !publication"
        # keeps "public" (same stem) and leaves out the entities that contain "publication" itself
        for s, w in excluded:
            if s in stem_ids:
                plan.exclusions.append((stem_ids[s], w, s in seen_words))
        plan.excluded_mts = sorted({sid for sid, _, _ in plan.exclusions})
        plan.filters = list(params.get("filter") or ())
        return plan, seq, forced

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

    def _match_pairs(self, seqs: list[list[int]], params: dict, flat=None) -> tuple[np.ndarray, np.ndarray]:
        """The multi-word multitokens found among the sub-combinations of each prompt's stems:
        (prompt index, multitoken id) pairs, in two arrays (a pair may repeat). ``flat``: the stems
        as :func:`_flatten` gives them, when the caller has them."""
        m = self.model
        none = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        max_n = min(int(m.build_params["max_ngram"]), WIDTH)
        if max_n < 2 or len(m.tables.sng_hash) == 0 or not any(len({x for x in s if x >= 0}) > 1 for s in seqs):
            return none
        skip = int(params["match_skip"])
        pat = _patterns(skip, max_n)
        from . import kernel

        jit = kernel.compiled()
        if jit is not None:  # the windows, hashes, lookups and checks in one compiled pass (same matches)
            t = m.tables
            if flat is None:
                flat = _flatten(seqs)
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
