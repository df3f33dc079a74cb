"""The ``tablelm`` command line: build, ask, search (TREC runs), show, info, params, and its errors.

Most tests use click's CliRunner (in process); the error cases also run the real
command in a subprocess, to check exit codes and that no traceback reaches the user.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from click.testing import CliRunner

import tablelm
from tablelm.interfaces.cli import main

from conftest import SCIFACT_QUERIES, cli_env, head_lines, needs_data, tablelm_cmd, write

SUMMARY = re.compile(r"^Built (?P<out>.+): (?P<entities>[\d,]+) entities, (?P<mt>[\d,]+) multitokens, "
                     r"(?P<pairs>[\d,]+) pairs, (?P<post>[\d,]+) postings in [\d.]+ s\.$", re.M)


def run(*args, **kw):
    """Invoke the CLI in process; stdout and stderr apart."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


def num(s: str) -> int:
    return int(s.replace(",", ""))


def no_traceback(text: str):
    assert "Traceback" not in text and 'File "' not in text, text


# --------------------------------------------------------------------------- build


@needs_data
def test_build_prints_a_summary(scifact_file, scifact_model, tmp_path):
    out = tmp_path / "m"
    r = run("build", scifact_file, "-o", out)
    assert r.exit_code == 0, r.stderr
    m = SUMMARY.search(r.stdout)
    assert m, r.stdout
    stats = tablelm.load(out).manifest["stats"]
    assert (num(m["entities"]), num(m["mt"]), num(m["pairs"]), num(m["post"])) == \
        (300, stats["multitokens"], stats["pairs"], stats["postings"])
    assert stats == scifact_model.manifest["stats"]
    # --json: the same facts, machine-readable
    r = run("build", scifact_file, "-o", out, "-p", "max_ngram=2", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["entities"] == 300 and data["multitokens"] == tablelm.load(out).manifest["stats"]["multitokens"]
    assert tablelm.load(out).build_params["max_ngram"] == 2


@needs_data
def test_build_in_a_subprocess(scifact_file, tmp_path):
    r = subprocess.run(tablelm_cmd("build", scifact_file, "-o", tmp_path / "m"), env=cli_env(tmp_path / "cache"),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    m = SUMMARY.search(r.stdout)
    assert m and num(m["entities"]) == 300 and num(m["mt"]) > 0 and num(m["pairs"]) > 0
    no_traceback(r.stderr)
    assert tablelm.load(tmp_path / "m").n_docs == 300


def test_build_without_output_is_a_usage_error(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text('{"_id": "1", "text": "hello world"}\n')
    r = CliRunner().invoke(main, ["build", str(src)])
    assert r.exit_code == 2 and "-o" in r.stderr


# --------------------------------------------------------------------------- ask


@needs_data
def test_ask_text_and_json(scifact_model_dir, scifact_model):
    prompt = "vitamin D deficiency"
    r = run("ask", "-m", scifact_model_dir, "-k", 3, prompt)
    assert r.exit_code == 0, r.stderr
    want = scifact_model.ask(prompt, k=3)
    assert r.stdout.startswith(f"Prompt: {prompt}")
    for c in want.cards:
        assert f"[{c.id}]" in r.stdout and f"score {c.score:.3f}" in r.stdout
    assert "why: " not in r.stdout  # compact by default; -v shows why
    assert "why: " in run("ask", "-m", scifact_model_dir, "-k", 3, "-v", prompt).stdout
    assert f"({len(want.cards)} cards in " in r.stdout

    r = run("ask", "-m", scifact_model_dir, "-k", 3, "--json", "vitamin", "D", "deficiency")  # words joined
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["prompt"] == prompt
    assert [c["id"] for c in data["cards"]] == [c.id for c in want.cards]
    for key in ("plan", "cards", "sections", "params", "timings_ms"):
        assert key in data
    card = data["cards"][0]
    for key in ("id", "title", "category", "tags", "score", "why", "citations"):
        assert key in card
    assert card["citations"] and {"entity", "start", "end", "text"} <= set(card["citations"][0])


@needs_data
def test_ask_with_parameters(scifact_model_dir, scifact_model):
    r = run("ask", "-m", scifact_model_dir, "--json", "-k", 2, "-p", "ranker=reference", "-p", "beta=1", "vitamin D")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["params"]["ranker"] == "reference" and data["params"]["beta"] == 1.0
    assert [c["id"] for c in data["cards"]] == [c.id for c in scifact_model.ask("vitamin D", k=2, ranker="reference",
                                                                                 beta=1.0).cards]


def test_ask_uses_the_builtin_model(builtin_model):
    r = run("ask", "--json", "-k", 2, "copy a file")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["model"]["path"] == str(builtin_model.path)
    assert [c["id"] for c in data["cards"]] == [c.id for c in builtin_model.ask("copy a file", k=2).cards]


# --------------------------------------------------------------------------- search


def _trec_blocks(text: str, top_k: int, tag: str):
    """Parse and check a TREC run; return [(qid, [docids])] in file order."""
    blocks = []
    for line in text.splitlines():
        cols = line.split()
        assert len(cols) == 6, line
        qid, q0, doc, rank, score, t = cols
        assert q0 == "Q0" and t == tag
        if not blocks or blocks[-1][0] != qid:
            assert qid not in [b[0] for b in blocks], f"query {qid} split over two blocks"
            blocks.append((qid, [], []))
        blocks[-1][1].append(doc)
        blocks[-1][2].append((int(rank), float(score)))
    for qid, docs, ranks in blocks:
        assert [r for r, _ in ranks] == list(range(1, len(docs) + 1)), qid
        scores = [s for _, s in ranks]
        assert scores == sorted(scores, reverse=True) and scores[-1] > 0
        assert len(docs) <= top_k and len(set(docs)) == len(docs)
    return [(q, d) for q, d, _ in blocks]


@needs_data
def test_search_writes_a_trec_run_for_every_query(scifact_model_dir, scifact_model, scifact_queries_file, tmp_path):
    queries = [json.loads(x) for x in head_lines(scifact_queries_file, 100)]
    run_file = tmp_path / "run.trec"
    r = run("search", "-m", scifact_model_dir, "--queries", scifact_queries_file, "--top-k", 5, "--format", "trec",
            "-o", run_file)
    assert r.exit_code == 0, r.stderr
    assert f"Wrote {len(queries)} queries" in r.stderr
    blocks = _trec_blocks(run_file.read_text(), 5, "tablelm")
    assert [q for q, _ in blocks] == [q["_id"] for q in queries], "not one block per query, in file order"
    for (_, docs), q in zip(blocks, queries):
        assert docs == [d for d, _ in scifact_model.search(q["text"], 5)]
    # to standard output, another tag and top-k
    r = run("search", "-m", scifact_model_dir, "--queries", scifact_queries_file, "--top-k", 2, "--tag", "mine")
    assert r.exit_code == 0, r.stderr
    assert [q for q, _ in _trec_blocks(r.stdout, 2, "mine")] == [q["_id"] for q in queries]
    # jsonl format
    r = run("search", "-m", scifact_model_dir, "--queries", scifact_queries_file, "--top-k", 3, "--format", "jsonl")
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x["qid"] for x in rows] == [q["_id"] for q in queries]
    assert all(1 <= len(x["hits"]) <= 3 for x in rows)


@needs_data
def test_search_in_a_subprocess_covers_every_query(scifact_model_dir, tmp_path):
    if not SCIFACT_QUERIES.exists():
        pytest.skip("no SciFact queries")
    queries = tmp_path / "q.jsonl"
    queries.write_text("\n".join(head_lines(SCIFACT_QUERIES, 30)) + "\n")
    r = subprocess.run(tablelm_cmd("search", "-m", scifact_model_dir, "--queries", queries, "--top-k", 10,
                                   "--format", "trec", "-o", tmp_path / "run"),
                       env=cli_env(tmp_path / "cache"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    blocks = _trec_blocks((tmp_path / "run").read_text(), 10, "tablelm")
    ids = [json.loads(x)["_id"] for x in queries.read_text().splitlines()]
    # a query whose words are all unknown may have no line: every other query has its block
    assert [q for q, _ in blocks] == [q for q in ids if q in {b for b, _ in blocks}]
    assert len(blocks) >= 28


# --------------------------------------------------------------------------- show, info, params


@needs_data
def test_show(scifact_model_dir, scifact_model):
    ids = scifact_model.ids[:2]
    r = run("show", "-m", scifact_model_dir, *ids)
    assert r.exit_code == 0, r.stderr
    for i in ids:
        e = scifact_model.entity(i)
        assert f"== {e.id}: {e.title}" in r.stdout and e.text in r.stdout
    r = run("show", "-m", scifact_model_dir, "--json", ids[0])
    assert json.loads(r.stdout) == [scifact_model.entity(ids[0]).to_dict()]
    r = CliRunner().invoke(main, ["show", "-m", str(scifact_model_dir), "no-such-id"])
    assert r.exit_code == 1 and "no-such-id" in r.stderr
    no_traceback(r.stderr)


@needs_data
def test_info(scifact_model_dir, scifact_model):
    r = run("info", "-m", scifact_model_dir)
    assert r.exit_code == 0, r.stderr
    assert str(scifact_model_dir) in r.stdout and "max_ngram=" in r.stdout
    for name in ("post_docs", "pair_cols", "mt_words"):
        assert name in r.stdout
    data = json.loads(run("info", "-m", scifact_model_dir, "--json").stdout)
    assert data["stats"]["entities"] == 300
    assert data["build_params"] == scifact_model.build_params
    assert data["tables"]["mt_words"] == list(scifact_model.tables.mt_words.shape)


def test_params_command():
    r = run("params")
    assert r.exit_code == 0 and "max_ngram" in r.stdout and "[build]" in r.stdout


# --------------------------------------------------------------------------- errors




def _errors(tmp_path):
    """(name, args, pattern the message must match) for every user error."""
    bad = write(tmp_path / "bad.jsonl", '{"_id": "1", "text": "fine"}\n{"_id": "2", "text": "ok"}\n'
                                         '{"_id": "3", "text": oops}\n')
    empty = write(tmp_path / "empty.jsonl", "")
    latin = write(tmp_path / "latin.jsonl", '{"_id": "1", "text": "caf\xe9 cr\xe8me"}\n'.encode("latin-1"))
    good = write(tmp_path / "good.jsonl", '{"_id": "1", "text": "hello world"}\n')
    return [
        ("malformed", ["build", bad, "-o", tmp_path / "o1", "--on-error", "fail"], rf"{re.escape(str(bad))} line 3\b"),
        ("empty", ["build", empty, "-o", tmp_path / "o2"], rf"No entities found in {re.escape(str(empty))}"),
        ("encoding", ["build", latin, "-o", tmp_path / "o3", "--on-error", "fail"], r"(?i)utf-8.*--encoding"),
        ("bad-param", ["build", good, "-o", tmp_path / "o4", "-p", "max_ngram=9"],
         r"The 'max_ngram' parameter must be an int in \[1, 4\]\. Got '9'\."),
        ("bad-query-param", ["ask", "-m", tmp_path / "o4", "-p", "k1=abc", "hello"],
         r"The 'k1' parameter must be a float in \[0\.0, 5\.0\]\. Got 'abc'\."),
        ("unknown-param", ["ask", "-m", tmp_path / "o4", "-p", "phrase_wieght=1", "hello"],
         r"Unknown parameter 'phrase_wieght'.*Did you mean phrase_weight"),
        ("no-model", ["ask", "-m", tmp_path / "nomodel", "hello"], r"not a tablelm model.*tablelm build"),
        ("missing-source", ["build", tmp_path / "nope.jsonl", "-o", tmp_path / "o5"], r"nope\.jsonl.*no such file"),
    ]


def test_malformed_records_are_reported_and_skipped_by_default(tmp_path):
    bad = write(tmp_path / "bad.jsonl", '{"_id": "1", "text": "fine words"}\n{"_id": "2", "text": "ok words"}\n'
                                         '{"_id": "3", "text": oops}\n')
    r = CliRunner().invoke(main, ["build", str(bad), "-o", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    assert "2 entities" in r.stdout
    assert re.search(rf"1 malformed records skipped:\n\s+{re.escape(str(bad))} line 3: ", r.stderr), r.stderr
    assert "Traceback" not in r.stderr


ERROR_NAMES = ["malformed", "empty", "encoding", "bad-param", "bad-query-param", "unknown-param", "no-model",
               "missing-source"]


@pytest.mark.parametrize("name", ERROR_NAMES)
def test_errors_exit_1_with_a_clear_message(tmp_path, name):
    args, pattern = next((a, p) for n, a, p in _errors(tmp_path) if n == name)
    r = CliRunner().invoke(main, [str(a) for a in args])
    assert r.exit_code == 1, (r.stdout, r.stderr, r.exception)
    assert r.stderr.startswith("Error: ")
    assert re.search(pattern, r.stderr), r.stderr
    no_traceback(r.stderr)
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_errors_in_a_subprocess(tmp_path):
    """The real command: exit status 1, one clear message, no traceback, nothing on stdout."""
    env = cli_env(tmp_path / "cache")
    for name, args, pattern in _errors(tmp_path):
        r = subprocess.run(tablelm_cmd(*args), env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, (name, r.stdout, r.stderr)
        assert re.search(pattern, r.stderr), (name, r.stderr)
        no_traceback(r.stderr)
        assert r.stdout == "", (name, r.stdout)


def test_encoding_option_reads_the_file(tmp_path):
    latin = write(tmp_path / "latin.jsonl", '{"_id": "1", "text": "caf\xe9 cr\xe8me br\xfbl\xe9e"}\n'.encode("latin-1"))
    r = run("build", latin, "-o", tmp_path / "m", "--encoding", "cp1252")
    assert r.exit_code == 0, r.stderr
    assert "crème" in tablelm.load(tmp_path / "m").entity("1").text
