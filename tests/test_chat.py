"""``tablelm chat``: the prompt loop and its command menu, driven through standard input."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tablelm import params as P
from tablelm.interfaces.cli import main

PROMPT = "data governance policy"



# xllm_model_dir / xllm_model: the session fixtures of conftest.py (the xLLM enterprise repository).


def chat(model_dir, *lines, args=()):
    res = CliRunner().invoke(main, ["chat", "-m", str(model_dir), *args], input="\n".join(lines) + "\n")
    assert res.exit_code == 0, (res.output, res.exception)
    return res.output


def answers(output: str) -> list[str]:
    """The answers in a transcript, each from its 'Prompt:' line to its '(N cards in ...)' line."""
    return re.findall(r"^Prompt: .*?^\(\d+ cards in [\d.]+ ms\)$", output, re.M | re.S)


def card_ids(answer: str) -> list[str]:
    return re.findall(r"^ ?\d+\. .*?\[([^\]]+)\]   score", answer, re.M)


def test_a_prompt_is_answered_like_ask(xllm_model_dir, xllm_model):
    out = chat(xllm_model_dir, PROMPT)
    (ans,) = answers(out)
    want = xllm_model.ask(PROMPT)
    assert card_ids(ans) == [c.id for c in want.cards[:5]]  # compact: the top 5, and how many more
    assert "... and 5 more cards" in ans
    # the chat reply starts with the short cited answer
    quote = " ".join(want.summary.passages[0].text.split())
    assert ans.split("\n\n")[1].replace("\n  ", " ").strip().startswith(quote[:40])
    assert out.rstrip().endswith("Bye.")


def test_set_parameter_and_k_change_the_next_answer(xllm_model_dir, xllm_model):
    out = chat(xllm_model_dir, PROMPT, "-p k 3", "-p ranker reference", "-x")
    first, second = answers(out)
    assert "k = 3" in out and "ranker = reference" in out
    assert card_ids(second) == [c.id for c in xllm_model.ask(PROMPT, k=3, ranker="reference").cards]
    assert len(card_ids(first)) == 5 and len(card_ids(second)) == 3


def test_invalid_parameter_names_rule_and_session_goes_on(xllm_model_dir):
    out = chat(xllm_model_dir, "-p beta 9", "-p bta=1", "-p k 0", "-p beta", PROMPT)
    assert "The 'beta' parameter must be a float in [0.0, 2.0]. Got '9'." in out
    assert "Did you mean beta?" in out
    assert "The 'k' parameter must be an int in [1, 1000]" in out
    assert "Usage: -p NAME VALUE" in out
    assert len(answers(out)) == 1


def test_view_and_restore_defaults(xllm_model_dir, xllm_model):
    beta = xllm_model.params()["beta"]
    out = chat(xllm_model_dir, "-p beta=0.9", "-p k 2", "-v", "-d", "-v")
    first, second = out.split("Parameters restored to their defaults.")
    assert re.search(r"^\* beta\s+0\.9\s", first, re.M)
    assert re.search(r"^\* k\s+2\s", first, re.M)
    assert re.search(rf"^  beta\s+{beta}\s", second, re.M) and re.search(r"^  k\s+10\s", second, re.M)
    for name, p in P.REGISTRY.items():
        if p.stage in ("query", "render"):
            assert re.search(rf"^[ *] {name}\s", second, re.M), name


def test_ignore_list_commands(xllm_model_dir):
    out = chat(xllm_model_dir, "-l", "-a data policy", "-l", PROMPT, "-r policy nope", "-l")
    assert "Ignore list: (empty)" in out
    assert "Ignore list: data, policy" in out
    (ans,) = answers(out)
    assert re.search(r"^  ignored: data, policy$", ans, re.M)
    assert "Not in the ignore list: nope" in out
    assert out.rstrip().splitlines()[-2] == "Ignore list: data"


def test_sections_choice(xllm_model_dir):
    out = chat(xllm_model_dir, "-c tags", PROMPT, "-c all", PROMPT, "-c bogus")
    assert "Sections: tags" in out
    one, every = answers(out)
    assert re.search(r"^  tags ", one, re.M) and not re.search(r"^  categories ", one, re.M)
    assert re.search(r"^  categories ", every, re.M) and re.search(r"^  tags ", every, re.M)
    assert "The 'sections' parameter must be a comma-separated list of 'categories'" in out


def test_entities_sizes_samples_help(xllm_model_dir, xllm_model, tmp_path):
    some_id = xllm_model.ask(PROMPT, k=1).cards[0].id
    entity = xllm_model.entity(some_id)
    out = chat(xllm_model_dir, f"-i {some_id} no-such-id", "-s", "-e", "-h", "-x")
    assert f"== {entity.id}: {entity.title}" in out and entity.text in out
    assert "no entity with id 'no-such-id'" in out
    assert f"entities                 {xllm_model.n_docs:,}" in out and "post_docs" in out
    assert re.search(r"^  1\. \S", out, re.M)
    for cmd in ("-p NAME VALUE", "-d", "-v", "-a WORD", "-r WORD", "-l", "-i ID", "-s", "-c SECTION", "-x",
                "-e [N]", "-h", "-q"):
        assert f"  {cmd}" in out, cmd
    assert "No prompt yet." in out

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# a comment\nWhat is a data steward? | someone who...\n\ngen ai platform\n", "utf-8")
    out = chat(xllm_model_dir, "-e", "-e 2", "-e 7", args=["--prompts", str(prompts)])
    assert "  1. What is a data steward?\n  2. gen ai platform\n" in out
    (ans,) = answers(out)
    assert ans.startswith("Prompt: gen ai platform")
    assert "Usage: -e N with N in 1..2" in out


def test_quit_stops_reading(xllm_model_dir):
    out = chat(xllm_model_dir, "-q", PROMPT)
    assert not answers(out) and out.rstrip().endswith("Bye.")


def test_real_stdin_of_a_subprocess(xllm_model_dir, tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, TABLELM_CACHE=str(tmp_path),
               PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "tablelm.interfaces.cli", "chat", "-m", str(xllm_model_dir),
                           "-k", "2"], input=f"{PROMPT}\n-s\n", capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(answers(proc.stdout)) == 1 and "(2 cards in" in proc.stdout
    assert "\x1b[" not in proc.stdout  # no colour codes when stdout is not a terminal
    assert proc.stdout.rstrip().endswith("Bye.")


def test_bad_starting_parameter_is_a_usage_error(xllm_model_dir):
    res = CliRunner().invoke(main, ["chat", "-m", str(xllm_model_dir), "-p", "beta=7"], input="")
    assert res.exit_code == 1
    assert "The 'beta' parameter must be a float" in res.output


@pytest.mark.parametrize("line", ["quit", "exit"])
def test_quit_words(xllm_model_dir, line):
    assert not answers(chat(xllm_model_dir, line, PROMPT))


def test_unknown_command_shows_the_menu_not_a_search(xllm_model_dir):
    out = chat(xllm_model_dir, "-z", "--frobnicate now", "-1 policy")
    assert "Unknown command -z." in out and "Unknown command --frobnicate." in out
    assert out.count("-q                quit") == 2
    (ans,) = answers(out)  # "-1 policy" is a prompt: a dash and a digit are not a command
    assert ans.startswith("Prompt: -1 policy")


def test_history_is_kept_between_sessions(tmp_path, monkeypatch):
    readline = pytest.importorskip("readline")
    from tablelm.interfaces import chat as chat_module

    monkeypatch.setenv("TABLELM_DATA", str(tmp_path))
    path = chat_module.history_path()
    assert path == tmp_path / "chat_history"
    readline.clear_history()
    chat_module._line_editing(path)
    readline.add_history("data governance policy")
    chat_module._save_history(readline, path)
    readline.clear_history()
    chat_module._line_editing(path)
    assert readline.get_history_item(readline.get_current_history_length()) == "data governance policy"


def test_at_a_terminal_lines_are_edited_and_recalled(xllm_model_dir, tmp_path):
    """A real terminal (a pty): Ctrl+A moves to the start of the line (readline), the up arrow
    recalls the last prompt, an unknown command shows the menu, and the history is saved."""
    pytest.importorskip("readline")
    pty = pytest.importorskip("pty")
    import select
    import time

    master, slave = pty.openpty()
    env = {**os.environ, "TABLELM_DATA": str(tmp_path), "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "tablelm", "chat", "-m", str(xllm_model_dir)],
                            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    seen = b""

    def until(text: bytes, timeout: float = 120) -> bytes:
        nonlocal seen
        end = time.monotonic() + timeout
        while text not in seen:
            left = end - time.monotonic()
            assert left > 0 and proc.poll() is None, seen[-2000:]
            if select.select([master], [], [], left)[0]:
                try:
                    seen += os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
        assert text in seen, seen[-2000:]
        out, seen = seen, seen[seen.index(text) + len(text):]
        return out

    try:
        until(b"tablelm> ")
        os.write(master, b"-z\r")
        out = until(b"tablelm> ")
        assert b"Unknown command -z." in out and b"-q                quit" in out and b"Prompt:" not in out
        os.write(master, b"governance policy\x01data \r")  # Ctrl+A: the start of the line
        out = until(b"tablelm> ")
        assert b"Prompt: data governance policy" in out, out[-2000:]
        os.write(master, b"\x1b[A\r")  # the up arrow recalls it
        out = until(b"tablelm> ")
        assert b"Prompt: data governance policy" in out, out[-2000:]
        os.write(master, b"-q\r")
        until(b"Bye.")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    history = (tmp_path / "chat_history").read_text("utf-8")
    assert "data governance policy" in history and "-z" in history
