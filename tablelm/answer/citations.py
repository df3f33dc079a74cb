"""Citations: where in an entity's own text the matched multitokens occur.

Positions are not stored in the tables (they would double the model). The few
entities shown are re-tokenized with the build's analyzer, which gives exact
character spans; the same clause rule as the build decides what a multitoken
occurrence is, so every citation is a span the counting pass also counted.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

from ..text.analyzer import CLAUSE, SENTENCE, boundary, normalize
from .snippets import make_snippet
from .types import Citation

#: per model, what each raw token of a text stands for (a boundary kind, or its stem ids), and the
#: words of the texts tokenized last (a card's citations, then the short answer, read the same text)
_MEMO: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
MAX_TOKEN_MEMO = 200_000
RECENT_TEXTS = 16
_LOCK = threading.Lock()


def _words(model, text: str) -> list[tuple[int, int, int, int]]:
    """``(stem id, start, end, clause)`` of the words of ``text`` (-1: not in the dictionary).

    The same tokens, stems and clause numbers as ``Analyzer.tokens_with_spans``; what a raw token
    stands for is remembered per model (a bounded memo), so a long entity costs one dictionary
    lookup a token instead of normalizing and stemming it again.
    """
    with _LOCK:
        if model not in _MEMO:
            _MEMO[model] = ({}, OrderedDict())
        memo, recent = _MEMO[model]
        words = recent.get(text)
        if words is not None:
            recent.move_to_end(text)
            return words
        if len(memo) > MAX_TOKEN_MEMO:
            memo.clear()
    words = _tokenize(model, text, memo)
    with _LOCK:
        recent[text] = words
        if len(recent) > RECENT_TEXTS:
            recent.popitem(last=False)
    return words


def _tokenize(model, text: str, memo: dict) -> list[tuple[int, int, int, int]]:
    an = model.analyzer
    stem_ids = model.tables.stem_ids
    words: list[tuple[int, int, int, int]] = []
    clause = 0
    if an.bigrams:  # character bigrams carry their own spans inside a token
        for kind, s, start, end in an.tokens_with_spans(text):
            if kind in (SENTENCE, CLAUSE):
                clause += 1
            else:
                words.append((stem_ids.get(s, -1), start, end, clause))
        return words
    append = words.append
    for m in an.token_re.finditer(text):
        meaning = memo.get(m.group())
        if meaning is None:
            tok = m.group()
            mark = boundary(tok)
            meaning = memo[tok] = mark if mark is not None else tuple(
                stem_ids.get(s, -1) for s in an.word_stems(normalize(tok)))
        if isinstance(meaning, int):
            clause += 1
        elif meaning:  # () for a stopword
            start, end = m.span()
            for i in meaning:
                append((i, start, end, clause))
    return words


def _letter_pairs(model, text: str) -> list[tuple[tuple[int, int], int, int]]:
    """``((stem id, stem id), start, end)`` of the letter multitokens of ``text`` ("vitamin A", "T cells"),
    by the build's rule (build._attached_letters): a capital single letter and the content word of the
    token right before it, or right after it (not for "A" and "I")."""
    an, ids = model.analyzer, model.tables.stem_ids
    toks = list(an.token_re.finditer(text))

    def content(m):  # the stems of a word of more than one character (None: a boundary, a stopword...)
        word = normalize(m.group())
        return (an.word_stems(word) or None) if len(word) > 1 and boundary(m.group()) is None else None

    out = []
    for i, m in enumerate(toks):
        tok = m.group()
        if len(tok) != 1 or not "A" <= tok <= "Z" or (lid := ids.get(tok, -1)) < 0:
            continue
        if i and (st := content(toks[i - 1])):
            out.append(((ids.get(st[-1], -1), lid), toks[i - 1].start(), m.end()))
        if tok not in "AI" and i + 1 < len(toks) and (st := content(toks[i + 1])):
            out.append(((lid, ids.get(st[0], -1)), m.start(), toks[i + 1].end()))
    return out


def find_spans(model, text: str, targets: dict[tuple, str], max_n: int):
    """Yield ``(start, end, multitoken text)`` of every occurrence of ``targets``.

    ``targets`` maps a tuple of stem ids (corpus order) to the display text; a letter multitoken's
    occurrences come after the others'.
    """
    yield from _word_spans(model, text, targets, max_n)
    if model.analyzer.letters and any(len(key) == 2 for key in targets):
        letters = {model.tables.stem_ids.get(x, -1) for x in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"} - {-1}
        if any(x in letters for key in targets if len(key) == 2 for x in key):
            for key, start, end in _letter_pairs(model, text):
                hit = targets.get(key)
                if hit is not None:
                    yield start, end, hit


def _word_spans(model, text: str, targets: dict[tuple, str], max_n: int):
    words = _words(model, text)
    firsts = {key[0] for key in targets}
    for i, (first, start, _, clause) in enumerate(words):
        if first not in firsts:
            continue
        for n in range(1, max_n + 1):
            j = i + n - 1
            if j >= len(words) or words[j][3] != clause:
                break
            hit = targets.get(tuple(w[0] for w in words[i:j + 1]))
            if hit is not None:
                yield start, words[j][2], hit


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
