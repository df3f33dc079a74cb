"""Corpus readers: real slices of ../shared/data, error messages, the built-in corpus."""

from __future__ import annotations

import json
import sys
import tempfile
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tablelm.corpus import (
    FieldMap,
    ReadStats,
    builtin_corpus_id,
    detect_format,
    python_docs_fingerprint,
    read_corpus,
    read_jsonl,
    read_python_docs,
    read_xllm,
    split_markdown,
)
from tablelm.corpus.xllm import repair_quotes
from tablelm.errors import CorpusError, ParamError

from conftest import reads_or_raises_corpus_error, write

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"test data not found at {DATA}")


def head_lines(path: Path, n: int) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        return [line.rstrip("\n") for line in islice(fh, n)]




def jsonl(*records) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


# --------------------------------------------------------------------------- JSON Lines


@needs_data
def test_scifact_slice_reads_beir_fields(tmp_path):
    lines = head_lines(DATA / "scifact" / "corpus.jsonl", 50)
    path = write(tmp_path / "corpus.jsonl", "\n".join(lines) + "\n")
    stats = ReadStats()
    entities = list(read_corpus([path], stats=stats))
    raw = [json.loads(line) for line in lines]
    assert [e.id for e in entities] == [r["_id"] for r in raw]
    assert [e.title for e in entities] == [r["title"].strip() for r in raw]
    assert [e.text for e in entities] == [r["text"] for r in raw]
    assert entities[9].source == "corpus.jsonl:10"
    assert stats.read == 50 and stats.sources == {str(path): 50}
    assert stats.skipped == stats.duplicates == 0


@needs_data
def test_cacm_keywords_categories_and_links():
    path = DATA / "cacm" / "corpus.jsonl"
    entities = {e.id: e for e in read_jsonl(path)}
    assert len(entities) == 3204
    with open(path, encoding="utf-8") as fh:
        raw = {r["_id"]: r for r in map(json.loads, fh)}
    with_links = with_tags = 0
    for doc_id, record in raw.items():
        meta = record["metadata"]
        e = entities[doc_id]
        # oracle: keywords then CR categories, first occurrence kept
        expected_tags = list(dict.fromkeys(
            t.strip() for t in meta.get("keywords", []) + meta.get("cr_categories", [])
            if t.strip()))
        assert list(e.tags) == expected_tags
        targets = {str(link[0]) for link in meta.get("links", []) if str(link[0]) != doc_id}
        assert set(e.related) == targets
        assert list(e.related) == sorted(targets, key=int)
        assert e.metadata["authors"] == meta["authors"]
        with_links += bool(e.related)
        with_tags += bool(e.tags)
    assert entities["1"].related[:3] == ("43", "53", "91")
    assert with_links > 1000 and with_tags > 1400


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.jsonl", jsonl({"_id": "a", "text": "x"}, "", '{"_id": "b", "text": }'))
    with pytest.raises(CorpusError) as info:
        list(read_corpus([path]))
    err = info.value
    assert err.path == str(path) and err.line == 3
    assert str(err).startswith(f"{path} line 3: invalid JSON")
    assert "fix:" in err.message


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"id": "1", "body": "some words"}, "no 'text' field (found: id, body); fix: pass --text-field body"),
        ({"docid": "1", "text": "t"},
         "no id field (tried '_id', 'id'; found: docid, text); fix: pass --id-field docid"),
        ({"_id": "1", "text": 42}, "the 'text' field must be a string, found a number"),
        ({"_id": "1", "title": ["x"]}, "the 'title' field must be a string, found a list"),
        ({"_id": [1], "text": "t"}, "the id field '_id' must be a non-empty string or an integer"),
        ([1, 2], "expected a JSON object, found a list"),
    ],
)
def test_field_errors_say_what_and_how_to_fix(tmp_path, record, expected):
    path = write(tmp_path / "c.jsonl", jsonl({"_id": "ok", "text": "fine"}, record))
    with pytest.raises(CorpusError) as info:
        list(read_jsonl(path))
    assert info.value.line == 2
    assert expected in info.value.message


def test_skip_collects_errors_and_continues(tmp_path):
    path = write(tmp_path / "c.jsonl", jsonl({"_id": "1", "text": "a"}, "not json", [], {"_id": "2", "title": "b"},
                                          {"_id": "3"}))
    stats = ReadStats()
    entities = list(read_corpus([path], on_error="skip", stats=stats))
    assert [e.id for e in entities] == ["1", "2"]
    assert entities[1].text == "" and entities[1].title == "b"
    assert stats.skipped == 3
    assert [(p, line) for p, line, _ in stats.errors] == [(str(path), 2), (str(path), 3), (str(path), 5)]


