"""``tablelm chat``: a prompt loop with the reference system's command menu.

Each line is either a command (it starts with ``-``, as in the reference xLLM menu;
an unknown one shows the menu) or a prompt, which is answered with one call to
:meth:`Model.ask` and rendered as compact text, the short cited answer first. At a
terminal, lines can be edited and the history is kept between sessions (``readline``).
Commands change the parameters used by the next prompts, so users fine-tune in real time.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import ClassVar

import click

from .. import params as P
from ..answer.render import render_entity
from ..errors import TablelmError
from .cli import model_option

MENU = """\
Commands (anything else is a prompt; !word excludes, a~b forces a multitoken):
  -p NAME VALUE     set a parameter (also -p NAME=VALUE; -p k 5 sets the number of cards)
  -d                restore the default parameters
  -v                view the parameters (* = changed)
  -a WORD ...       add words to the ignore list
  -r WORD ...       remove words from the ignore list
  -l                list the ignore list
  -i ID ...         show the full content of entities
  -s                show the table sizes
  -c SECTION ...    choose the sections ({sections}, all, none)
  -x                repeat the last prompt
  -e [N]            list sample prompts; -e N asks sample N
  -h                this menu
  -q                quit (also Ctrl+D)"""


class ChatSession:
    """The state of one session: parameter overrides, k, last prompt. ``handle`` runs one line."""

    def __init__(self, model, *, k: int = 10, samples: list[str] | None = None, color: bool = False, echo=click.echo):
        self.model = model
        self.k = k
        self.default_k = k
        self.overrides: dict = {}
        self.last_prompt: str | None = None
        self._samples = samples
        self.color = color
        self.echo = echo

    # ------------------------------------------------------------------ state
    @property
    def samples(self) -> list[str]:
        if self._samples is None:
            from .server import sample_prompts

            self._samples = sample_prompts(self.model)
        return self._samples

    def current(self) -> dict:
        return self.model.params(**self.overrides)

    def set_param(self, name: str, value: str) -> None:
        if name == "k":
            k: int | str = value
            with contextlib.suppress(ValueError):
                k = int(value)
            self.k = P.check_k(k)  # a ParamError naming the rule
            return
        checked = self.model.params(**{**self.overrides, name: value})  # raises ParamError naming the rule
        self.overrides[name] = checked[name]

    # ------------------------------------------------------------------ commands
    def handle(self, line: str) -> bool:
        """Run one input line; False means quit."""
        line = line.strip()
        if not line:
            return True
        if line in ("quit", "exit", ":q"):
            return False
        cmd, _, rest = line.partition(" ")
        args = rest.split()
        handler = self.COMMANDS.get(cmd) if cmd.startswith("-") else None
        try:
            if handler is None and _looks_like_command(cmd):
                # "-z" is a mistyped command, not a prompt: searching for "z" would only puzzle
                self.echo(f"Unknown command {cmd}.")
                self.cmd_help([])
                return True
            if handler is None:
                self.ask(line)
                return True
            return handler(self, args) is not False
        except TablelmError as e:
            self.echo(f"Error: {e}")
        except KeyError as e:
            self.echo(f"Error: {e.args[0] if e.args else e}")
        return True

    def ask(self, prompt: str) -> None:
        from ..answer.render import render_text

        self.last_prompt = prompt
        answer = self.model.ask(prompt, k=self.k, **self.overrides)
        self.echo(render_text(answer, color=self.color))

    def cmd_set(self, args):
        if len(args) == 1 and "=" in args[0]:
            args = args[0].split("=", 1)
        if len(args) < 2:
            self.echo("Usage: -p NAME VALUE (e.g. -p beta 0.7). -v lists the parameters.")
            return
        name, value = args[0], " ".join(args[1:])
        self.set_param(name, value)
        shown = self.k if name == "k" else _fmt(self.overrides[name])
        self.echo(f"{name} = {shown}")

    def cmd_defaults(self, args):
        self.overrides.clear()
        self.k = self.default_k
        self.echo("Parameters restored to their defaults.")

    def cmd_view(self, args):
        cur = self.current()
        self.echo(f"{'*' if self.k != self.default_k else ' '} {'k':<28} {self.k:<14} number of cards")
        for name, value in cur.items():
            p = P.REGISTRY[name]
            mark = "*" if name in self.overrides else " "
            self.echo(f"{mark} {name:<28} {_fmt(value):<14} {p.constraint.describe()}, default {_fmt(p.default)}")

    def _ignore(self) -> list[str]:
        return list(self.current()["ignore"])

    def cmd_add_ignore(self, args):
        if not args:
            self.echo("Usage: -a WORD [WORD ...]")
            return
        words = self._ignore() + [w for w in args if w not in self._ignore()]
        self.set_param("ignore", ",".join(words))
        self.cmd_list_ignore([])

    def cmd_remove_ignore(self, args):
        if not args:
            self.echo("Usage: -r WORD [WORD ...]")
            return
        current = self._ignore()
        missing = [w for w in args if w not in current]
        if missing:
            self.echo("Not in the ignore list: " + ", ".join(missing))
        self.set_param("ignore", ",".join(w for w in current if w not in args))
        self.cmd_list_ignore([])

    def cmd_list_ignore(self, args):
        words = self._ignore()
        self.echo("Ignore list: " + (", ".join(words) if words else "(empty)"))

    def cmd_entities(self, args):
        if not args:
            self.echo("Usage: -i ID [ID ...] (ids are shown in brackets after each card title)")
            return
        for entity_id in args:
            try:
                e = self.model.entity(entity_id)
            except KeyError as err:
                self.echo(f"Error: {err.args[0] if err.args else err}")
                continue
            self.echo(render_entity(e))

    def cmd_sizes(self, args):
        info = self.model.info()
        for k, v in info["stats"].items():
            self.echo(f"{k:<24} {v:,}" if isinstance(v, int) else f"{k:<24} {v}")
        self.echo("tables:")
        for name, shape in info["tables"].items():
            self.echo(f"  {name:<24} {' x '.join(f'{s:,}' for s in shape)}")

    def cmd_sections(self, args):
        if not args:
            self.echo("Sections: " + ", ".join(self.current()["sections"]) + f". Choose among {', '.join(P.SECTIONS)}, "
                      "all, none.")
            return
        if args == ["all"]:
            self.overrides.pop("sections", None)
        else:
            self.set_param("sections", "" if args == ["none"] else ",".join(a.strip(",") for a in args))
        self.echo("Sections: " + (", ".join(self.current()["sections"]) or "(none)"))

    def cmd_repeat(self, args):
        if self.last_prompt is None:
            self.echo("No prompt yet.")
            return
        self.ask(self.last_prompt)

    def cmd_samples(self, args):
        samples = self.samples
        if args:
            try:
                n = int(args[0])
                prompt = samples[n - 1]
                if n < 1:
                    raise IndexError
            except (ValueError, IndexError):
                self.echo(f"Usage: -e N with N in 1..{len(samples)}")
                return
            self.ask(prompt)
            return
        for i, s in enumerate(samples, 1):
            self.echo(f"{i:>3}. {s}")

    def cmd_help(self, args):
        self.echo(MENU.format(sections=", ".join(P.SECTIONS)))

    def cmd_quit(self, args):
        return False

    COMMANDS: ClassVar[dict] = {
                "-p": cmd_set, "-d": cmd_defaults, "-v": cmd_view, "-a": cmd_add_ignore, "-r": cmd_remove_ignore,
                "-l": cmd_list_ignore, "-i": cmd_entities, "-s": cmd_sizes, "-c": cmd_sections, "-x": cmd_repeat,
                "-e": cmd_samples, "-h": cmd_help, "--help": cmd_help, "-q": cmd_quit}


def _looks_like_command(word: str) -> bool:
    """``-z``, ``--verbose``: a dash and letters, as the menu's commands ("-1" is a prompt)."""
    return len(word) >= 2 and word.startswith("-") and word.lstrip("-").isalpha()


