"""Text → word ids: normalization, tokenization, stopwords, KW_map, stemming.

The same :class:`Analyzer` serves the build (fast path: one ``re.findall`` and
one dict lookup per token) and the query and citation paths (with character
spans). Its rules:

- Tokens and boundaries are found in the raw text; each token is then
  NFKC-normalized (only when it is not ASCII) and lowercased.
- A word is a run of letters and digits, with inner underscores kept
  (``read_file`` is one word). Single letters are dropped; single digits are kept.
- ``. ! ? ; :`` followed by a space, and blank lines, end a *sentence*;
  commas, parentheses and brackets end a *clause*. Multitokens never cross a
  clause; contextual pairs never cross a sentence.
- Stopwords are removed and bridged: "read the file" gives the multitoken
  ``read file``.
- ``KW_map`` maps a word to one or more words before stemming (plural →
  singular, acronym → expansion, synonyms: map "remove" to "remove delete").
  A key matches the word itself and any word with the same stem.
- Words are reduced to their Snowball English stem; answers show the most
  frequent surface form of a stem instead ("unstemming").
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import numpy as np
import Stemmer

from .stopwords import STOPWORDS

# One pattern for words and for the punctuation that ends sentences/clauses.
TOKEN_RE = re.compile(r"[^\W_]+(?:_+[^\W_]+)*|[.!?;:](?=\s|$)|[,()\[\]{}]|\n[ \t\r\f\v]*\n")

# Ends a text in the build's joined stream: a private-use character, removed from the texts.
SEGMENT_END = "\ue000"
_SEGMENT_TOKEN_RE = re.compile(TOKEN_RE.pattern + "|" + SEGMENT_END)

# Codes of the special tokens in a surface-id stream (real stems are >= 0).
SENTENCE = -1
CLAUSE = -2
DROP = -3

_SENTENCE_MARKS = frozenset(".!?;:")
_CLAUSE_MARKS = frozenset(",()[]{}")

MAX_WORD_CHARS = 40


def normalize(text: str) -> str:
    """NFKC (non-ASCII text only) and lowercase."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return text.lower()


def _marker(tok: str) -> int | None:
    if tok in _SENTENCE_MARKS or tok[0] == "\n":
        return SENTENCE
    if tok in _CLAUSE_MARKS:
        return CLAUSE
    return None


@lru_cache(maxsize=4)
def _stemmer():
    # no PyStemmer cache: the build stems each distinct word once, where its cache makes
    # stemming 3-5x slower (its documentation warns of this case), and prompts are cached
    # by Analyzer.word_stems
    return Stemmer.Stemmer("english", 0)


class Analyzer:
    """Maps surface words to stems and stems to ids.

    Parameters
    ----------
    stem : bool
        Apply the Snowball stemmer.
    stopwords : iterable of str
        Words removed (and bridged) before multitokens are formed.
    kw_map : dict of str to str
        Word → replacement word(s), applied before stemming.
    """

    def __init__(self, *, stem: bool = True, stopwords=STOPWORDS, kw_map: dict | None = None):
        self.stem = stem
        self.stopwords = frozenset(stopwords)
        self.kw_map = {normalize(k).strip(): normalize(v).split() for k, v in (kw_map or {}).items()}
        self._cache: dict[str, list[str]] = {}
        self._kw_stems = {self.stem_word(k): v for k, v in self.kw_map.items() if " " not in k}

    # -------------------------------------------------------------- single words
    def stem_word(self, word: str) -> str:
        return _stemmer().stemWord(word) if self.stem else word

    def word_stems(self, word: str) -> list[str]:
        """Stems a surface word stands for: [] for a stopword or a dropped token."""
        hit = self._cache.get(word)
        if hit is None:
            hit = self._cache[word] = self._word_stems(word)
            if len(self._cache) > 100_000:
                self._cache.clear()
        return hit

    def _word_stems(self, word: str) -> list[str]:
        words = self.kw_map.get(word)
        if words is None:  # a key also matches the words of its stem ("directories" for "directory")
            words = self._kw_stems.get(self.stem_word(word), (word,)) if self._kw_stems else (word,)
        return [self.stem_word(w) for w in words if self._kept(w)]

    def _kept(self, word: str) -> bool:
        """Not a stopword, not over MAX_WORD_CHARS, not a single letter (single digits are kept)."""
        return word not in self.stopwords and len(word) <= MAX_WORD_CHARS and (len(word) != 1 or word.isdigit())

    def stems_of_words(self, words: list[str]) -> list[list[str]]:
        """:meth:`word_stems` of many normalized words, with one call of the stemmer."""
        stems = _stemmer().stemWords(words) if self.stem else words
        out = []
        for word, stem in zip(words, stems):
            if word in self.kw_map or stem in self._kw_stems:
                out.append(self.word_stems(word))
            else:
                out.append([stem] if self._kept(word) else [])
        return out

    # -------------------------------------------------------------- with spans
    def tokens_with_spans(self, text: str):
        """Yield ``(kind, stem, start, end)`` over ``text`` with character spans.

        ``kind`` is ``SENTENCE`` or ``CLAUSE`` for a boundary (``stem`` None), or
        0 for a word. Spans index ``text`` itself (not its normalized form).
        """
        for m in TOKEN_RE.finditer(text):
            tok = m.group()
            mark = _marker(tok)
            if mark is not None:
                yield mark, None, m.start(), m.end()
                continue
            for s in self.word_stems(normalize(tok)):
                yield 0, s, m.start(), m.end()

    def prompt_stems(self, text: str) -> list[str]:
        """Stems of a prompt's content words, in order (boundaries ignored)."""
        return [s for kind, s, _, _ in self.tokens_with_spans(text) if kind == 0]

    def config(self) -> dict:
        """What the manifest records so that a query uses the build's rules."""
        return {"stem": self.stem, "stemmer": "snowball-english" if self.stem else None,
                "stopwords": sorted(self.stopwords),
                "kw_map": {k: " ".join(v) for k, v in sorted(self.kw_map.items())}}


