"""The ``language`` build parameter: stemmer, stopwords and segmentation per language.

The real-text tests read the German, Chinese and Japanese translations of GNU coreutils'
messages that Debian ships with ``coreutils`` itself (an Essential package) as gettext
catalogs; each message becomes an entity whose id is its English original, so a prompt in
the corpus's language must find the message that says what the prompt asks.
"""

from __future__ import annotations

import gettext
import json
from pathlib import Path

import pytest
import Stemmer
import stopwordsiso

import tablelm
from tablelm.errors import ParamError
from tablelm.params import REGISTRY
from tablelm.text.analyzer import CLAUSE, SENTENCE, Analyzer
from tablelm.text.languages import BIGRAM_LANGUAGES, LANGUAGES, SNOWBALL, default_stopwords
from tablelm.text.stopwords import STOPWORDS

LOCALE = Path("/usr/share/locale")


# --------------------------------------------------------------------------- the registry
def test_every_language_has_its_resources():
    """Each code's stemmer exists in PyStemmer, and its stopwords come from stopwords-iso."""
    assert REGISTRY["language"].constraint.choices == LANGUAGES and REGISTRY["language"].default == "en"
    assert set(SNOWBALL.values()) <= set(Stemmer.algorithms())
    for code in LANGUAGES:
        a = Analyzer(language=code)
        assert a.config()["language"] == code
        assert (a.config()["stemmer"] is not None) == (code in SNOWBALL)
        if code != "en":
            assert bool(a.stopwords) == stopwordsiso.has_lang(code), code
    assert default_stopwords("en") == STOPWORDS  # English keeps tablelm's own list
    assert Analyzer().config()["stemmer"] == "snowball-english"


def test_unknown_language_is_refused_with_the_rule():
    with pytest.raises(ParamError, match=r"The 'language' parameter must be one of 'en', .*Got 'xx'"):
        tablelm.build(["unused.jsonl"], language="xx")
    with pytest.raises(ParamError, match="'language'"):
        Analyzer(language="german")


# --------------------------------------------------------------------------- the analyzer
def test_language_stemmer_and_stopwords():
    de = Analyzer(language="de")
    # German inflections meet at one stem; "der", "und", "eine" are German stopwords
    assert de.prompt_stems("die letzten Zeilen der Datei") == de.prompt_stems("letzte Zeile einer Dateien")[:1] + \
        de.prompt_stems("Zeilen") + de.prompt_stems("Datei")
    assert de.prompt_stems("der und eine") == []
    en = Analyzer()
    assert en.prompt_stems("letzten") != en.prompt_stems("letzte")


def test_combining_marks_stay_inside_words():
    """Devanagari vowel signs are combining marks: the word is not cut at them."""
    hi = Analyzer(language="hi", stopwords=())
    text = "हिन्दी भाषा"
    words = [text[s:e] for kind, _, s, e in hi.tokens_with_spans(text) if kind == 0]
    assert words == ["हिन्दी", "भाषा"]
    assert Analyzer(language="fr", stem=False, stopwords=()).prompt_stems("cafe\u0301 noir") == ["café", "noir"]


def test_chinese_bigrams_cite_their_own_characters():
    zh = Analyzer(language="zh", stopwords=())
    text = "修改文件的所有者。Python3的用法，测试"
    toks = list(zh.tokens_with_spans(text))
    words = [(s, text[a:b]) for kind, s, a, b in toks if kind == 0]
    assert [w for w, _ in words][:4] == ["修改", "改文", "文件", "件的"]
    assert all(stem == surface.lower() for stem, surface in words)  # every span is the gram itself
    assert ("python3", "Python3") in words
    kinds = [kind for kind, *_ in toks if kind != 0]
    assert kinds == [SENTENCE, CLAUSE]  # 。 ends a sentence, ， a clause
    assert zh.prompt_stems("猫") == ["猫"]  # a lone character is a unigram, not dropped
    # the build's stream gives the same grams as the query path
    from tablelm.text.analyzer import SurfaceVocabulary

    vocab = SurfaceVocabulary(zh)
    sids, _ = vocab.encode_segments([text])
    stems = [vocab.stems[vocab.stem_of[s]] for s in sids if vocab.stem_of[s] >= 0]
    assert stems == [w for w, _ in words]


# --------------------------------------------------------------------------- real corpora
def _catalog_corpus(locale: str, path: Path) -> Path:
    """coreutils' messages in ``locale`` as a JSONL corpus (id: the English original)."""
    mo = LOCALE / locale / "LC_MESSAGES" / "coreutils.mo"
    if not mo.exists():
        pytest.skip(f"{mo} not installed (apt-get install coreutils with its translations)")
    with open(mo, "rb") as f:
        catalog = gettext.GNUTranslations(f)._catalog
    seen: set[str] = set()
    with open(path, "w", encoding="utf-8") as out:
        for msgid, msgstr in sorted((k, v) for k, v in catalog.items() if isinstance(k, str) and k):
            if sum(c.isalpha() for c in msgstr) < 20:  # option names and short errors
                continue
            first = " ".join(msgid.strip().split("\n")[0].split())[:100]
            eid, n = first, 2
            while eid in seen:
                eid, n = f"{first} ({n})", n + 1
            seen.add(eid)
            out.write(json.dumps({"_id": eid, "text": msgstr}, ensure_ascii=False) + "\n")
    return path


