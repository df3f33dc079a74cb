"""Text → word ids: normalization, tokenization, stopwords, KW_map, stemming.

The same :class:`Analyzer` serves the build (fast path: one ``re.findall`` and
one dict lookup per token) and the query and citation paths (with character
spans). Its rules:

- Tokens and boundaries are found in the raw text; each token is then
  NFKC-normalized (only when it is not ASCII) and lowercased.
- A word is a run of letters and digits, with inner underscores kept
  (``read_file`` is one word). Single letters are dropped; single digits are kept.
- A capital single letter (ASCII) right next to a content word forms a two-word multitoken
  with it ("vitamin A", "T cells", "C API", "type I"): the build counts it with the others
  (``letters``, on by default; models built before record none). "A" and "I" attach only to
  the word before them ("A study", "I think" are the article and the pronoun). The letter
  itself is never a term of its own: no single-letter postings.
- ``. ! ? ; :`` followed by a space, and blank lines, end a *sentence*;
  commas, parentheses and brackets end a *clause*. Multitokens never cross a
  clause; contextual pairs never cross a sentence.
- Stopwords are removed and bridged: "read the file" gives the multitoken
  ``read file``.
- ``KW_map`` maps a word to one or more words before stemming (plural →
  singular, acronym → expansion, synonyms: map "remove" to "remove delete").
  A key matches the word itself and any word with the same stem.
- Words are reduced to their Snowball stem; answers show the most
  frequent surface form of a stem instead ("unstemming").
- ``language`` (ISO 639-1, default ``"en"``) chooses the stemmer, the default
  stopword list and the segmentation (:mod:`tablelm.text.languages`). For a
  language other than English a word also takes the combining marks inside it
  (Devanagari and Tamil vowel signs, decomposed accents); Chinese and Japanese
  runs of Han, Hiragana and Katakana become overlapping character bigrams, and
  their full-width punctuation (``。！？；：`` and ``，、（）「」``...) ends
  sentences and clauses.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import numpy as np
import Stemmer

from . import languages

_BOUNDARIES = r"[.!?;:](?=\s|$)|[,()\[\]{}]|\n[ \t\r\f\v]*\n"
# One pattern for words and for the punctuation that ends sentences/clauses (English).
TOKEN_RE = re.compile(r"[^\W_]+(?:_+[^\W_]+)*|" + _BOUNDARIES)

# Ends a text in the build's joined stream: a private-use character, removed from the texts.
SEGMENT_END = "\ue000"

# Han (CJK ideographs and their extension A, compatibility ideographs), Hiragana, Katakana
# (with the prolonged sound mark and the half-width forms)
_CJK = "\u3005\u3007\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_HIRAGANA_BOUNDARY = re.compile("[\u3040-\u309f]+|[^\u3040-\u309f]+")
_CJK_SENTENCE = "。！？；：．"
_CJK_CLAUSE = "，、（）「」『』【】《》〈〉［］｛｝"

# Codes of the special tokens in a surface-id stream (real stems are >= 0).
SENTENCE = -1
CLAUSE = -2
DROP = -3
LETTER = -4  # a capital single letter (a surface of its own, dropped as DROP is; see ``letters``)

_SENTENCE_MARKS = frozenset(".!?;:" + _CJK_SENTENCE)
_CLAUSE_MARKS = frozenset(",()[]{}" + _CJK_CLAUSE)

MAX_WORD_CHARS = 40


def normalize(text: str) -> str:
    """NFKC (non-ASCII text only) and lowercase."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return text.lower()


def boundary(tok: str) -> int | None:
    """``SENTENCE`` or ``CLAUSE`` for a token that is a boundary, else None."""
    if tok in _SENTENCE_MARKS or tok[0] == "\n":
        return SENTENCE
    if tok in _CLAUSE_MARKS:
        return CLAUSE
    return None


@lru_cache(maxsize=1)
def _combining_marks() -> str:
    """A character-class body of the combining marks (category M) of the Basic Multilingual Plane."""
    ranges, start = [], None
    for cp in range(0x300, 0x10000):
        mark = unicodedata.category(chr(cp))[0] == "M"
        if mark and start is None:
            start = cp
        elif not mark and start is not None:
            ranges.append(f"{chr(start)}-{chr(cp - 1)}" if cp - 1 > start else chr(start))
            start = None
    return re.escape("".join(ranges)).replace("\\-", "-")


