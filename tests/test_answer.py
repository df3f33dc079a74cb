"""Answers: golden cards on the built-in corpus, the structure of every card, prompt syntax.

Golden answers are frozen per Python version (the built-in corpus is Python's own
documentation) in ``tests/golden/builtin-py<X.Y.Z>.json``; ``python tests/golden/regen.py``
writes them. Card ids and ranks must match exactly, scores to a relative 1e-6.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tablelm.errors import ParamError, TablelmError
from tablelm.tables import build as build_module
from tablelm.tables.build import FIELDS

from conftest import STRICT_GOLDEN
from golden.regen import PROMPTS, K, golden_path, version

REGEN = "python tests/golden/regen.py"


# --------------------------------------------------------------------------- golden answers


@pytest.fixture(scope="module")
def golden():
    path = golden_path()
    if not path.exists():
        have = sorted(p.name for p in path.parent.glob("builtin-py*.json"))
        message = (f"No golden answers for Python {version()} (have: {', '.join(have) or 'none'}). The built-in "
                   f"corpus depends on the Python version: check the answers are sensible and run `{REGEN}`.")
        if not STRICT_GOLDEN:  # exact for one Python only; CI sets TABLELM_STRICT_GOLDEN=1 to require them
            pytest.skip(message + " (TABLELM_STRICT_GOLDEN=1 makes this a failure.)")
        pytest.fail(message)
    data = json.loads(path.read_text("utf-8"))
    assert data["python"] == version()
    return data


def test_golden_file_covers_every_prompt(golden):
    assert list(golden["answers"]) == PROMPTS and golden["k"] == K
    assert all(len(a["cards"]) == K for a in golden["answers"].values())


@pytest.mark.parametrize("prompt", PROMPTS)
def test_golden_answers(builtin_model, golden, prompt):
    want = golden["answers"][prompt]
    a = builtin_model.ask(prompt, k=K)
    hint = (f"Answers for {prompt!r} changed. If the change is intended (and the new cards are sensible), "
            f"regenerate the goldens with `{REGEN}` and commit the diff.")
    assert a.plan["multitokens_matched"] == want["matched"], hint
    assert [(c.rank, c.id) for c in a.cards] == [(c["rank"], c["id"]) for c in want["cards"]], hint
    assert [c.score for c in a.cards] == pytest.approx([c["score"] for c in want["cards"]], rel=1e-6), hint


def test_golden_answers_are_sensible(builtin_model):
    """What a Python user expects to see near the top; guards the goldens against a bad regeneration."""
    expect = {
        "how do I read a file line by line": ("fileinput", "readline", "linecache"),
        "random number between two integers": ("random.",),
        "sort a list": ("sort",),
        "parse json": ("json",),
        "current date and time": ("date",),
        "remove a directory recursively": ("remove_tree", "rmdir", "removedirs", "rmtree"),
        "regular expression match": ("mod:re", "fn:re.", "library/re.html", "fnmatch", "Regex"),
        "copy a file": ("copy",),
    }
    for prompt, needles in expect.items():
        top = [c.id for c in builtin_model.ask(prompt, k=3).cards]
        assert any(n in i for i in top for n in needles), (prompt, top)


# --------------------------------------------------------------------------- structure of cards


def _tokens(model, text):
    return model.analyzer.prompt_stems(text)


def _entity_stems(model, e) -> set:
    parts = [e.text, e.title, *e.category, *e.tags]
    if "meta" in FIELDS:
        parts += build_module.meta_values(e)
    return {s for p in parts for s in _tokens(model, p)}


STRUCTURE_PROMPTS = PROMPTS + ["how do I compress a directory into a zip archive", "hash a password with salt"]


@pytest.mark.parametrize("prompt", STRUCTURE_PROMPTS)
def test_card_structure(builtin_model, prompt):
    m = builtin_model
    a = m.ask(prompt, k=8)
    assert a.cards, prompt
    assert [c.rank for c in a.cards] == list(range(1, len(a.cards) + 1))
    scores = [c.score for c in a.cards]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    assert len({c.id for c in a.cards}) == len(a.cards)
    matched_terms = {t["multitoken"] for t in a.plan["terms"]}
    for c in a.cards:
        e = m.entity(c.id)
        assert (c.title, tuple(c.category), tuple(c.tags)) == (e.title, e.category, e.tags)
        # why: positive contributions of plan terms that sum to the score
        assert c.why, c.id
        assert all(w["contribution"] > 0 for w in c.why)
        assert all(w["multitoken"] in matched_terms for w in c.why)
        assert sum(w["contribution"] for w in c.why) == pytest.approx(c.score, rel=1e-5, abs=1e-5)
        contributions = [w["contribution"] for w in c.why]
        assert contributions == sorted(contributions, reverse=True)
        assert all(sum(w["tf"].values()) > 0 and set(w["tf"]) <= set(FIELDS) for w in c.why)
        # citations: exact spans of the entity's own text (or title)
        assert c.citations, c.id
        for cit in c.citations:
            assert cit.entity == c.id
            source = {"text": e.text, "title": e.title}[cit.field]
            assert 0 <= cit.start < cit.end <= len(source)
            assert cit.text == source[cit.start:cit.end]
            assert cit.multitoken in {w["multitoken"] for w in c.why}
            # the cited span is the multitoken itself: same stems in the same order
            want = [m.tables.stem_ids[s] for s in _tokens(m, cit.text)]
            words = [int(x) for x in m.tables.mt_words[m.tables.lookup_multitoken(want)] if x >= 0]
            assert words == want
        # snippet: a window of the text; highlights inside it
        sn = c.snippet
        if e.text:
            assert sn is not None and sn.text == e.text[sn.start:sn.end]
            assert len(sn.text) <= max(m.params()["snippet_chars"] * 3, 1)
            for s, t in sn.highlights:
                assert 0 <= s < t <= len(sn.text)
        else:
            assert sn is None


def test_citations_cover_the_text_occurrences(builtin_model):
    """Each matched multitoken of a card is cited where it occurs (up to 3 per field)."""
    a = builtin_model.ask("copy a file", k=5)
    for c in a.cards:
        text_tf = {w["multitoken"]: w["tf"].get("text", 0) for w in c.why}
        cited = {}
        for cit in c.citations:
            if cit.field == "text":
                cited[cit.multitoken] = cited.get(cit.multitoken, 0) + 1
        for mt, tf in text_tf.items():
            assert cited.get(mt, 0) == min(tf, 3), (c.id, mt, tf, cited.get(mt, 0))


def test_why_explains_the_agent_boost(builtin_model):
    a = builtin_model.ask("show me an example of sorting a list", k=10)
    assert a.plan["agent"] == "example"
    for c in a.cards:
        assert sum(w.get("contribution", 0) for w in c.why) == pytest.approx(c.score, rel=1e-5), c.id


def test_sections_are_present(builtin_model):
    a = builtin_model.ask("regular expression match", k=3)
    assert set(a.sections) == set(builtin_model.params()["sections"])
    assert a.sections["categories"], "the built-in corpus has module categories"
    for row in a.sections["categories"]:
        assert row["score"] > 0 and row["count"] > 0 and row["via"]
    for row in a.sections["embeddings"]:
        assert row["multitoken"] not in a.plan["multitokens_matched"]


def _answer_multitokens(answer) -> set[str]:
    return {w["multitoken"] for c in answer.cards for w in c.why if w.get("contribution", 0) > 0}


@pytest.mark.parametrize("prompt", ["how to get the current date and time", "read a file line by line",
                                    "random integer between two numbers", "parse a json string"])
def test_sections_follow_the_answer(builtin_model, prompt):
    """Every section row comes from prompt multitokens that the cards contain: "get current" is
    matched in "how to get the current date and time" but in no card of its answer, so the
    inspect, tkinter and asyncio-task labels it links to (and "voltage") stay out."""
    a = builtin_model.ask(prompt, k=10)
    carried = _answer_multitokens(a)
    assert carried
    shown = 0
    for name, rows in a.sections.items():
        for row in rows:
            assert row["via"] and set(row["via"]) <= carried, (name, row, carried)
            shown += 1
    assert shown, "the built-in corpus has sections for an everyday question"
    if prompt.startswith("how to get the current"):
        assert "get current" in a.plan["multitokens_matched"] and "get current" not in carried
        labels = [r["label"] for r in a.sections["categories"]]
        assert labels and "datetime" in labels[0], labels
        assert not [x for x in labels if "inspect" in x or "tkinter" in x or "Coroutines" in x], labels
        assert "voltage" not in [r["multitoken"] for r in a.sections["embeddings"]]


def test_sections_skip_words_with_too_many_links(builtin_model, monkeypatch):
    from tablelm.query import sections

    prompt = "how to get the current date and time"
    contained = {t["multitoken"] for t in builtin_model.ask(prompt, k=10).plan["terms"] if t["role"] == "contained"}
    monkeypatch.setattr(sections, "MAX_LINKS", 0)  # every contained word "links to everything"
    a = builtin_model.ask(prompt, k=10)
    for rows in a.sections.values():
        for row in rows:
            assert not set(row["via"]) & contained, row


def test_sections_of_the_reference_ranker(builtin_model):
    """The reference ranker's cards carry no contributions: the sections follow the distilled
    prompt multitokens, as before."""
    a = builtin_model.ask("regular expression match", k=5, ranker="reference")
    assert a.sections["categories"]
    matched = set(a.plan["multitokens_matched"])
    for row in a.sections["categories"]:
        assert set(row["via"]) <= matched, row


# --------------------------------------------------------------------------- prompt syntax and plan


def test_exclusion_removes_entities_with_the_word(builtin_model):
    m = builtin_model
    base = m.ask("read a file line by line", k=20)
    stem = _tokens(m, "line")[0]
    assert any(stem in _entity_stems(m, m.entity(c.id)) for c in base.cards)
    a = m.ask("read a file line by line !line", k=20)
    assert a.plan["excluded"] == ["line"]
    assert a.cards
    for c in a.cards:
        assert stem not in _entity_stems(m, m.entity(c.id)), c.id
    assert "line" not in a.plan["tokens_kept"]
    # search applies the same exclusion
    ids = [i for i, _ in m.search("read a file line by line !line", k=50)]
    assert ids and not any(stem in _entity_stems(m, m.entity(i)) for i in ids)


def test_forced_multitoken(builtin_model):
    m = builtin_model
    a = m.ask("read~file", k=5)
    forced = [t for t in a.plan["terms"] if t["role"] == "forced"]
    assert [t["multitoken"] for t in forced] == ["read file"]
    assert "read file" in a.plan["multitokens_matched"]
    assert any(w["multitoken"] == "read file" for c in a.cards for w in c.why)
    b = m.ask("file~zzyzxq", k=5)
    assert b.plan["forced_not_in_dictionary"], b.plan


def test_unknown_words_are_reported(builtin_model):
    a = builtin_model.ask("zzyzxq json frobnicatorium", k=5)
    assert a.plan["unknown"] == ["zzyzxq", "frobnicatorium"]
    assert a.cards and all("json" in c.id.lower() or "json" in c.title.lower() for c in a.cards[:3])


@pytest.mark.parametrize("prompt", ["", "   ", "the of and", "!json", "?!.,", "zzyzxq"])
def test_prompts_without_matches_give_no_cards(builtin_model, prompt):
    a = builtin_model.ask(prompt)
    assert a.cards == []
    assert json.loads(a.to_json())["cards"] == []
    assert builtin_model.search(prompt) == []


def test_long_prompt_answers(builtin_model):
    """A 200-word prompt (real documentation text) still answers (the sub-combination bound)."""
    m = builtin_model
    words = []
    for i in range(m.n_docs):
        words += m.entity_at(i).text.split()
        if len(words) >= 200:
            break
    prompt = " ".join(words[:200])
    a = m.ask(prompt, k=5)
    assert len(prompt.split()) == 200
    assert len(a.cards) == 5
    assert a.plan["multitokens_matched"]


def test_reference_ranker_returns_cards(builtin_model):
    a = builtin_model.ask("copy a file", k=5, ranker="reference")
    assert len(a.cards) == 5
    for c in a.cards:
        assert 0 < c.score <= 1 / 5  # 1 / (2·r1 + r2 + r3 + r4), every dense rank >= 1
        assert c.why and all(w["corpus_count"] > 0 for w in c.why)
    scores = [c.score for c in a.cards]
    assert scores == sorted(scores, reverse=True)


def test_same_prompt_same_answer(builtin_model):
    strip = lambda a: {k: v for k, v in a.to_dict().items() if k != "timings_ms"}
    for p in ("copy a file", "random number between two integers"):
        assert strip(builtin_model.ask(p)) == strip(builtin_model.ask(p))


def test_query_parameters_per_call(builtin_model):
    m = builtin_model
    base = m.ask("copy a file", k=5)
    other = m.ask("copy a file", k=5, w_title=5.0, phrase_weight=0.0)
    assert other.params["w_title"] == 5.0 and other.params["phrase_weight"] == 0.0
    assert [c.score for c in base.cards] != [c.score for c in other.cards]
    assert m.ask("copy a file", k=5).to_dict()["cards"] == base.to_dict()["cards"]  # no state kept
    with pytest.raises(ParamError, match=r"The 'k1' parameter must be a float in \[0.0, 5.0\]. Got 9."):
        m.ask("copy a file", k1=9)
    with pytest.raises(ParamError, match="Did you mean"):
        m.ask("copy a file", phrase_wieght=1)
    with pytest.raises(TablelmError, match="'k' parameter must be"):
        m.ask("copy a file", k=0)
    assert len(m.ask("copy a file", k=np.int64(2)).cards) == 2  # numpy's ints are ints
    assert len(m.search("copy a file", np.int64(2))) == 2


# --------------------------------------------------------------------------- top-k prefix (hypothesis)


@pytest.fixture(scope="module")
def corpus_words(builtin_model):
    display = builtin_model.tables.strings("display")
    return sorted({w for w in display if w.isalpha() and len(w) > 3})[::7]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_top_k_is_a_prefix_of_top_k_plus_one(builtin_model, corpus_words, data):
    words = data.draw(st.lists(st.sampled_from(corpus_words), min_size=1, max_size=6), label="words")
    k = data.draw(st.integers(1, 12), label="k")
    ranker = data.draw(st.sampled_from(["tablelm", "reference"]), label="ranker")
    prompt = " ".join(words)
    a = builtin_model.search(prompt, k, ranker=ranker)
    b = builtin_model.search(prompt, k + 1, ranker=ranker)
    assert b[: len(a)] == a
    assert len(a) == min(k, len(b))
    cards = builtin_model.ask(prompt, k=k, ranker=ranker).cards
    assert [c.id for c in cards] == [i for i, _ in a]


def test_expansion_and_feedback_terms_are_planned_and_explained(scifact_model):
    a = scifact_model.ask("vitamin D deficiency", k=5, expansion_weight=0.2, prf_weight=0.3, prf_terms=4)
    roles = {t["role"] for t in a.plan["expanded"]}
    assert roles == {"expansion", "feedback"}
    assert sum(1 for t in a.plan["expanded"] if t["role"] == "feedback") == 4
    assert all(t["via"] for t in a.plan["expanded"] if t["role"] == "expansion")
    for c in a.cards:
        assert sum(w["contribution"] for w in c.why) == pytest.approx(c.score, rel=1e-5)
    plain = scifact_model.ask("vitamin D deficiency", k=5)
    assert plain.plan["expanded"] == []
    assert [c.score for c in plain.cards] != [c.score for c in a.cards]


# --------------------------------------------------------------------------- the one snippet rule


def test_snippet_ellipsis_only_where_the_text_goes_on():
    from tablelm.answer.markdown import md_escape
    from tablelm.answer.snippets import make_snippet, show

    short = "Return a list of the words."
    whole = make_snippet(short, [(21, 26, "word")], 200)
    assert (whole.start, whole.end, whole.text_chars) == (0, len(short), len(short))
    assert show(whole) == "Return a list of the [words]."          # no ellipsis: nothing was cut
    long = ("alpha " * 40) + "needle here " + ("omega " * 40)
    i = long.index("needle")
    cut = make_snippet(long, [(i, i + 6, "needle")], 60)
    text = show(cut, escape=md_escape)
    assert text.startswith("…") and text.endswith("…") and "[needle]" in text
    head = make_snippet(long, [], 60)                              # no span: the start, cut on the right only
    assert head.start == 0 and not show(head).startswith("…") and show(head).endswith("…")
    # the same rule for every renderer: the text renderer and the Markdown one agree on the cut
    assert show(cut).replace("[", "").replace("]", "") == show(cut, mark=lambda t: t)


# --------------------------------------------------------------------------- the short cited answer


@pytest.mark.parametrize("prompt", PROMPTS)
def test_summary_quotes_exact_spans_of_the_top_cards(builtin_model, prompt):
    a = builtin_model.ask(prompt, k=10)
    s = a.summary
    assert 1 <= len(s.passages) <= 3  # summary_sentences=3 by default
    ranks = {c.id: c.rank for c in a.cards}
    for p in s.passages:
        assert builtin_model.entity(p.entity).text[p.start:p.end] == p.text  # the citation is the quote
        assert ranks[p.entity] == p.n == p.rank <= 5
        assert p.multitokens and set(p.multitokens) <= {t["multitoken"] for t in a.plan["terms"]}
    assert len({(p.entity, p.start) for p in s.passages}) == len(s.passages)
    assert set(s.covered) | set(s.missing) == set(a.plan["multitokens_matched"])
    data = a.to_dict()["summary"]
    assert [p["text"] for p in data["passages"]] == [p.text for p in s.passages]
    assert list(a.to_dict())[:2] == ["prompt", "summary"]


def test_summary_has_two_witnesses_and_can_be_turned_off(builtin_model):
    a = builtin_model.ask("copy a file")
    assert len({p.entity for p in a.summary.passages}) >= 2
    assert builtin_model.ask("copy a file", summary_sentences=0).summary.passages == []
    assert len(builtin_model.ask("copy a file", summary_sentences=1).summary.passages) == 1
    assert builtin_model.ask("zzqxv").summary.passages == []


def test_summary_passages_inside_long_entities():
    from tablelm.answer.summary import MAX_PASSAGE_CHARS, _cut, passages

    text = "open(file, mode='r')\nOpen a file. Return a stream.\n\nSee also: io.\n\n" + "word " * 200 + "needle end."
    spans = passages(text)
    assert spans[0] == (0, 20)  # the signature line is a passage of its own
    assert [text[s:e] for s, e in spans[1:4]] == ["Open a file.", "Return a stream.", "See also: io."]
    # a long passage is quoted around its match, cut at word boundaries, not from its start
    s, e = spans[4]
    i = text.index("needle")
    a, b = _cut(text, s, e, [(i, i + 6, "needle")])
    assert a > s and b == e and b - a <= MAX_PASSAGE_CHARS + 10 and text[a - 1] == " " and "needle" in text[a:b]


# --------------------------------------------------------------------------- search modes, no silent drops


@pytest.fixture(scope="module")
def xllm_prompts_model(xllm_model):
    return xllm_model


def test_exclusion_never_removes_the_prompts_other_words(xllm_model):
    """A line of nvidia_prompt_syntax.txt: '!publication' has the stem of 'public'."""
    a = xllm_model.ask("public conference !confer !publication")
    assert {"public", "conference"} <= set(a.plan["tokens_kept"])
    assert a.cards, "the prompt kept its words, so it has answers"
    for c in a.cards:
        e = xllm_model.entity(c.id)
        text = " ".join([e.title, e.text, *e.category, *e.tags]).lower()
        assert not re.search(r"(?<!\w)(confer|publication)(?!\w)", text), c.id


def test_exact_phrase_requires_the_phrase(builtin_model):
    a = builtin_model.ask('"read file"', k=10)
    assert a.plan["phrases"] == ["read file"] and a.cards
    t = builtin_model.tables
    mt = t.lookup_multitoken([t.stem_ids[s] for s in ("read", "file")])
    have = set(t.postings(mt)[0].tolist())
    assert all(builtin_model.index_of(c.id) in have for c in a.cards)


def test_category_and_tag_filters(builtin_model):
    from tablelm.answer.render import render_text

    a = builtin_model.ask("read a file", filter="category=csv")
    assert a.cards and all(any(p.lower().startswith("csv") for p in c.category for _ in [0]) or
                           any("csv" == x.split(" ")[0].lower() for x in c.category) for c in a.cards)
    assert "only: category=csv" in render_text(a)
    b = builtin_model.ask("read a file", filter=["tag=example"])
    assert b.cards and all("example" in c.tags for c in b.cards)
    with pytest.raises(ParamError, match="category=NAME"):
        builtin_model.ask("read a file", filter="colour=red")


def test_dropped_words_are_said_in_the_text_answer(builtin_model):
    from tablelm.answer.render import render_text

    # a letter attached to a word is a multitoken of the model (test_letter_phrase_*); a letter
    # with no word next to it ("is" is a stopword) is said to be left out
    text = render_text(builtin_model.ask("what is X"))
    assert "single letters are no terms of their own, so they were not matched: X" in text
    text = render_text(builtin_model.ask("vitamin A and T cells"))  # no Python entity says either
    assert 'a single letter counts with the word next to it: no entity says "vitamin A", "T cells"' in text
    assert "not matched: A" not in text
    text = render_text(builtin_model.ask("zzqq~file read"))
    assert "not in the dictionary, so its words were matched one by one" in text
    empty = builtin_model.ask("zzqxv qqzzx", sections="")
    assert "suggestions below" not in render_text(empty)


@pytest.mark.parametrize("prompt, phrases", [
    ("vitamin A", {"vitamin A": [("vitamin", -1)]}), ("T cells", {"T cells": [("cells", 1)]}),
    ("C API reference", {"C API": [("API", 1)]}), ("type I diabetes", {"type I": [("type", -1)]}),
    ("vitamin~d", {"vitamin d": [("vitamin", -1)]}),
    ("vitamin A and T cells", {"vitamin A": [("vitamin", -1)], "T cells": [("cells", 1)]}),
    ("conventional T cells", {"conventional T cells": [("conventional", -1), ("cells", 1)]}),
    ("A deficiency of vitamin B12", {}), ("hepatitis A", {"hepatitis A": [("hepatitis", -1)]}),
    ("vitamin A deficiency", {"vitamin A": [("vitamin", -1)]}),  # "A" never takes the word after it
    ("how do I read a file", {}), ("e.g. a file", {}), ("U.S. policy", {}), ("the a b c", {}),
])
def test_letter_phrases_of_a_prompt(prompt, phrases):
    from tablelm.query.plan import letter_phrases
    from tablelm.text.analyzer import Analyzer

    a = Analyzer()
    got = letter_phrases(prompt, lambda w: len(w) > 1 and bool(a.word_stems(w.lower())))
    assert {shown: sides for _, shown, sides in got} == phrases


@pytest.fixture(scope="module")
def vitamin_model(tmp_path_factory):
    """The SciFact abstracts that mention vitamins (real data): vitamin A, C, D, E, K."""
    from conftest import SCIFACT

    if not SCIFACT.exists():
        pytest.skip(f"test data not found at {SCIFACT}")
    lines = [x for x in SCIFACT.read_text("utf-8").splitlines() if re.search(r"(?i)vitamin", x)]
    path = tmp_path_factory.mktemp("vitamins") / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    import tablelm

    return tablelm.build([path])


def test_letter_multitokens_hold_the_entities_that_say_them(vitamin_model):
    """The build indexes "vitamin A" as a two-word multitoken: its postings are the abstracts whose
    text has "vitamin(s)" and the capital letter side by side (a space or a dash between, as these
    abstracts write it), and none that only say another letter ("vitamin D"); the letter itself is
    no term: its single-word row has no count and no postings."""
    m = vitamin_model
    t = m.tables
    for letter in "ADEK":
        sid, aid = t.stem_ids["vitamin"], t.stem_ids[letter]
        mt = t.lookup_multitoken([sid, aid])
        assert mt is not None and t.display(mt) == f"vitamin {letter}"
        docs = {m.entity_at(int(d)).id for d in t.postings(mt)[0]}
        says = {e.id for e in map(m.entity_at, range(m.n_docs))
                if re.search(rf"(?i:\bvitamins?)[ -]{letter}(?!\w)", " ".join([e.title, e.text]))}
        assert docs == says and docs, letter
        assert t.df([aid])[0] == 0 and not np.asarray(t.mt_counts[aid]).any()
    # "vitamin A derivatives", ". A total": "A" never takes the word after it (the article)
    for word in ("derivatives", "total", "number"):
        assert t.lookup_multitoken([t.stem_ids["A"], t.stem_ids[m.analyzer.stem_word(word)]]) is None


def _says(model, card, pattern) -> bool:
    e = model.entity(card.id)
    return bool(re.search(pattern, " ".join([e.title, e.text])))


def test_letter_phrase_ranks_vitamin_a_above_vitamin_d(vitamin_model):
    from tablelm.answer.render import render_text

    vitamin_a = r"(?i:vitamins?)[ -]A(?!\w)"
    plain = vitamin_model.ask("vitamin", k=10)
    assert not _says(vitamin_model, plain.cards[0], vitamin_a), "without the letter, a vitamin A abstract is not first"
    a = vitamin_model.ask("vitamin A", k=10)
    assert a.plan["letter_phrases"] == ["vitamin A"] and a.plan["single_letters"] == ["A"]
    assert a.plan["letter_multitokens"] == ["vitamin A"] and "vitamin A" in a.plan["multitokens_matched"]
    says = [_says(vitamin_model, c, vitamin_a) for c in a.cards]
    # the abstracts that say "vitamin A" (3 of 64) come first, and why says so: the multitoken's contribution
    assert says[:3] == [True, True, True] and sum(says) == 3, [c.title for c in a.cards]
    assert all(any(w["multitoken"] == "vitamin A" and w["contribution"] > 0 for w in c.why) == s
               for c, s in zip(a.cards, says))
    assert 'a single letter counts with the word next to it: "vitamin A"' in render_text(a)
    # its citations are the spans that say it (the build's rule, read again in the card's text)
    cited = [x for c in a.cards for x in c.citations if x.multitoken == "vitamin A"]
    assert len(cited) >= 3 and all(re.fullmatch(r"(?i:vitamins?)[ -]A", x.text) for x in cited), cited
    assert {c.id for c in a.cards if any(x.multitoken == "vitamin A" for x in c.citations)} == \
        {c.id for c, s in zip(a.cards, says) if s}
    d = vitamin_model.ask("vitamin~d", k=5)
    assert d.plan["letter_phrases"] == ["vitamin d"] and d.plan["letter_multitokens"] == ["vitamin D"]
    assert all(_says(vitamin_model, c, r"(?i:vitamins?)[ -]D(?!\w)") for c in d.cards)
    # search (the batch path) ranks as ask does
    assert [i for i, _ in vitamin_model.search("vitamin A", k=10)] == [c.id for c in a.cards]


def test_a_model_built_before_letters_says_so_and_upgrade_indexes_them(tmp_path):
    """A model whose analyzer records no letter rule (built before it) loads, says why a letter
    phrase matched its words only, and ``tablelm upgrade`` builds its letter multitokens."""
    import tablelm
    from tablelm.answer.render import render_text
    from tablelm.model import upgrade

    from conftest import SCIFACT

    if not SCIFACT.exists():
        pytest.skip(f"test data not found at {SCIFACT}")
    lines = [x for x in SCIFACT.read_text("utf-8").splitlines() if re.search(r"(?i)vitamin", x)]
    (tmp_path / "c.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    out = tmp_path / "m"
    tablelm.build([tmp_path / "c.jsonl"], out_dir=out)
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["analyzer"]["letters"]  # as the manifests written before the rule
    (out / "manifest.json").write_text(json.dumps(manifest))
    old = tablelm.load(out)
    assert not old.analyzer.letters
    a = old.ask("vitamin A", k=5)
    assert a.plan["letters_indexed"] is False and a.plan["letter_multitokens"] == []
    assert "this model does not index single letters" in render_text(a) and "tablelm upgrade" in render_text(a)
    new = upgrade(out)
    assert new.analyzer.letters and json.loads((out / "manifest.json").read_text())["analyzer"]["letters"] is True
    b = tablelm.load(out).ask("vitamin A", k=5)
    assert b.plan["letter_multitokens"] == ["vitamin A"]


def test_importance_prior_is_an_explained_factor(builtin_model):
    """Off by default (no help on CACM), on in the profile of the built-in model with the HTML
    documentation (links to objects are their in-links there); when on, a factor in why."""
    from tablelm.builtin import builtin_profile

    html = builtin_model.manifest["corpus"]["html_docs"] is not None
    assert builtin_model.manifest["profile"] == builtin_profile(html)
    assert builtin_model.defaults["w_importance"] == (1.0 if html else 0.0)
    plain = builtin_model.ask("read a file", k=5, w_importance=0)
    assert not any(f["name"].startswith("importance") for c in plain.cards for f in c.factors)
    if html:  # the documentation links to open() from everywhere: many in-links, the largest factor
        prior = builtin_model.ask("open", k=1, sections="").cards[0]
        assert prior.id == "library/functions.html#open"
        assert next(f for f in prior.factors if f["name"] == "importance (in-links)")["multiplier"] > 1.5
    a = builtin_model.ask("read a file", k=5, w_importance=0.5)
    linked = [c for c in a.cards if any(f["name"] == "importance (in-links)" for f in c.factors)]
    assert linked
    for c in linked:
        f = next(f for f in c.factors if f["name"] == "importance (in-links)")
        assert 1.0 < f["multiplier"] <= 1.5
        assert sum(w["contribution"] for w in c.why) == pytest.approx(c.score, rel=1e-4)


# --------------------------------------------------------------------------- citation tokens


@pytest.mark.parametrize("language", ["en", "zh"])
def test_citation_words_equal_the_analyzers_tokens(tmp_path, language):
    """The fast, memoized tokenizer of citations gives exactly the analyzer's words, stems, spans
    and clauses, also for a token that stands for two stems (a synonym) and for character bigrams;
    a text read twice (card, then short answer) gives the same words."""
    from tablelm.answer.citations import _words
    from tablelm.text.analyzer import CLAUSE, SENTENCE

    texts = {"en": ["Open the dirs, then read() each file line by line. Read lines: os.listdir lists dirs.",
                    "A file's lines (read them) and FILES; the directory listing.\n\nNew paragraph: dirs."],
             "zh": ["打开文件并逐行读取。读取文件的每一行，然后关闭文件。", "文件目录：列出目录中的文件。"]}[language]
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"_id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)), "utf-8")
    from tablelm import build

    model = build([src], tmp_path / "m", language=language, kw_map={"dirs": "directory listing"})
    ids = model.tables.stem_ids
    for text in texts + ["Unseen words: lines of dirs, never counted."]:
        expected, clause = [], 0
        for kind, stem, start, end in model.analyzer.tokens_with_spans(text):
            if kind in (SENTENCE, CLAUSE):
                clause += 1
            else:
                expected.append((ids.get(stem, -1), start, end, clause))
        assert _words(model, text) == expected and _words(model, text) == expected
    if language == "en":  # the synonym: one token, two stems, one span
        words = _words(model, texts[0])
        spans = [(a, b) for _, a, b, _ in words if texts[0][a:b] == "dirs"]
        assert len(spans) == 4 and spans[0] == spans[1]
