"""Citations: where in an entity's own text the matched multitokens occur.

Positions are not stored in the tables (they would double the model). The few
entities shown are re-tokenized with the build's analyzer, which gives exact
character spans; the same clause rule as the build decides what a multitoken
occurrence is, so every citation is a span the counting pass also counted.
"""

from __future__ import annotations

from ..text.analyzer import CLAUSE, SENTENCE
from .snippets import make_snippet
from .types import Citation


def find_spans(model, text: str, targets: dict[tuple, str], max_n: int):
    """Yield ``(start, end, multitoken text)`` of every occurrence of ``targets``.

    ``targets`` maps a tuple of stem ids (corpus order) to the display text.
    """
    stem_ids = model.tables.stem_ids
    words = []  # (stem id, start, end, clause)
    clause = 0
    for kind, s, start, end in model.analyzer.tokens_with_spans(text):
        if kind in (SENTENCE, CLAUSE):
            clause += 1
            continue
        words.append((stem_ids.get(s, -1), start, end, clause))
    for i in range(len(words)):
        for n in range(1, max_n + 1):
            j = i + n - 1
            if j >= len(words) or words[j][3] != words[i][3]:
                break
            key = tuple(w[0] for w in words[i:j + 1])
            hit = targets.get(key)
            if hit is not None:
                yield words[i][1], words[j][2], hit


def cite(model, entity, terms, snippet_chars: int, best: str | None, per_term: int = 3):
    """Citations and a snippet for one entity.

    Parameters
    ----------
    terms : list of Term
        The multitokens to look for (those that scored for this entity).
    best : str
        The display text of the strongest term: the snippet centres on it.
    """
    targets = {}
    for t in terms:
        key = tuple(int(x) for x in model.tables.mt_words[t.mt] if x >= 0)
        targets[key] = t.text
    max_n = max((len(k) for k in targets), default=1)
    citations = []
    counts: dict[tuple[str, str], int] = {}
    spans_text = []
    for fld, text in (("title", entity.title), ("text", entity.text)):
        for start, end, mt in find_spans(model, text, targets, max_n):
            if fld == "text":
                spans_text.append((start, end, mt))
            if counts.get((fld, mt), 0) < per_term:
                counts[(fld, mt)] = counts.get((fld, mt), 0) + 1
                citations.append(Citation(entity.id, fld, start, end, text[start:end], mt))
    return citations, make_snippet(entity.text, spans_text, snippet_chars, best)