@lru_cache(maxsize=8)
def token_pattern(language: str = "en") -> re.Pattern:
    """The token pattern of a language (words and boundaries), see the module notes."""
    if language == "en":
        return TOKEN_RE
    marks = _combining_marks()
    if languages.segmentation(language) == "bigrams":
        letter = f"[^\\W_{_CJK}]"
        cjk = f"[{_CJK}]+|[{_CJK_SENTENCE}]|[{_CJK_CLAUSE}]|"
    else:
        letter, cjk = r"[^\W_]", ""
    word = f"{letter}+(?:[{marks}]+{letter}*)*"
    return re.compile(f"{cjk}{word}(?:_+{word})*|{_BOUNDARIES}")


@lru_cache(maxsize=8)
def _segment_pattern(language: str) -> re.Pattern:
    """:func:`token_pattern` that also emits :data:`SEGMENT_END` as a token (the build's stream)."""
    return re.compile(token_pattern(language).pattern + "|" + SEGMENT_END)


@lru_cache(maxsize=8)
def _stemmer(algorithm: str = "english"):
    # no PyStemmer cache: the build stems each distinct word once, where its cache makes
    # stemming 3-5x slower (its documentation warns of this case), and prompts are cached
    # by Analyzer.word_stems
    return Stemmer.Stemmer(algorithm, 0)