def read_kw_map(path) -> dict[str, str]:
    """A KW_map file: a JSON object ``{word: replacement words}``; keys starting with ``_`` are comments."""
    import json

    from ..errors import TablelmError

    try:
        data = json.loads(open(path, encoding="utf-8").read())
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise ValueError("expected an object of word -> replacement strings")
    except (OSError, ValueError) as e:
        raise TablelmError(f"{path}: not a usable KW map ({e}). Example: {{\"ml\": \"machine learning\"}}") from None
    return {k: v for k, v in data.items() if not k.startswith("_")}


def python_kw_map() -> dict[str, str]:
    """The KW_map of the built-in corpus (package data)."""
    from pathlib import Path

    return read_kw_map(Path(__file__).resolve().parent.parent / "data" / "python_kw_map.json")


class SurfaceVocabulary:
    """Build-time map surface word → surface id, with each surface's stem.

    Surface ids 0 and 1 are the sentence and clause markers, 2 the end of a segment
    (a field of an entity; it also ends a sentence). ``stem_of`` holds, per
    surface id, a stem index into ``stems`` (first-seen order), or a negative code
    (SENTENCE, CLAUSE, DROP). Words that the KW_map expands to several words get
    one surface id per produced stem, recorded in ``expansions``.
    """

    def __init__(self, analyzer: Analyzer):
        self.analyzer = analyzer
        self.ids: dict[str, int] = {}
        self.surfaces: list[str] = []
        self.stem_of: list[int] = []
        self.stems: list[str] = []
        self._stem_ids: dict[str, int] = {}
        self.expansions: dict[str, list[int]] = {}
        self.raw_ids: dict[str, int] = {}  # raw token (before lowercasing) → surface id
        self.raw_expansions: dict[str, list[int]] = {}
        for tok, code in (("\n\n", SENTENCE), (",", CLAUSE), (SEGMENT_END, SENTENCE)):
            self._add(tok, code)
        for tok in _SENTENCE_MARKS:
            self.ids[tok] = 0
        for tok in _CLAUSE_MARKS:
            self.ids[tok] = 1

    def _add(self, surface: str, code: int) -> int:
        sid = len(self.surfaces)
        self.surfaces.append(surface)
        self.stem_of.append(code)
        self.ids[surface] = sid
        return sid

    def _stem_id(self, stem: str) -> int:
        i = self._stem_ids.get(stem)
        if i is None:
            i = self._stem_ids[stem] = len(self.stems)
            self.stems.append(stem)
        return i

    def _register(self, raw_tokens: list[str]) -> None:
        """Give surface ids to raw tokens not seen before (in the given order), stemming them at once."""
        norms = [t.lower() if t.isascii() else normalize(t) for t in raw_tokens]
        fresh = [n for n in dict.fromkeys(norms) if n not in self.ids]
        for n in fresh:
            if n[0] == "\n":  # a blank line
                self.ids[n] = 0
        words = [n for n in fresh if n[0] != "\n"]
        for word, stems in zip(words, self.analyzer.stems_of_words(words)):
            if len(stems) <= 1:
                self._add(word, self._stem_id(stems[0]) if stems else DROP)
            else:  # KW_map expansion to several words: one pseudo-surface per stem
                sids = [self._add(f"{word}\x00{i}", self._stem_id(st)) for i, st in enumerate(stems)]
                self.expansions[word] = sids
                self.ids[word] = sids[0]
        for tok, norm in zip(raw_tokens, norms):
            self.raw_ids[tok] = self.ids[norm]
            if norm in self.expansions:
                self.raw_expansions[tok] = self.expansions[norm]

    def encode_segments(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Surface ids of several texts, each followed by a segment end (a sentence marker).

        The build's hot path: the texts are joined with a private-use character that the
        token pattern emits as a token of its own, so one ``re.findall`` and one dict lookup
        per distinct token serve them all. Tokens are found in the raw text and then
        normalized, exactly as :meth:`Analyzer.tokens_with_spans` does at query time.

        Returns
        -------
        sids : ndarray of int32
        lengths : ndarray of int64
            Number of ids of each text, its segment end included.
        """
        if not texts:
            return np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.int64)
        big = SEGMENT_END.join(t.replace(SEGMENT_END, " ") for t in texts) + SEGMENT_END
        toks = _SEGMENT_TOKEN_RE.findall(big)
        raw = self.raw_ids
        distinct = set(toks)
        self._register(sorted(distinct.difference(raw)))  # sorted: ids independent of hash order
        if self.raw_expansions and not self.raw_expansions.keys().isdisjoint(distinct):
            out = []
            for t in toks:
                out.extend(self.raw_expansions.get(t) or (raw[t],))
            sids = np.asarray(out, dtype=np.int32)
        else:
            sids = np.fromiter(map(raw.__getitem__, toks), dtype=np.int32, count=len(toks))
        ends = np.flatnonzero(sids == 2)
        return sids, np.diff(np.concatenate(([-1], ends)))