def test_field_map_dotted_paths_and_lists(tmp_path):
    record = {"key": 7, "body": "text here", "name": "T", "crumbs": ["guide", "install"],
              "meta": {"kw": ["a", "b", "a"], "see": "x9"}, "extra": 1}
    path = write(tmp_path / "c.jsonl", jsonl(record))
    fm = FieldMap(id_field="key", text_field="body", title_field="name", category_field="crumbs",
                  tags_field="meta.kw", related_field="meta.see")
    (e,) = read_corpus([path], field_map=fm)
    assert (e.id, e.text, e.title) == ("7", "text here", "T")
    assert e.category == ("guide", "install") and e.tags == ("a", "b") and e.related == ("x9",)
    assert e.metadata["extra"] == 1
    assert FieldMap.option("text_field") == "--text-field"


def test_non_utf8_line_gives_line_offset_and_encoding_fix(tmp_path):
    good = json.dumps({"_id": "1", "text": "plain"}).encode() + b"\n"
    bad = b'{"_id": "2", "text": "\x93smart\x94"}\n'
    path = write(tmp_path / "c.jsonl", good + bad)
    with pytest.raises(CorpusError) as info:
        list(read_corpus([path]))
    err = info.value
    assert err.line == 2
    assert f"offset {len(good) + 22} in the file" in err.message and "byte 0x93" in err.message
    assert "--encoding cp1252" in err.message
    entities = list(read_corpus([path], encoding="cp1252"))
    assert entities[1].text == "\u201csmart\u201d"


def test_bom_is_skipped_and_empty_file_is_empty(tmp_path):
    path = write(tmp_path / "bom.jsonl", b"\xef\xbb\xbf" + jsonl({"_id": "1", "text": "x"}).encode())
    assert [e.id for e in read_corpus([path])] == ["1"]
    empty = write(tmp_path / "empty.jsonl", "")
    stats = ReadStats()
    assert list(read_corpus([empty], stats=stats)) == []
    assert stats.read == 0 and stats.sources == {str(empty): 0}
    blank_md = write(tmp_path / "blank.md", "\n\n   \n")
    assert list(read_corpus([blank_md])) == []


def test_utf16_bom_read_as_utf8_says_which_encoding(tmp_path):
    path = write(tmp_path / "c.jsonl", jsonl({"_id": "1", "text": "x"}).encode("utf-16"))
    with pytest.raises(CorpusError, match="--encoding utf-16"):
        list(read_corpus([path]))
    assert [e.id for e in read_corpus([path], encoding="utf-16")] == ["1"]
    stats = ReadStats()
    assert list(read_corpus([path], on_error="skip", stats=stats)) == []
    assert stats.skipped == 1 and "--encoding utf-16" in stats.errors[0][2]


def test_json_array_file_gets_a_conversion_hint(tmp_path):
    path = write(tmp_path / "c.json", '[{"_id": "1", "text": "x"},\n {"_id": "2", "text": "y"}]\n')
    with pytest.raises(CorpusError, match="JSON array, not JSON Lines"):
        list(read_corpus([path]))


# --------------------------------------------------------------------------- xllm records


@needs_data
def test_repository3_duplicates_removed_and_counted():
    path = DATA / "xllm-enterprise" / "repository3.txt"
    assert detect_format(path) == "xllm"
    stats = ReadStats()
    entities = list(read_corpus([path], stats=stats))
    assert stats.skipped == 0 and stats.errors == []
    assert len(entities) + stats.duplicates == 1800
    assert stats.duplicates > 100
    # no two kept records share an id or a content (title, text, category, tags)
    assert len({e.id for e in entities}) == len(entities)

    def norm(s):
        return " ".join(s.split()).casefold()

    contents = {(norm(e.title), norm(e.text), e.category, tuple(sorted(map(norm, e.tags))))
                for e in entities}
    assert len(contents) == len(entities)
    by_id = {e.id: e for e in entities}
    first = by_id["2000"]
    assert first.title == "3P Distribution - TBS/BDL Canada" and first.category == ("Logistics",)
    assert first.tags == ("3PWM",)  # ['3PWM', '3PWM'] deduplicated
    # the 62 records with an unescaped apostrophe are read, not lost
    assert stats.repaired == 62
    assert "company's assets" in by_id["2036"].text and not by_id["2036"].text.startswith('"')
    with_links = [e for e in entities if e.related]
    assert sum(r.startswith("https://") for e in with_links for r in e.related) > 10
    assert by_id["249"].related == ("Master Data Management Policy",)  # a title, kept raw
    assert by_id["3"].metadata["tower_option_tower"] == "Data"
    assert by_id["3"].tags == ("example1", "example2")