def _line_editing(history: Path | None) -> None:
    """Line editing (arrows, Ctrl+R) and a history kept between sessions, when stdin is a terminal.

    Python's ``readline`` module; where it is missing (Windows without pyreadline3), the
    prompt still works, without editing.
    """
    try:
        import readline
    except ImportError:
        return
    if history is None:
        return
    try:
        history.parent.mkdir(parents=True, exist_ok=True)
        if history.exists():
            readline.read_history_file(history)
    except OSError:
        return
    readline.set_history_length(1000)
    import atexit

    atexit.register(_save_history, readline, history)


def _save_history(readline, history: Path) -> None:
    try:
        readline.write_history_file(history)
    except OSError:
        pass  # a read-only home: the history is lost, the session is not


def history_path() -> Path:
    """Where the chat history lives (``TABLELM_DATA`` overrides the user data folder)."""
    import os

    from platformdirs import user_data_dir

    return Path(os.environ.get("TABLELM_DATA") or user_data_dir("tablelm")) / "chat_history"


def _fmt(value) -> str:
    return ",".join(value) if isinstance(value, (list, tuple)) else str(value)


def read_prompts(path: Path) -> list[str]:
    """Sample prompts from a file: one a line; text after `` | `` (an expected answer) is dropped."""
    out = []
    for line in path.read_text("utf-8").splitlines():
        prompt = line.split(" | ", 1)[0].strip()
        if prompt and not prompt.startswith("#"):
            out.append(prompt)
    return out


@click.command("chat")
@model_option()
@click.option("-k", default=10, show_default=True, type=click.IntRange(1, P.MAX_K), help="Number of cards.")
@click.option("-p", "--param", "param_items", multiple=True, metavar="NAME=VALUE",
              help="A starting parameter as name=value; repeatable.")
@click.option("--prompts", "prompts_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Sample prompts for -e, one a line (default: derived from the corpus).")
def chat_command(model_dir, k, param_items, prompts_file):
    """Interactive session: prompts and a command menu to fine-tune parameters (-h lists it)."""
    from ..builtin import builtin_model
    from ..model import load

    model = load(model_dir) if model_dir else builtin_model(progress=True)
    tty = sys.stdin.isatty()
    session = ChatSession(model, k=k, samples=read_prompts(prompts_file) if prompts_file else None,
                          color=tty and sys.stdout.isatty())
    for name, value in P.parse_assignments(param_items).items():
        session.set_param(name, value)
    click.echo(f"tablelm chat: {model.n_docs:,} entities. Type a prompt, or -h for the commands, -q to quit.")
    if tty:
        _line_editing(history_path())
    while True:
        if tty:
            try:
                line = input("tablelm> ")  # with readline loaded: editing and history
            except EOFError:
                break
            except KeyboardInterrupt:  # Ctrl+C drops the line, as in a shell
                click.echo("")
                continue
        else:
            line = sys.stdin.readline()
            if not line:  # end of input
                break
        if not session.handle(line):
            break
    click.echo("Bye.")
