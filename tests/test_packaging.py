"""Packaging and command-line rough edges: ``python -m tablelm``, ``--version`` from one place,
a fast ``--help``, shell completion, ``py.typed``, LICENSE, git-ignored example outputs, TREC
ids with spaces, and ``tune --from-usage`` with nothing recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib

import pytest
from click.testing import CliRunner

import tablelm
from tablelm import evaluation as ev
from tablelm.interfaces.cli import _Group, main

from conftest import ROOT, cli_env


def _python(*args, env=None, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env=env, **kw)


@pytest.fixture(scope="module")
def spaced_model(tmp_path_factory):
    """A tiny model whose ids are paths with spaces and a '%', as folder and Markdown ids are."""
    src = tmp_path_factory.mktemp("spaced") / "corpus.jsonl"
    docs = {"guide/read me.md#Reading files": "read a file line by line", "notes/100% json.md": "parse json text",
            "plain": "write a file"}
    src.write_text("".join(json.dumps({"_id": i, "text": t}) + "\n" for i, t in docs.items()), "utf-8")
    return tablelm.build([src], tmp_path_factory.mktemp("spaced-model") / "model")


def test_version_is_written_once_and_python_dash_m_reports_it(tablelm_cache):
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"]
    assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "tablelm.model.__version__"}
    r = _python("-m", "tablelm", "--version", env=cli_env(tablelm_cache))  # python -m tablelm is the CLI
    assert r.returncode == 0 and r.stdout.strip() == f"tablelm {tablelm.__version__}", r.stderr
    assert CliRunner().invoke(main, ["no-such-command"]).exit_code == 2


def test_package_files():
    assert (ROOT / "tablelm" / "py.typed").is_file()
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    assert "py.typed" in meta["tool"]["setuptools"]["package-data"]["tablelm"]
    text = (ROOT / "LICENSE").read_text("utf-8")
    assert text.startswith("MIT License") and meta["project"]["license"] == "MIT"


def test_help_lists_every_command_without_importing_the_web_stack(tablelm_cache):
    code = ("import sys\nfrom tablelm.interfaces.cli import main\n"
            "try:\n    main(['--help'], prog_name='tablelm')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'mcp') if m in sys.modules))")
    r = _python("-c", code, env=cli_env(tablelm_cache))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"
    for name in _Group.LAZY:
        assert f"\n  {name} " in r.stdout


def test_lazy_help_is_the_commands_own_help():
    import importlib

    for name, (module, attr, short) in _Group.LAZY.items():
        cmd = getattr(importlib.import_module(module), attr)
        assert cmd.get_short_help_str(limit=10_000) == short, name


def test_shell_completion():
    def complete(**env):
        return CliRunner().invoke(main, [], prog_name="tablelm", env=env)

    r = complete(_TABLELM_COMPLETE="bash_source")
    assert r.exit_code == 0 and "_tablelm_completion" in r.output and "complete " in r.output
    r = complete(_TABLELM_COMPLETE="bash_complete", COMP_WORDS="tablelm se", COMP_CWORD="1")
    assert r.exit_code == 0, r.output
    assert {line.split(",")[1] for line in r.output.splitlines()} == {"search", "serve"}
    r = complete(_TABLELM_COMPLETE="zsh_complete", COMP_WORDS="tablelm m", COMP_CWORD="1")
    kind, name, help_ = r.output.splitlines()[:3]  # a lazy command's help, without importing it
    assert (kind, name) == ("plain", "mcp") and _Group.LAZY["mcp"][2].startswith(help_.rstrip("."))
    assert "_TABLELM_COMPLETE" in (ROOT / "README.md").read_text("utf-8")


def test_readme_example_outputs_are_git_ignored():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["models/scifact/manifest.json", "scifact.run", "run.txt"]
    r = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.split() == paths, r.stderr


def test_search_writes_ids_with_spaces_as_six_columns(spaced_model, tmp_path):
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"_id": "q 1", "text": "read a file"}) + "\n"
                       + json.dumps({"_id": "q2", "text": "json"}) + "\n", "utf-8")
    out = tmp_path / "run.trec"
    r = CliRunner().invoke(main, ["search", "-m", str(spaced_model.path), "--queries", str(queries), "-o", str(out)])
    assert r.exit_code == 0, r.output
    lines = out.read_text("utf-8").splitlines()
    assert lines and all(len(line.split()) == 6 for line in lines)
    assert "q%201 Q0 guide/read%20me.md#Reading%20files 1 " in lines[0]
    run = ev.read_trec_run(out)
    # the same ranking as the library's batched search, ids decoded exactly
    assert run == spaced_model.search_many({"q 1": "read a file", "q2": "json"}, 100)
    assert run["q2"][0][0] == "notes/100% json.md"


def test_trec_ids_round_trip_exactly(tmp_path):
    ids = ["a b", "a%20b", "tab\there", "100%", "ünï cödé", "line\nbreak"]
    run = {q: [(d, 1.0)] for q, d in zip(ids, ids)}
    path = tmp_path / "run.txt"
    assert ev.write_trec_run(run, path) == len(ids)
    assert all(len(line.split()) == 6 for line in path.read_text("utf-8").splitlines())
    assert ev.read_trec_run(path) == run
    for bad in ({"": [("d", 1.0)]}, {"q": [("", 1.0)]}):
        with pytest.raises(ValueError, match="empty"):
            ev.write_trec_run(bad, path)


def test_tune_from_usage_with_nothing_recorded_says_how_to_record(spaced_model, tmp_path, monkeypatch):
    monkeypatch.setenv("TABLELM_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("TABLELM_RECORD_USAGE", raising=False)
    before = (spaced_model.path / "manifest.json").read_bytes()
    r = CliRunner().invoke(main, ["tune", "-m", str(spaced_model.path), "--from-usage"])
    assert r.exit_code == 1
    assert "TABLELM_RECORD_USAGE=1" in r.stderr and "no profile was saved" in r.stderr
    assert (spaced_model.path / "manifest.json").read_bytes() == before