def test_xllm_bad_line_and_no_eval(tmp_path, capsys):
    path = write(tmp_path / "r.txt",
                 "1~~{'title_text': 'A', 'description_text': 'a'}\n"
                 "2~~{'title_text': __import__('os').system('echo pwned')}\n")
    with pytest.raises(CorpusError) as info:
        list(read_corpus([path]))
    assert info.value.line == 2 and "not a Python literal" in info.value.message
    assert "pwned" not in capsys.readouterr().out
    stats = ReadStats()
    assert [e.id for e in read_xllm(path, on_error="skip", stats=stats)] == ["1"]
    assert stats.skipped == 1


def test_repair_quotes_only_escapes_quotes_inside_strings():
    assert repair_quotes("{'a': 'it's', 'b': ['x', 'y']}") == "{'a': 'it\\'s', 'b': ['x', 'y']}"
    assert repair_quotes("{'a': 'fine'}") == "{'a': 'fine'}"


# --------------------------------------------------------------------------- Markdown and text

MARKDOWN = """---
title: Installing
tags: [setup, "linux"]
author: someone
---
# Installing

Read [the API](../api.md#load) first, or <https://example.org/docs>.

```bash
# not a heading
pip install tablelm
```

## Linux

Use the [Debian notes](#debian). ![img](pic.png) `[not](a-link)`

### Debian

apt-get install python3

### Debian

Again.

## Empty

## Windows ##

Run the installer.
"""


def test_markdown_sections_front_matter_and_fences():
    entities = split_markdown(MARKDOWN, "guide/install.md", ("guide",))
    by_id = {e.id: e for e in entities}
    assert list(by_id) == ["guide/install.md#installing", "guide/install.md#linux",
                           "guide/install.md#debian", "guide/install.md#debian-2",
                           "guide/install.md#windows"]
    top = by_id["guide/install.md#installing"]
    assert top.title == "Installing" and top.category == ("guide",)
    assert "# not a heading" in top.text and not top.text.startswith("#")
    assert "---" not in top.text and "author" not in top.text
    assert top.related == ("api.md#load", "https://example.org/docs")
    assert top.source == "guide/install.md:6"
    deb = by_id["guide/install.md#debian"]
    assert deb.category == ("guide", "Installing", "Linux")
    assert deb.text == "apt-get install python3" and deb.source == "guide/install.md:19"
    assert by_id["guide/install.md#linux"].related == ("guide/install.md#debian",)
    assert by_id["guide/install.md#windows"].title == "Windows"
    assert all(e.tags == ("setup", "linux") for e in entities)
    assert top.metadata["front_matter"] == {"author": "someone"}


def test_markdown_without_h1_puts_file_title_in_category():
    text = "Intro line.\n\n## Usage\n\nCall it.\n"
    preamble, usage = split_markdown(text, "notes.md")
    assert (preamble.id, preamble.title, preamble.category) == ("notes.md", "notes", ())
    assert (usage.id, usage.category) == ("notes.md#usage", ("notes",))


FRONT_MATTER_MD = """---
title: "Install: the long way"
tags:
  - setup
  - linux
date: 2024-03-01
summary: |
  Two lines
  kept as written.
folded: >
  one
  line
owner:
  name: Ada
  teams: [docs, build]
---
Intro before any heading.

Install
=======

See [the API][api] and <https://example.org/x>, not ![a picture](pic.png).

    # indented code, not a heading [nor](a-link.md)

- # a heading inside a list item stays in the section
> ## nor one inside a quote

Setext two
----------

Body two, [twice](b.md) and [twice](b.md).

[api]: ../api.md#load
"""