def _top(model, prompt: str) -> str | None:
    cards = model.ask(prompt, k=5).cards
    return cards[0].id if cards else None


GERMAN = [
    ("Eigentümer einer Datei ändern", "Change the owner and/or group"),
    ("letzte Zeilen einer Datei ausgeben", "Print the last %d lines"),
    ("Verzeichnisse erzeugen", "Create the DIRECTORY(ies)"),
    ("Index der Wörter ausgeben", "Output a permuted index"),
    ("von der Quelle zum Ziel kopieren", "Copy SOURCE to DEST"),
]
CHINESE = [
    ("修改文件的所有者", "Change the owner and/or group"),
    ("更改文件的访问时间", "Update the access and modification times"),
    ("统计文件的单词和字节数", "Print newline, word, and byte counts"),
]


def test_german_corpus_answers_german_prompts(tmp_path):
    corpus = _catalog_corpus("de", tmp_path / "de.jsonl")
    model = tablelm.build([corpus], tmp_path / "model", language="de")
    assert model.manifest["analyzer"]["language"] == "de"
    assert model.manifest["analyzer"]["stemmer"] == "snowball-german"
    for prompt, target in GERMAN:
        assert (_top(model, prompt) or "").startswith(target), prompt
    # the saved model answers with its own language, whatever the caller's defaults
    again = tablelm.load(tmp_path / "model")
    assert again.analyzer.language == "de"
    assert [c.id for c in again.ask(GERMAN[1][0], k=5).cards] == [c.id for c in model.ask(GERMAN[1][0], k=5).cards]
    # "letzte" (prompt) and "letzten" (text) meet only through the German stemmer
    english = tablelm.build([corpus], language="en")
    assert not (_top(english, GERMAN[1][0]) or "").startswith(GERMAN[1][1])


def test_chinese_corpus_answers_chinese_prompts_with_exact_citations(tmp_path):
    corpus = _catalog_corpus("zh_CN", tmp_path / "zh.jsonl")
    model = tablelm.build([corpus], language="zh")
    assert model.manifest["analyzer"]["segmentation"] == "bigrams"
    for prompt, target in CHINESE:
        answer = model.ask(prompt, k=5)
        assert answer.cards and answer.cards[0].id.startswith(target), prompt
        card = answer.cards[0]
        entity = model.entity(card.id)
        assert card.citations
        for c in card.citations:  # each citation is the exact span of the entity's text
            assert (entity.text if c.field == "text" else entity.title)[c.start:c.end] == c.text
            assert c.text.replace(" ", "") in entity.text
    # words are not split without the language: no Chinese prompt finds anything
    english = tablelm.build([corpus], language="en")
    assert all(_top(english, p) is None for p, _ in CHINESE)


def test_japanese_corpus_answers_a_japanese_prompt(tmp_path):
    assert "ja" in BIGRAM_LANGUAGES
    corpus = _catalog_corpus("ja", tmp_path / "ja.jsonl")
    model = tablelm.build([corpus], language="ja")
    assert (_top(model, "所有者とグループの変更") or "").startswith("Change the owner and/or group")


@pytest.mark.parametrize("locale,language", [("de", "de"), ("zh_CN", "zh"), ("ja", "ja")])
def test_tables_equal_the_oracle_in_other_languages(tmp_path, locale, language):
    """The build's one-pass stream and the query path's spans count the same multitokens."""
    from tablelm.corpus import read_corpus

    from test_tables import compare

    entities = list(read_corpus([_catalog_corpus(locale, tmp_path / "c.jsonl")]))[:80]
    compare(entities, Analyzer(language=language), {"max_ngram": 3, "max_dist": 2, "min_multitoken_count": 1})


def test_language_without_a_list_takes_stopwords_from_its_corpus(tmp_path):
    """Serbian has a Snowball stemmer but no stopwords-iso list: words in more than 40% of the
    entities become its stopwords (Lucene's QueryAutoStopWordAnalyzer rule), saved in the manifest."""
    from tablelm.text.languages import AUTO_STOPWORD_SHARE

    assert not default_stopwords("sr") and AUTO_STOPWORD_SHARE == 0.4
    corpus = _catalog_corpus("sr", tmp_path / "sr.jsonl")
    rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows if len(r["text"]) >= 300),
                    encoding="utf-8")
    model = tablelm.build([long], tmp_path / "model", language="sr")
    # exactly Serbian function words: "is", "in", "on", "and"
    assert model.manifest["analyzer"]["stopwords"] == ["и", "на", "у", "је"]
    assert tablelm.load(tmp_path / "model").analyzer.prompt_stems("власник и група") == \
        model.analyzer.prompt_stems("власник група")
    # short messages: no word is that common, so none is dropped; prompts still find their message
    full = tablelm.build([corpus], language="sr")
    assert full.manifest["analyzer"]["stopwords"] == []
    assert _top(full, "промени власника датотеке").startswith("Change the owner and/or group")
    assert _top(full, "умножи извор у одредиште").startswith("Copy SOURCE to DEST")
    # an explicit list wins
    assert tablelm.build([long], language="sr", stopwords=["у"]).manifest["analyzer"]["stopwords"] == ["у"]
