"""The short cited answer on top: 2-4 passages of the top entities, quoted, never generated.

People who come from chat LLMs want a few sentences before ten cards. Without writing a
word, the summary picks the passages (sentences, or a signature line) of the top entities
that together best cover the prompt's matched multitokens, and quotes each with its citation:
entity id and character span, ``entity.text[start:end] == passage.text`` exactly.

Scoring (a greedy maximum-coverage choice, as in extractive summarization: Carbonell &
Goldstein, "The use of MMR, diversity-based reranking for reordering documents and producing
summaries", SIGIR 1998):

* every passage of the top ``summary_cards`` entities is a candidate, so a long page or PDF is
  quoted where it matches, not by its first lines;
* a passage's gain is the sum, over the matched multitokens it contains that no chosen passage
  covers yet, of the term's query weight times its idf (the same ``q_t · idf(t)`` the ranker
  uses), plus a third of that for multitokens already covered (a second witness helps, a
  repeat helps less), times the entity's rank prior ``1 / sqrt(rank)`` (the ranker already
  judged the entities as wholes);
* a passage that is mostly code or a bare signature gets half its gain: a sentence reads better;
* the best passage is taken, coverage updated, and so on while a passage adds an uncovered
  multitoken, at most ``summary_sentences``; a second passage that adds nothing new is still
  taken from another entity (a second witness), so there are two when two entities match;
  at most two passages come from one entity.

The chosen passages are shown in the order chosen, each numbered by the card it quotes (``[2]``
is card 2), so one numbering serves the summary and the cards.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from .citations import find_spans

#: Longest passage quoted whole; a longer sentence is cut around its matches at word boundaries.
MAX_PASSAGE_CHARS = 320
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[`A-Z0-9>])|\n[ \t]*\n|(?<=:)\n")
_CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.|\$ |#|[\w.]+\(.*\)\s*(->.*)?$)")


@dataclass
class Passage:
    """One quoted passage: its citation and the multitokens it covers."""

    n: int
    entity: str
    title: str
    rank: int
    start: int
    end: int
    text: str
    multitokens: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"n": self.n, "entity": self.entity, "title": self.title, "card_rank": self.rank,
                "field": "text", "start": self.start, "end": self.end, "text": self.text,
                "multitokens": self.multitokens}


@dataclass
class Summary:
    """The passages, and which matched multitokens they cover."""

    passages: list[Passage]
    covered: list[str]
    missing: list[str]

    def to_dict(self) -> dict:
        return {"passages": [p.to_dict() for p in self.passages], "covered": self.covered,
                "missing": self.missing}

    @property
    def text(self) -> str:
        """The passages on one line each, blanks collapsed, each followed by its [n]."""
        return "\n".join(f"{' '.join(p.text.split())} [{p.n}]" for p in self.passages)


def passages(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the sentences and paragraphs of ``text``, blanks trimmed.

    A sentence ends at ``. ! ?`` followed by a space and a capital (or a quote, a bracket,
    a digit), at a blank line, and at a line ending with ``:`` (what follows is usually code);
    a docstring's signature line is a passage of its own.
    """
    cuts = [0]
    first = text.find("\n")
    if first > 0 and _CODE_LINE.match(text[:first]):
        cuts.append(first + 1)
    cuts += [m.end() for m in _SENTENCE_END.finditer(text)]
    cuts.append(len(text))
    out: list[tuple[int, int]] = []
    for s, e in zip(cuts, cuts[1:]):
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s and (not out or s >= out[-1][1]):
            out.append((s, e))
    return out


def _codeish(text: str) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return bool(lines) and sum(bool(_CODE_LINE.match(ln)) for ln in lines) * 2 > len(lines)