def test_markdown_front_matter_is_real_yaml():
    """Block scalars, nesting, dates and quoting read as YAML reads them."""
    entities = split_markdown(FRONT_MATTER_MD, "guide/install.md", ("guide",))
    pre = entities[0]
    assert pre.id == "guide/install.md" and pre.title == "Install: the long way"
    assert all(e.tags == ("setup", "linux") for e in entities)
    fm = pre.metadata["front_matter"]
    assert fm == {"date": "2024-03-01", "summary": "Two lines\nkept as written.\n", "folded": "one line\n",
                  "owner": {"name": "Ada", "teams": ["docs", "build"]}}
    json.dumps(fm)  # the entity store is JSON


def test_markdown_follows_commonmark_blocks_and_links():
    entities = split_markdown(FRONT_MATTER_MD, "guide/install.md", ("guide",))
    assert [e.id for e in entities] == ["guide/install.md", "guide/install.md#install",
                                        "guide/install.md#setext-two"]
    _, install, two = entities
    # the setext title differs from the front matter title: it is a section of the file
    assert install.title == "Install" and install.category == ("guide", "Install: the long way")
    assert install.related == ("api.md#load", "https://example.org/x")  # reference link resolved
    assert "# indented code" in install.text and "# a heading inside a list" in install.text
    assert two.title == "Setext two" and two.related == ("guide/b.md",)
    assert two.source == "guide/install.md:29"
    lines = FRONT_MATTER_MD.split("\n")
    assert lines[28] == "Setext two"
    # every text is the file's own lines: citations are spans of the file
    for e in entities:
        assert e.text in FRONT_MATTER_MD


@pytest.mark.parametrize("front, line, what", [
    ("title: a: b\n", 2, "not valid YAML"),
    ("ok: 1\nlist: [a, b\nnext: c\n", 4, "not valid YAML"),
    ("ok: 1\n  bad indent: 2\n", 3, "not valid YAML"),
    ("- just\n- a list\n", 2, "not a mapping"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n", 2,
     "more than 10000 values"),
])
def test_markdown_bad_front_matter_names_file_and_line(tmp_path, front, line, what):
    md = write(tmp_path / "bad.md", f"---\n{front}---\n# T\n\nBody.\n")
    with pytest.raises(CorpusError) as info:
        list(read_corpus([md]))
    assert info.value.line == line and what in info.value.message and "fix:" in info.value.message
    stats = ReadStats()
    assert list(read_corpus([md], on_error="skip", stats=stats)) == []
    assert stats.errors and stats.errors[0][1] == line


def _cpu_seconds(fn, *args) -> float:
    """Least CPU time of three calls, the cyclic GC paused (its passes add noise, not work)."""
    import gc
    import time

    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):
            t = time.process_time()
            fn(*args)
            best = min(best, time.process_time() - t)
    finally:
        gc.enable()
    return best


@pytest.mark.parametrize("make", [
    lambda n: "# Same\n\ntext\n\n" * n,                                           # one heading repeated
    lambda n: "# S\n\n" + " ".join(f"[l{i}](t{i}.md)" for i in range(n)) + "\n",  # many links in a section
    lambda n: "# S\n\n" + "[l](t.md) " * n + "\n",                                 # the same link many times
    lambda n: "# S\n\n" + "[" * n + "*a " * n + "`a" * n + "\n",                   # unclosed brackets, emphasis
    lambda n: "---\n" + "".join(f"k{i}: v\n" for i in range(n)) + "---\n# T\n\nx\n",  # long front matter
], ids=["repeated-heading", "links", "same-link", "unclosed", "front-matter"])
def test_markdown_reading_is_linear(make):
    """Doubling the input twice multiplies the work by about 4, not 16 (a quadratic reader).

    CPU time, best of three, of sizes n and 4n, compared loosely (< 8x: at most 2.8x per
    doubling), never against a fixed number of seconds. The hand-written reader took 60 s for
    one heading repeated 10,000 times (slug numbering probed every earlier number) and 16 s
    for a section of 5,000 links (a list membership test per link).
    """
    n = 600
    small, large = make(n), make(4 * n)
    split_markdown(small, "a.md")  # warm up (markdown-it's rules, caches)
    t1, t4 = _cpu_seconds(split_markdown, small, "a.md"), _cpu_seconds(split_markdown, large, "a.md")
    assert t4 < 8.0 * t1 + 0.02, f"4x the input took {t4 / max(t1, 1e-9):.1f}x the time"
    ids = [e.id for e in split_markdown(make(50), "a.md")]
    assert len(ids) == len(set(ids))


