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
        stem_ids = m.stem_ids
        seq = []  # stem id or -1 (unknown)
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
                plan.words.append(m.display_stem(sid))
        plan.excluded_mts = sorted({stem_ids[s] for s in excluded_stems if s in stem_ids})

        matched = self._match(np.asarray(seq, dtype=np.int64), params)
        roles = {mt: "prompt" for mt in matched}
        for parts in forced:
            flat = [stem_ids.get(s, -1) for p in parts for s in p]
            mt = m.lookup_multitoken(flat) if flat and min(flat) >= 0 else None
            if mt is None:
                plan.forced_missing.append(" ".join(m.analyzer.stem_word(s) for p in parts for s in p) or "~")
            else:
                roles[mt] = "forced"
        self._distill(roles, params)
        weight_of = {"prompt": 1.0, "forced": 1.0, "contained": params["contained_weight"], "generic": 0.0}
        for mt in sorted(roles, key=lambda x: (-m.mt_len[x], x)):
            n = int(m.mt_len[mt])
            w = weight_of[roles[mt]]
            if n >= 2 and roles[mt] != "generic":
                w *= params["phrase_weight"] if roles[mt] != "forced" else max(params["phrase_weight"], 1.0)
            plan.terms.append(Term(mt=mt, text=m.display(mt), n=n, role=roles[mt], weight=w))
        return plan

    def _match(self, seq: np.ndarray, params: dict) -> list[int]:
        """Multitoken ids found among the sub-combinations of the prompt's stems."""
        m = self.model
        known = seq[seq >= 0]
        found = set(int(x) for x in np.unique(known))  # single words: mt id == stem id
        max_n = min(int(m.build_params["max_ngram"]), WIDTH)
        if max_n < 2 or len(known) < 2 or len(m.sng_hash) == 0:
            return sorted(found)
        pat = _patterns(int(params["match_skip"]), max_n)
        pos = np.arange(len(seq)).reshape(-1, 1, 1) + pat.reshape(1, *pat.shape)
        pos = pos.reshape(-1, WIDTH)
        pad = pat[np.newaxis].repeat(len(seq), axis=0).reshape(-1, WIDTH) < 0
        ok = ~((pos >= len(seq)) & ~pad).any(axis=1)
        pos, pad = pos[ok], pad[ok]
        words = np.where(pad, -1, seq[np.minimum(pos, len(seq) - 1)])
        words = words[~((words < 0) & ~pad).any(axis=1)]
        if len(words) == 0:
            return sorted(found)
        key = sort_rows(words)
        h = hash_rows(key)
        lo = np.searchsorted(m.sng_hash, h, side="left")
        n_c = np.searchsorted(m.sng_hash, h, side="right") - lo
        if n_c.sum() == 0:
            return sorted(found)
        row = np.repeat(np.arange(len(words)), n_c)
        cand = np.asarray(m.sng_mt[np.arange(int(n_c.sum())) - np.repeat(np.cumsum(n_c) - n_c, n_c)
                                   + np.repeat(lo, n_c)], dtype=np.int64)
        cw = m.mt_words[cand]
        ok = (sort_rows(cw) == key[row]).all(axis=1)  # a hash collision costs a miss, not a wrong match
        row, cand, cw = row[ok], cand[ok], cw[ok]
        # the corpus orders of these words: the prompt's own order if the corpus has it,
        # else the most frequent one ("file read" finds "read file")
        exact = (cw == words[row]).all(axis=1)
        found.update(cand[exact].tolist())
        has_exact = np.zeros(len(words), dtype=bool)
        has_exact[row[exact]] = True
        rest = ~has_exact[row]
        row, cand = row[rest], cand[rest]
        order = np.lexsort((cand, -m.mt_total[cand], row))
        row, cand = row[order], cand[order]
        first = np.ones(len(row), dtype=bool)
        first[1:] = row[1:] != row[:-1]
        found.update(cand[first].tolist())
        return sorted(found)

    def _distill(self, roles: dict, params: dict) -> None:
        m = self.model
        cap = params["max_token_count"]
        if cap:
            for mt in roles:
                if roles[mt] != "forced" and m.mt_total[mt] > cap:
                    roles[mt] = "generic"
        # a multitoken whose words all lie inside a longer matched multitoken is contained
        longer = [mt for mt in roles if m.mt_len[mt] >= 2 and roles[mt] != "generic"]
        if not longer:
            return
        by_words = {}
        for mt in roles:
            key = tuple(sorted(int(x) for x in m.mt_words[mt][: m.mt_len[mt]]))
            by_words.setdefault(key, []).append(mt)
        for mt in longer:
            ws = tuple(sorted(int(x) for x in m.mt_words[mt][: m.mt_len[mt]]))
            for k in range(1, len(ws)):
                for sub in itertools.combinations(ws, k):
                    for c in by_words.get(sub, ()):
                        if roles[c] == "prompt":
                            roles[c] = "contained"