def _cut(text: str, s: int, e: int, spans: list[tuple[int, int, str]]) -> tuple[int, int]:
    """A long passage cut to about :data:`MAX_PASSAGE_CHARS` around its matches, at word boundaries."""
    if e - s <= MAX_PASSAGE_CHARS or not spans:
        return s, e
    lo = min(a for a, _, _ in spans)
    hi = max(b for _, b, _ in spans)
    if hi - lo >= MAX_PASSAGE_CHARS:  # matches all over: keep the first ones
        hi = lo + MAX_PASSAGE_CHARS
    pad = (MAX_PASSAGE_CHARS - (hi - lo)) // 2
    a, b = max(s, lo - pad), min(e, hi + pad)
    while a > s and not text[a - 1].isspace():
        a -= 1
    while b < e and not text[b].isspace():
        b += 1
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def summarize(model, cards, terms, weights: dict[int, float], n_sentences: int, n_cards: int) -> Summary:
    """Choose up to ``n_sentences`` passages of the top ``n_cards`` cards (see the module notes).

    Parameters
    ----------
    model : Model
        For the analyzer and the multitoken table (citations re-tokenize the text).
    cards : list of Card
        The ranked cards.
    terms : list of Term
        The matched multitokens of the prompt (the plan's active terms).
    weights : dict
        Multitoken id -> its weight in the ranking (``q_t · idf(t)``).
    """
    prompt_terms = [t for t in terms if t.role in ("prompt", "forced", "contained")]
    if n_sentences <= 0 or not cards or not prompt_terms:
        return Summary([], [], [t.text for t in terms if t.role in ("prompt", "forced")])
    targets = {}
    for t in prompt_terms:
        key = tuple(int(x) for x in model.tables.mt_words[t.mt] if x >= 0)
        targets[key] = t.text
    weight_of = {t.text: weights.get(t.mt, 0.0) for t in prompt_terms}
    max_n = max(len(k) for k in targets)
    cands = []  # (card, start, end, {multitoken}, code)
    for card in cards[:n_cards]:
        e = model.entity(card.id)
        text = e.text
        if not text:
            continue
        spans = list(find_spans(model, text, targets, max_n))
        if not spans:
            continue
        for s, end in passages(text):
            inside = [sp for sp in spans if sp[0] >= s and sp[1] <= end]
            if not inside:
                continue
            a, b = _cut(text, s, end, inside)
            inside = [sp for sp in inside if sp[0] >= a and sp[1] <= b]
            if inside:
                cands.append((card, a, b, {sp[2] for sp in inside}, _codeish(text[a:b]), text[a:b]))
    chosen: list[tuple] = []
    covered: set[str] = set()
    per_entity: dict[str, int] = {}
    while cands and len(chosen) < n_sentences:
        best, best_gain = None, 0.0
        for i, (card, _a, _b, mts, code, _quote) in enumerate(cands):
            if per_entity.get(card.id, 0) >= 2:
                continue
            new = sum(weight_of[m] for m in mts - covered)
            if new <= 0 and (len(chosen) >= 2 or any(c[0].id == card.id for c in chosen)):
                continue  # nothing new: only as a second witness, from another entity
            gain = (new + sum(weight_of[m] for m in mts & covered) / 3.0) / math.sqrt(card.rank)
            if code:
                gain *= 0.5
            if gain > best_gain:
                best, best_gain = i, gain
        if best is None:
            break
        pick = cands.pop(best)
        chosen.append(pick)
        covered |= pick[3]
        per_entity[pick[0].id] = per_entity.get(pick[0].id, 0) + 1
    out = [Passage(n=c.rank, entity=c.id, title=c.title, rank=c.rank, start=a, end=b, text=quote,
                   multitokens=sorted(mts, key=lambda m: -weight_of[m]))
           for c, a, b, mts, _, quote in chosen]
    main = [t.text for t in terms if t.role in ("prompt", "forced")]
    return Summary(out, [m for m in main if m in covered], [m for m in main if m not in covered])


def answer_summary(model, plan, cards, params: dict) -> Summary:
    """The summary of one answer, with the ranker's own term weights (``q_t · idf(t)``)."""
    from ..query.rank import idf

    active = plan.active()
    weights = {}
    if active:
        w = [t.weight for t in active] * idf(model, [t.mt for t in active])
        weights = {t.mt: float(x) for t, x in zip(active, w)}
    return summarize(model, cards, active, weights, params["summary_sentences"], params["summary_cards"])