def test_folder_walk_is_sorted_and_reports_other_files(tmp_path):
    root = tmp_path / "docs"
    write(root / "b.txt", "Short title\nbody of b\n")
    write(root / "a" / "long.txt", "x" * 130 + "\nmore\n")
    write(root / "a" / "page.md", "# Page\n\nText.\n")
    write(root / "image.png", b"\x89PNG")
    write(root / ".hidden" / "secret.md", "# Secret\n\nno\n")
    write(root / "empty.txt", "   \n")
    stats = ReadStats()
    entities = list(read_corpus([root], stats=stats))
    assert [e.id for e in entities] == ["a/long.txt", "a/page.md#page", "b.txt"]
    long, page, b = entities
    assert long.title == "long" and long.category == ("a",)
    assert b.title == "Short title" and b.text == "Short title\nbody of b" and b.source == "b.txt:1"
    assert page.category == ("a",)
    assert [p for p, _ in stats.skipped_files] == [str(root / "image.png")]
    assert "'.png'" in stats.skipped_files[0][1]
    assert stats.empty == 1
    # deterministic
    assert list(read_corpus([root])) == entities


def test_single_markdown_file_and_undecodable_file(tmp_path):
    md = write(tmp_path / "one.md", "# One\n\nBody.\n")
    assert [e.id for e in read_corpus([md])] == ["one.md#one"]
    bad = write(tmp_path / "bad.md", b"# T\n\nok\ncaf\xe9\n")
    with pytest.raises(CorpusError) as info:
        list(read_corpus([bad]))
    assert info.value.line == 4 and "--encoding cp1252" in info.value.message
    (e,) = read_corpus([bad], encoding="latin-1")
    assert e.text.endswith("café")


# --------------------------------------------------------------------------- façade


def test_missing_source_and_unknown_format(tmp_path):
    with pytest.raises(CorpusError, match="no such file or folder"):
        read_corpus([tmp_path / "nope.jsonl"], on_error="skip")
    odd = write(tmp_path / "data.xyz", "a,b\n1,2\n")
    with pytest.raises(CorpusError, match="unknown corpus format"):
        read_corpus([odd])
    stats = ReadStats()
    assert list(read_corpus([odd], on_error="skip", stats=stats)) == []
    assert stats.skipped == 1 and stats.errors[0][0] == str(odd)
    with pytest.raises(ParamError, match="'on_error'"):
        read_corpus([odd], on_error="ignore")
    with pytest.raises(ParamError, match="'encoding'"):
        read_corpus([odd], encoding="no-such-codec")


def test_duplicate_ids_across_sources(tmp_path):
    a = write(tmp_path / "a.jsonl", jsonl({"_id": "1", "text": "x"}, {"_id": "2", "text": "y"}))
    b = write(tmp_path / "b.jsonl", jsonl({"_id": "3", "text": "z"}, {"_id": "1", "text": "again"}))
    with pytest.raises(CorpusError) as info:
        list(read_corpus([a, b]))
    msg = str(info.value)
    assert "duplicate id '1'" in msg and "a.jsonl:1" in msg and "b.jsonl:2" in msg
    assert info.value.line == 2
    stats = ReadStats()
    assert [e.id for e in read_corpus([a, b], on_error="skip", stats=stats)] == ["1", "2", "3"]
    assert stats.duplicates == 1 and stats.sources == {str(a): 2, str(b): 1}


# --------------------------------------------------------------------------- built-in corpus


@pytest.fixture(scope="module")
def pydocs_run():
    before = set(sys.modules)
    stats = ReadStats()
    entities = list(read_corpus(None, stats=stats))
    return before, set(sys.modules), entities, stats


@pytest.fixture(scope="module")
def docstrings():
    """The built-in corpus without the HTML docs (which replace the docstrings they describe)."""
    return list(read_python_docs(html_docs=False))


