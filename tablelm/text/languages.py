"""Languages the analyzer knows: stemmer, stopword list and word segmentation per language.

A language is named by its ISO 639-1 code (the ``language`` build parameter). For each:

- **stemmer**: the Snowball algorithm of that language when PyStemmer has one (the same
  library and algorithms as the English stemmer), else no stemming;
- **stopwords**: English uses tablelm's own list (:mod:`tablelm.text.stopwords`); every other
  language the list of the maintained ``stopwordsiso`` package (the stopwords-iso collection,
  shipped inside the package, nothing fetched at run time); a language without such a list
  (Nepali, Serbian, Tamil, Yiddish) gets one from the corpus's own frequencies at build time
  (:func:`corpus_stopwords`), saved in the manifest like any list;
- **segmentation**: ``"words"`` (runs of letters, digits and combining marks) for languages
  written with spaces; ``"bigrams"`` for Chinese and Japanese, written without spaces
  between words: a run of Han, Hiragana or Katakana characters becomes its overlapping
  character bigrams (a run of one character stays one unigram), the offline segmentation of
  Lucene's CJK analyzer (CJKBigramFilter), which needs no dictionary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

#: ISO 639-1 code -> Snowball algorithm name in PyStemmer (``Stemmer.algorithms()``).
SNOWBALL = {
    "ar": "arabic", "hy": "armenian", "eu": "basque", "ca": "catalan", "cs": "czech",
    "da": "danish", "nl": "dutch", "en": "english", "eo": "esperanto", "et": "estonian",
    "fi": "finnish", "fr": "french", "de": "german", "el": "greek", "hi": "hindi",
    "hu": "hungarian", "id": "indonesian", "ga": "irish", "it": "italian", "lt": "lithuanian",
    "ne": "nepali", "no": "norwegian", "fa": "persian", "pl": "polish", "pt": "portuguese",
    "ro": "romanian", "ru": "russian", "sr": "serbian", "st": "sesotho", "es": "spanish",
    "sv": "swedish", "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}

#: Languages with a stopwords-iso list but no Snowball stemmer (words are not stemmed).
STOPWORDS_ONLY = ("af", "bg", "bn", "br", "gl", "gu", "ha", "he", "hr", "ja", "ko", "ku", "la",
                  "lv", "mr", "ms", "sk", "sl", "so", "sw", "th", "tl", "uk", "ur", "vi", "yo",
                  "zh", "zu")

#: Languages written without spaces between words: character bigrams.
BIGRAM_LANGUAGES = ("ja", "zh")

#: Every accepted code, English first (the default), then alphabetical.
LANGUAGES = ("en",) + tuple(sorted((set(SNOWBALL) | set(STOPWORDS_ONLY)) - {"en"}))


def stemmer_name(language: str) -> str | None:
    """The Snowball algorithm of ``language``, or None when it has none."""
    return SNOWBALL.get(language)


def segmentation(language: str) -> str:
    """``"bigrams"`` for languages written without spaces, else ``"words"``."""
    return "bigrams" if language in BIGRAM_LANGUAGES else "words"


@lru_cache(maxsize=8)
def default_stopwords(language: str) -> frozenset[str]:
    """The stopword list of ``language`` (normalized as tokens are: NFKC, lowercase)."""
    if language == "en":
        from .stopwords import STOPWORDS

        return STOPWORDS
    import stopwordsiso

    from .analyzer import normalize

    if not stopwordsiso.has_lang(language):
        return frozenset()
    return frozenset(normalize(w).strip() for w in stopwordsiso.stopwords(language) if w.strip())


#: :func:`corpus_stopwords`: a word found in more than this share of the entities is a stopword
#: (the default of Lucene's QueryAutoStopWordAnalyzer, ``maxDocFreqPercent`` = 40%).
AUTO_STOPWORD_SHARE = 0.4
#: ... when the corpus has at least this many entities (below, shares say little).
AUTO_STOPWORD_MIN_ENTITIES = 20


def corpus_stopwords(texts: Iterable[str], analyzer) -> frozenset[str]:
    """Stopwords of a corpus from its own document frequencies, for languages without a list.

    Words (normalized as the analyzer finds them) that occur in more than
    :data:`AUTO_STOPWORD_SHARE` of the texts; none when there are fewer than
    :data:`AUTO_STOPWORD_MIN_ENTITIES` texts.
    """
    from .analyzer import _marker, normalize

    df: Counter = Counter()
    n = 0
    for text in texts:
        n += 1
        df.update({normalize(tok) for tok in analyzer.token_re.findall(text) if _marker(tok) is None})
    if n < AUTO_STOPWORD_MIN_ENTITIES:
        return frozenset()
    return frozenset(w for w, c in df.items() if c > AUTO_STOPWORD_SHARE * n)