class Analyzer:
    """Maps surface words to stems and stems to ids.

    Parameters
    ----------
    stem : bool
        Apply the Snowball stemmer of the language (if it has one).
    stopwords : iterable of str, optional
        Words removed (and bridged) before multitokens are formed; default: the language's
        list (:func:`tablelm.text.languages.default_stopwords`).
    kw_map : dict of str to str
        Word → replacement word(s), applied before stemming.
    language : str
        ISO 639-1 code (:data:`tablelm.text.languages.LANGUAGES`).
    letters : bool
        Index a capital single letter next to a content word as a two-word multitoken with it
        (see the module notes); False for the models built before (their manifests say nothing).
    """

    def __init__(self, *, stem: bool = True, stopwords=None, kw_map: dict | None = None,
                 language: str = "en", letters: bool = True):
        if language not in languages.LANGUAGES:
            from ..errors import ParamError

            raise ParamError(f"The 'language' parameter must be one of "
                             f"{', '.join(map(repr, languages.LANGUAGES))}. Got {language!r}.")
        self.language = language
        self.letters = bool(letters)
        self.algorithm = languages.stemmer_name(language)
        self.stem = stem
        self._stems = stem and self.algorithm is not None
        self.bigrams = languages.segmentation(language) == "bigrams"
        self.token_re = token_pattern(language)
        self.segment_re = _segment_pattern(language)
        self.stopwords = frozenset(languages.default_stopwords(language) if stopwords is None else stopwords)
        self.kw_map = {normalize(k).strip(): normalize(v).split() for k, v in (kw_map or {}).items()}
        self._cache: dict[str, list[str]] = {}
        self._kw_stems = {self.stem_word(k): v for k, v in self.kw_map.items() if " " not in k}

    # -------------------------------------------------------------- single words
    def stem_word(self, word: str) -> str:
        return _stemmer(self.algorithm).stemWord(word) if self._stems else word

    def word_stems(self, word: str) -> list[str]:
        """Stems a surface word stands for: [] for a stopword or a dropped token."""
        hit = self._cache.get(word)
        if hit is None:
            hit = self._cache[word] = self._word_stems(word)
            if len(self._cache) > 100_000:
                self._cache.clear()
        return hit

    def _word_stems(self, word: str) -> list[str]:
        if self.bigrams and _CJK_CHAR.match(word):
            return [g for _, g in self.cjk_grams(word)]
        words: list[str] | tuple[str, ...] | None = self.kw_map.get(word)
        if words is None:  # a key also matches the words of its stem ("directories" for "directory")
            words = self._kw_stems.get(self.stem_word(word), (word,)) if self._kw_stems else (word,)
        return [self.stem_word(w) for w in words if self._kept(w)]

    def _kept(self, word: str) -> bool:
        """Not a stopword, not over MAX_WORD_CHARS, not a single letter (single digits are kept)."""
        return word not in self.stopwords and len(word) <= MAX_WORD_CHARS and (len(word) != 1 or word.isdigit())

    def cjk_grams(self, run: str) -> list[tuple[int, str]]:
        """``(offset, gram)`` of a run of Han/Kana characters: its overlapping bigrams, or the
        run itself when it has one character; grams that are stopwords are left out.

        Japanese runs are first cut where Hiragana starts or stops: Hiragana mostly writes
        particles and inflections ("ファイルの所有者を変更する" → ファイル の 所有者 を 変更 する),
        so bigrams across that boundary ("ルの", "者を") would only add noise.
        """
        pieces = ([(m.group(), m.start()) for m in _HIRAGANA_BOUNDARY.finditer(run)] if self.language == "ja"
                  else [(run, 0)])
        grams = []
        for piece, at in pieces:
            if len(piece) == 1:
                grams.append((at, piece))
            else:
                grams.extend((at + i, piece[i:i + 2]) for i in range(len(piece) - 1))
        return [(i, g) for i, g in grams if g not in self.stopwords]

    def stems_of_words(self, words: list[str]) -> list[list[str]]:
        """:meth:`word_stems` of many normalized words, with one call of the stemmer."""
        stems = _stemmer(self.algorithm).stemWords(words) if self._stems else words
        out = []
        for word, stem in zip(words, stems):
            if word in self.kw_map or stem in self._kw_stems or (self.bigrams and _CJK_CHAR.match(word)):
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
        for m in self.token_re.finditer(text):
            tok = m.group()
            mark = boundary(tok)
            if mark is not None:
                yield mark, None, m.start(), m.end()
                continue
            word = normalize(tok)
            if self.bigrams and len(word) == len(tok) and _CJK_CHAR.match(word):
                # each bigram cites its own two characters
                for i, gram in self.cjk_grams(word):
                    yield 0, gram, m.start() + i, m.start() + i + len(gram)
                continue
            for s in self.word_stems(word):
                yield 0, s, m.start(), m.end()

    def prompt_stems(self, text: str) -> list[str]:
        """Stems of a prompt's content words, in order (boundaries ignored)."""
        return [s for kind, s, _, _ in self.tokens_with_spans(text) if kind == 0]

    def config(self) -> dict:
        """What the manifest records so that a query uses the build's rules."""
        return {"language": self.language, "stem": self.stem,
                "stemmer": f"snowball-{self.algorithm}" if self._stems else None,
                "segmentation": languages.segmentation(self.language),
                "stopwords": sorted(self.stopwords),
                "kw_map": {k: " ".join(v) for k, v in sorted(self.kw_map.items())}, "letters": self.letters}


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
    (SENTENCE, CLAUSE, DROP, LETTER: a capital single letter, whose surface is the letter
    itself, apart from the lowercase one). Words that the KW_map expands to several words get
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
        bigrams = self.analyzer.bigrams
        for word, stems in zip(words, self.analyzer.stems_of_words(words)):
            # a CJK run that stands for one gram other than itself ("に変更する" → 変更) is no
            # surface of that gram: answers must show the gram, not the run
            if len(stems) <= 1 and not (bigrams and stems and stems[0] != word and _CJK_CHAR.match(word)):
                self._add(word, self._stem_id(stems[0]) if stems else DROP)
            else:  # KW_map expansion to several words: one pseudo-surface per stem
                sids = [self._add(f"{word}\x00{i}", self._stem_id(st)) for i, st in enumerate(stems)]
                self.expansions[word] = sids
                self.ids[word] = sids[0]
        letters = self.analyzer.letters
        for tok, norm in zip(raw_tokens, norms):
            if letters and len(tok) == 1 and "A" <= tok <= "Z":  # a capital letter: its own surface
                self.raw_ids[tok] = self.ids.get(tok) or self._add(tok, LETTER)
                continue
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
        toks = self.analyzer.segment_re.findall(big)
        raw = self.raw_ids
        distinct = set(toks)
        self._register(sorted(distinct.difference(raw)))  # sorted: ids independent of hash order
        if self.raw_expansions and not self.raw_expansions.keys().isdisjoint(distinct):
            out: list[int] = []
            for t in toks:
                out.extend(self.raw_expansions.get(t) or (raw[t],))
            sids = np.asarray(out, dtype=np.int32)
        else:
            sids = np.fromiter(map(raw.__getitem__, toks), dtype=np.int32, count=len(toks))
        ends = np.flatnonzero(sids == 2)
        return sids, np.diff(np.concatenate(([-1], ends)))