def test_builtin_corpus_content(pydocs_run, docstrings):
    _, _, full, stats = pydocs_run
    assert stats.read == len(full)
    entities = docstrings
    assert len(entities) > 3000
    assert stats.sources == {builtin_corpus_id(): len(full)}
    by_id = {e.id: e for e in entities}
    assert len(by_id) == len(entities)
    join = by_id["fn:os.path.join"]
    assert join.category == ("os", "os.path") and join.title == "os.path.join"
    assert join.text.startswith("join(a, *p)\n") and join.tags == ("function",)
    decode = by_id["fn:json.JSONDecoder.decode"]
    assert decode.category == ("json", "json.decoder") and decode.tags == ("method",)
    assert decode.text.startswith("decode(s, ")  # self dropped
    assert by_id["cls:json.JSONDecoder"].source.startswith("json/decoder.py:")
    assert by_id["mod:json"].tags == ("module", "example")
    topics = [e for e in entities if e.id.startswith("topic:")]
    assert len(topics) >= 50 and all(e.category == ("Language reference",) for e in topics)
    ids = set(by_id)
    assert all(r in ids for e in entities for r in e.related)
    assert sum(bool(e.related) for e in entities) > 100
    assert "fn:shutil.copystat" in by_id["fn:shutil.copy2"].related  # "see the copystat function"
    # nothing private, nothing from test packages (the docstring entities; HTML ids are page paths)
    for e in entities:
        if ":" not in e.id:
            continue
        name = e.id.split(":", 1)[1]
        assert not any(part.startswith("_") for part in name.split(".")), e.id
        assert not e.source.startswith(("test/", "idlelib/idle_test/")), e.id
    assert sys.version in python_docs_fingerprint()


def test_builtin_corpus_imports_nothing_it_documents(pydocs_run):
    before, after, _, _ = pydocs_run
    for name in ("antigravity", "this", "tkinter", "turtle", "idlelib"):
        assert name not in before, f"{name} was imported before the test"
        assert name not in after, f"reading the built-in corpus imported {name}"


def test_builtin_corpus_is_deterministic(pydocs_run, docstrings):
    _, _, entities, _ = pydocs_run
    # the docstrings (read again; the HTML documentation is the slow part), then the HTML pages
    again = list(read_python_docs(html_docs=False))
    assert [e.to_dict() for e in again] == [e.to_dict() for e in docstrings]
    ids = [e.id for e in entities]
    assert ids == [i for i in ids if ":" in i.split("/")[0]] + [i for i in ids if ":" not in i.split("/")[0]]
    kept = {e.id for e in entities}
    assert [e.id for e in docstrings if e.id in kept] == [i for i in ids if ":" in i.split("/")[0]]


def test_builtin_corpus_reads_c_code_in_a_child_process(pydocs_run, docstrings):
    """csv.reader lives in _csv (C): it is read under its public name, by a child process, so
    neither _csv nor a never-imported module (readline, _tkinter) enters this process."""
    from tablelm.corpus.pydocs import NEVER_IMPORT, compiled_module_names

    before, after, _, stats = pydocs_run
    by_id = {e.id: e for e in docstrings}
    for eid, module in (("fn:csv.reader", "_csv"), ("fn:csv.writer", "_csv"), ("fn:csv.register_dialect", "_csv"),
                        ("fn:os.listdir", "posix"), ("fn:time.sleep", "time")):
        assert by_id[eid].metadata["defined_in"] == module, eid
        assert by_id[eid].category == (eid.split(":")[1].split(".")[0],)
    assert by_id["fn:csv.reader"].text.startswith("csv_reader = reader(iterable")
    # a public class documents the methods it inherits from a private class of its module
    assert by_id["fn:argparse.ArgumentParser.add_argument"].category == ("argparse",)
    for name in ("readline", "_tkinter", "_csv", "_heapq"):
        if name not in before:
            assert name not in after, f"reading the built-in corpus imported {name} into this process"
    assert "readline" in NEVER_IMPORT and "readline" not in compiled_module_names()
    # compiled modules that warn they are deprecated are reported, not read
    assert any(f.startswith("compiled module ") and why == "deprecated by this Python"
               for f, why in stats.skipped_files)


# --------------------------------------------------------------------------- never another exception

_PIECES = ["{", "}", "[", "]", '"', "'", ":", ",", "~~", "#", "## ", "```", "---", "\n", " ",
           "_id", "text", "title", "1", "\\", "<http://x>", "[a](b)", "\x00", "é", "\ufeff", "null"]
_noise = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda s: s.encode("utf-8", errors="surrogatepass")),
    st.lists(st.sampled_from(_PIECES), max_size=60).map(lambda xs: "".join(xs).encode("utf-8")),
    st.lists(st.sampled_from(_PIECES), max_size=40).map(lambda xs: ("7~~{" + "".join(xs)).encode()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_noise, suffix=st.sampled_from([".jsonl", ".md", ".txt"]),
       encoding=st.sampled_from(["utf-8", "cp1252"]))
