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
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..tables.hashing import WIDTH, hash_rows, sort_rows
from .agents import detect_agent

_EXCLUDE_RE = re.compile(r"(?<!\S)!(\S+)")
_FORCED_RE = re.compile(r"(?<!\S)(\S+(?:~\S+)+)")


@dataclass
class Term:
    """A multitoken as the plan uses it."""

    mt: int
    text: str
    n: int
    role: str
    weight: float = 1.0
    via: str | None = None  # for expansions: the prompt multitoken it came from

    def to_dict(self) -> dict:
        d = {"multitoken": self.text, "words": self.n, "role": self.role, "weight": round(self.weight, 6)}
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
    forced_missing: list[str] = field(default_factory=list)
    terms: list[Term] = field(default_factory=list)

    def active(self) -> list[Term]:
        """Terms the ranker scores (not generic, not zero-weight)."""
        return [t for t in self.terms if t.role != "generic" and t.weight > 0]

    def to_dict(self) -> dict:
        by = lambda role: [t.text for t in self.terms if t.role == role]  # noqa: E731
        return {
            "agent": self.agent,
            "tokens_kept": self.words,
            "unknown": self.unknown,
            "ignored": self.ignored,
            "excluded": self.excluded,
            "forced_not_in_dictionary": self.forced_missing,
            "multitokens_matched": [t.text for t in self.terms if t.role in ("prompt", "forced")],
            "dropped": {"contained": by("contained"), "generic": by("generic")},
            "expanded": [t.to_dict() for t in self.terms if t.role in ("expansion", "feedback")],
            "terms": [t.to_dict() for t in self.terms],
        }


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

    def _stems_of(self, text: str) -> list[str]:
        return self.model.analyzer.prompt_stems(text)

    def plan(self, prompt: str, params: dict) -> Plan:
        """The plan of one prompt."""
        return self.plan_many([prompt], params)[0]

    def plan_many(self, prompts: list[str], params: dict) -> list[Plan]:
        """Plans of several prompts; the n-gram lookups of all of them are one vectorized pass."""
        prepared = [self._prepare(p, params) for p in prompts]
        found = self._match([seq for _, seq, _ in prepared], params)
        return [self._finish(plan, f, forced, params) for (plan, _, forced), f in zip(prepared, found)]

    def _prepare(self, prompt: str, params: dict):
        """Syntax, intent and the prompt's stem ids in order (-1: not in the corpus)."""
        m = self.model
        plan = Plan(prompt=prompt, agent=detect_agent(prompt))
        text = prompt
        # ---- syntax: !word excludes, a~b forces a multitoken
        excluded_stems = set()
        for w in _EXCLUDE_RE.findall(text):
            plan.excluded.append(w)
            excluded_stems.update(self._stems_of(w))
        text = _EXCLUDE_RE.sub(" ", text)
        forced = []
        for group in _FORCED_RE.findall(text):
            forced.append([self._stems_of(p) for p in group.split("~")])
        text = text.replace("~", " ")
        ignore_stems = {s for w in params["ignore"] for s in self._stems_of(w)}

        # ---- tokens of the prompt, in order (unknown words keep their position)
        stem_ids = m.tables.stem_ids
        seq = []
        seen_words = set()
        for kind, s, start, end in m.analyzer.tokens_with_spans(text):
            if kind != 0:
                continue
            surface = text[start:end]
            if s in ignore_stems:
                plan.ignored.append(surface)
                continue
            if s in excluded_stems:
                continue
            sid = stem_ids.get(s, -1)
            seq.append(sid)
            if sid < 0:
                plan.unknown.append(surface)
            elif s not in seen_words:
                seen_words.add(s)
                plan.words.append(m.tables.display_stem(sid))
        plan.excluded_mts = sorted({stem_ids[s] for s in excluded_stems if s in stem_ids})
        return plan, seq, forced

    def _finish(self, plan: Plan, matched: set, forced: list, params: dict) -> Plan:
        """Forced multitokens, distillation and term weights."""
        m = self.model
        stem_ids = m.tables.stem_ids
        roles = {mt: "prompt" for mt in sorted(matched)}
        for parts in forced:
            flat = [stem_ids.get(s, -1) for p in parts for s in p]
            mt = m.tables.lookup_multitoken(flat) if flat and min(flat) >= 0 else None
            if mt is None:
                plan.forced_missing.append(" ".join(m.analyzer.stem_word(s) for p in parts for s in p) or "~")
            else:
                roles[mt] = "forced"
        self._distill(roles, params)
        weight_of = {"prompt": 1.0, "forced": 1.0, "contained": params["contained_weight"], "generic": 0.0}
        for mt in sorted(roles, key=lambda x: (-m.tables.mt_len[x], x)):
            n = int(m.tables.mt_len[mt])
            w = weight_of[roles[mt]]
            if n >= 2 and roles[mt] != "generic":
                w *= params["phrase_weight"] if roles[mt] != "forced" else max(params["phrase_weight"], 1.0)
            plan.terms.append(Term(mt=mt, text=m.tables.display(mt), n=n, role=roles[mt], weight=w))
        return plan

    def _match(self, seqs: list[list[int]], params: dict) -> list[set]:
        """Multitoken ids found among the sub-combinations of each prompt's stems."""
        m = self.model
        found = [{x for x in seq if x >= 0} for seq in seqs]  # single words: mt id == stem id
        max_n = min(int(m.build_params["max_ngram"]), WIDTH)
        if max_n < 2 or len(m.tables.sng_hash) == 0 or not any(len(f) > 1 for f in found):
            return found
        skip = int(params["match_skip"])
        pat = _patterns(skip, max_n)
        # all prompts in one array, apart by more than a combination's span (-2 never matches)
        gap = [-2] * (max_n + skip)
        flat, owner = [], []
        for i, seq in enumerate(seqs):
            flat.extend(seq)
            flat.extend(gap)
            owner.extend([i] * (len(seq) + len(gap)))
        seq, owner = np.asarray(flat, dtype=np.int64), np.asarray(owner, dtype=np.int64)
        n = len(seq)
        pos = (np.arange(n).reshape(-1, 1, 1) + pat.reshape(1, *pat.shape)).reshape(-1, WIDTH)
        pad = np.broadcast_to(pat < 0, (n,) + pat.shape).reshape(-1, WIDTH)
        words = np.where(pad, -1, seq[np.minimum(pos, n - 1)])
        ok = ~((pos >= n) & ~pad).any(axis=1) & ~((words < 0) & ~pad).any(axis=1)
        words, who = words[ok], owner[pos[ok, 0]]
        if len(words) == 0:
            return found
        key = sort_rows(words)
        h = hash_rows(key)
        lo = np.searchsorted(m.tables.sng_hash, h, side="left")
        n_c = np.searchsorted(m.tables.sng_hash, h, side="right") - lo
        if n_c.sum() == 0:
            return found
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
        for q, mt in zip(np.concatenate([who[row[exact]], who[r2[first]]]).tolist(),
                         np.concatenate([cand[exact], c2[first]]).tolist()):
            found[q].add(mt)
        return found

    def _distill(self, roles: dict, params: dict) -> None:
        m = self.model
        cap = params["max_token_count"]
        if cap:
            for mt in roles:
                if roles[mt] != "forced" and m.tables.mt_total[mt] > cap:
                    roles[mt] = "generic"
        # a multitoken whose words all lie inside a longer matched multitoken is contained
        longer = [mt for mt in roles if m.tables.mt_len[mt] >= 2 and roles[mt] != "generic"]
        if not longer:
            return
        rows = m.tables.mt_words[longer]
        inside = set(rows[rows >= 0].tolist())
        sets = [set(r) - {-1} for r in rows.tolist()]
        for mt in roles:
            if roles[mt] != "prompt":
                continue
            if m.tables.mt_len[mt] == 1:  # a single word's multitoken id is its stem id
                if mt in inside:
                    roles[mt] = "contained"
                continue
            ws = set(m.tables.mt_words[mt].tolist()) - {-1}
            if any(len(s) > len(ws) and ws <= s for s in sets):
                roles[mt] = "contained"