def test_any_bytes_read_or_raise_corpus_error(data, suffix, encoding):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"f{suffix}"
        path.write_bytes(data)
        reads_or_raises_corpus_error(path, encoding=encoding)


def test_builtin_corpus_has_the_builtins(docstrings):
    import builtins

    entities = docstrings
    by_id = {e.id: e for e in entities}
    for eid in ("fn:open", "fn:sorted", "fn:len", "fn:print", "cls:dict", "cls:list", "cls:str",
                "fn:dict.get", "fn:dict.fromkeys", "fn:list.append", "fn:str.join", "attr:int.real"):
        assert eid in by_id, eid
        assert by_id[eid].category == ("builtins",)
    sorted_ = by_id["fn:sorted"]
    assert sorted_.text.startswith("sorted(iterable, /, *, key=None, reverse=False)\n")
    assert sorted_.tags == ("function",) and sorted_.title == "sorted"
    assert by_id["fn:dict.get"].text.startswith("get(key, default=None, /)\n")  # self dropped
    assert by_id["fn:dict.get"].tags == ("method",)
    assert by_id["fn:dict.fromkeys"].text.startswith("fromkeys(iterable, value=None, /)\n")
    # no signature from inspect: the docstring's first line is the signature, not repeated
    assert by_id["cls:dict"].text.startswith("dict() -> new empty dictionary\n")
    assert by_id["attr:int.real"].tags == ("attribute",)
    # aliases read once under the object's own name; instances (help, exit) are not objects
    assert builtins.IOError is builtins.OSError
    assert "cls:OSError" in by_id and "cls:IOError" not in by_id
    assert not {"fn:help", "fn:exit", "cls:help"} & set(by_id)
    # every public builtin function with a docstring is there
    import inspect

    for name, obj in vars(builtins).items():
        if not name.startswith("_") and inspect.isbuiltin(obj) and inspect.getdoc(obj):
            assert f"fn:{name}" in by_id, name


def test_builtin_corpus_reads_compiled_modules_and_ignores_runtime_replacements(monkeypatch):
    """os.listdir, time.sleep, io.TextIOWrapper.readline are there (C code, no .py source), and
    a hook a program replaces at run time does not change the corpus."""
    before = [e.to_dict() for e in read_python_docs(topics=False, builtin_objects=False, html_docs=False)]
    by_id = {e["id"]: e for e in before}
    for eid, category in (("fn:os.listdir", ["os"]), ("fn:time.sleep", ["time"]),
                          ("fn:io.TextIOWrapper.readline", ["io"]), ("cls:collections.deque", ["collections"])):
        assert by_id[eid]["category"] == category, eid
    assert "fn:sys.unraisablehook" in by_id

    def replacement(unraisable):
        """Not Python's."""

    monkeypatch.setattr(sys, "unraisablehook", replacement)
    monkeypatch.setattr(sys, "displayhook", replacement)
    after = [e.to_dict() for e in read_python_docs(topics=False, builtin_objects=False, html_docs=False)]
    assert after == before


def test_builtin_corpus_leaves_out_deprecated_modules_and_programs():
    stats = ReadStats()
    ids = {e.id for e in read_python_docs(stats=stats, topics=False, builtin_objects=False, html_docs=False)}
    assert not any(i.startswith(("mod:distutils", "fn:distutils.", "mod:lib2to3", "mod:telnetlib", "mod:idlelib",
                                 "mod:turtledemo")) for i in ids)
    assert {"mod:shutil", "cls:tkinter.Tk", "mod:turtle"} <= ids  # not deprecated: kept
    reasons = {r for _, r in stats.skipped_files}
    assert "deprecated by this Python" in reasons


# --------------------------------------------------------------------------- the HTML documentation


def test_html_docs_are_found_for_this_python_only(tmp_path, monkeypatch):
    from tablelm.corpus import pydocs

    xy = f"{sys.version_info[0]}.{sys.version_info[1]}"
    site = write(tmp_path / "html" / "_static" / "documentation_options.js",
                 f"var DOCUMENTATION_OPTIONS = {{ VERSION: '{xy}.99', LANGUAGE: 'en' }};").parents[1]
    write(site / "library" / "demo.html", "<html><body><div class='body'><h1>demo</h1>"
          "<p>The demo module makes <a href='other.html#top'>food</a>.</p>"
          "<dl class='py function'><dt class='sig sig-object py' id='demo.spam'>demo.spam(x)</dt>"
          "<dd><p>Return spam for x.</p><p>Second paragraph.</p></dd></dl>"
          "<dl class='py function'><dt class='sig sig-object py' id='demo.eggs'>demo.eggs()</dt>"
          "<dd><p>Like <a href='#demo.spam'>spam</a>, see <a href='other.html'>other</a>.</p></dd></dl>"
          "</div></body></html>")
    write(site / "library" / "other.html", "<html><body><div class='body'><h1>other</h1>"
          "<p>Use <a href='demo.html#demo.spam'>demo.spam</a> for spam.</p></div></body></html>")
    monkeypatch.setenv(pydocs.HTML_DOCS_ENV, str(site))
    assert pydocs.python_html_docs() == (site.resolve(), f"{xy}.99")
    assert f"html {site.resolve()}" in pydocs.python_docs_fingerprint()
    ents = {e.id: e for e in pydocs.read_html_docs(site)}
    obj = ents["library/demo.html#demo.spam"]
    assert obj.title == "demo.spam" and obj.text == "demo.spam(x)\nReturn spam for x.\n\nSecond paragraph."
    assert obj.category == ("Library reference", "demo") and obj.tags == ("function",)
    # the page itself, from the HTML reader: its own prose and links, not its objects' (their entities
    # hold them: one text, one card)
    assert ents["library/demo.html"].text == "The demo module makes food."
    assert ents["library/demo.html"].related == ("library/other.html",)
    # a link to a documented object goes to the object's entity (its in-links: the importance
    # prior), not to the page around it; an object's own links are its related items
    assert ents["library/other.html"].related == ("library/demo.html#demo.spam",)
    assert ents["library/demo.html#demo.eggs"].related == ("library/demo.html#demo.spam", "library/other.html")
    assert ents["library/demo.html#demo.spam"].related == ()
    # the docs of another Python describe another library: not used
    write(site / "_static" / "documentation_options.js", "VERSION: '2.7.18'")
    assert pydocs.python_html_docs() is None
    monkeypatch.setenv(pydocs.HTML_DOCS_ENV, "none")
    assert pydocs.python_html_docs() is None and "no html docs" in pydocs.python_docs_fingerprint()
    facts = pydocs.builtin_corpus_facts([])
    assert facts["html_docs"] is None and f"python{xy}-doc" in facts["html_docs_hint"]


def test_builtin_corpus_includes_the_installed_html_docs(pydocs_run):
    from tablelm.corpus.pydocs import python_html_docs

    if python_html_docs() is None:
        pytest.skip("no HTML documentation of this Python installed (Debian: apt-get install python3.11-doc)")
    _, _, entities, _ = pydocs_run
    by_id = {e.id: e for e in entities}
    assert "tutorial/inputoutput.html#reading-and-writing-files" in by_id
    assert by_id["library/os.html#os.environ"].title == "os.environ"
    assert by_id["library/functions.html#open"].text.startswith("open(file, mode='r'")
    # an object the HTML describes is read from there only; links to its docstring follow it
    assert "fn:open" not in by_id and "fn:csv.reader" not in by_id and "library/csv.html#csv.reader" in by_id
    ids = set(by_id)
    assert all(r in ids for e in entities for r in e.related)
    assert not any(e.id.startswith(("whatsnew/", "c-api/", "genindex")) for e in entities)
    # an object's description is in its own entity only, not also in the sections around it
    words = "Serialize obj as a JSON formatted stream to fp"
    assert [e.id for e in entities if words in e.text] == ["library/json.html#json.dump"]
    assert "The csv module defines the following functions" in by_id["library/csv.html#module-contents"].text


def test_content_key_is_computed_once_per_entity(monkeypatch):
    """A build asks each entity's content key twice (dropping duplicates, then the entity-content
    table): the second time it is the kept value, without hashing again."""
    import tablelm.corpus as corpus
    from tablelm.corpus.entity import TextEntity

    e = TextEntity(id="a", text="Some  Text", title="T", tags=("b", "a"))
    key = corpus.content_key(e)
    assert key is not None and key == corpus.content_key(TextEntity(id="z", text="some text", title="t",
                                                                       tags=("a", "b")))
    monkeypatch.setattr(corpus, "_norm", lambda s: pytest.fail("hashed again"))
    assert corpus.content_key(e) == key
    assert e == TextEntity(id="a", text="Some  Text", title="T", tags=("b", "a"))  # equality: the fields only
