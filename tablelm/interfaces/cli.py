"""The ``tablelm`` command line: it parses flags, calls the library, renders.

Exit codes: 0 ok, 1 error (a clear message, no traceback), 2 usage.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import ClassVar

import click

from .. import params as P
from ..errors import ParamError, TablelmError

PARAM_HELP = "A parameter as name=value; repeatable. 'tablelm params' lists them."


def model_option(required: bool = False):
    """The ``-m/--model`` option, one declaration for every command that reads a model."""
    return click.option("-m", "--model", "model_dir", required=required, type=click.Path(path_type=Path),
                        help="Model directory." if required else "Model directory (default: built-in).")


def registry_option(name: str, flag: str | None = None, **overrides):
    """A click option for the registry parameter ``name``: its flag (``--pdf-unit``), default, help and
    type (choices, bounds) come from the registry, which also validates the value (the same message as
    the Python API). A boolean's ``flag`` switches it away from its default (``--keep-duplicates``)."""
    p = P.REGISTRY[name]
    c = p.constraint
    kw: dict = {"default": p.default, "help": p.help}
    if isinstance(c, P.Flag):
        kw.update(is_flag=True, flag_value=not p.default)
    else:
        kw["show_default"] = True
        if isinstance(c, P.Options):
            kw["type"] = click.Choice(c.choices)
        elif isinstance(c, P.Interval):
            kw["type"] = (click.IntRange(int(c.lo), int(c.hi)) if c.kind is int  # int bounds: click's stubs
                          else click.FloatRange(c.lo, c.hi))

        def validate(_ctx, _param, value):  # the registry's rule: what a click type lets through (nan)
            try:
                return p.validate(value)
            except ParamError as e:
                raise click.BadParameter(str(e)) from None

        kw["callback"] = validate
    kw.update(overrides)
    return click.option(flag or "--" + name.replace("_", "-"), name, **kw)


class _Group(click.Group):
    """Turns library errors into one-line messages with exit code 1.

    Commands with heavy imports (the web server) live in their own modules and are
    imported only when used, so ``tablelm ask`` starts fast.
    """

    #: name -> (module, attribute, short help shown by ``tablelm --help`` without importing the module)
    LAZY: ClassVar[dict[str, tuple[str, str, str]]] = {
        "serve": ("tablelm.interfaces.server", "serve_command",
                  "Serve the JSON API, the web page (/) and an OpenAI-compatible endpoint (/v1)."),
        "chat": ("tablelm.interfaces.chat", "chat_command",
                 "Interactive session: prompts and a command menu to fine-tune parameters (-h lists it)."),
        "graph": ("tablelm.interfaces.cli_graph", "graph",
                  "Export the category tree (with entity counts) and the related-item links."),
        "taxonomy": ("tablelm.interfaces.cli_graph", "taxonomy",
                     "Taxonomy reconstruction: predict each entity's category from its text (leave-one-out) and "
                     "count exact and near (parent/child/sibling) matches."),
        "verify": ("tablelm.interfaces.cli_verify", "verify",
                   "Check a model: every table's size, dtype, shape and checksum; one line per problem."),
        "mcp": ("tablelm.interfaces.mcp", "mcp_command",
                "Serve a model to MCP clients (agents): ask, search, entity and describe tools."),
    }

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.LAZY))

    def get_command(self, ctx, name):
        if name in self.LAZY and name not in self.commands:
            import importlib

            module, attr, _ = self.LAZY[name]
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def _short_helps(self, ctx, names, limit: int = 45):
        """(name, short help) of commands; a lazy one's from :attr:`LAZY`, so that listing the
        commands (``tablelm --help``, shell completion) never imports the web stack."""
        for name in names:
            if name in self.LAZY and name not in self.commands:
                # a bare Command with that help: click's own (public) rule for the short help
                yield name, click.Command(name, help=self.LAZY[name][2]).get_short_help_str(limit)
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                yield name, cmd.get_short_help_str(limit=limit)

    def format_commands(self, ctx, formatter):
        names = self.list_commands(ctx)
        rows = list(self._short_helps(ctx, names, formatter.width - 6 - max(map(len, names))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def shell_complete(self, ctx, incomplete):
        from click.shell_completion import CompletionItem

        names = [n for n in self.list_commands(ctx) if n.startswith(incomplete)]
        return ([CompletionItem(n, help=h) for n, h in self._short_helps(ctx, names)]
                + click.Command.shell_complete(self, ctx, incomplete))  # and the options

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except TablelmError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(1)
        except KeyError as e:
            click.echo(f"Error: {e.args[0] if e.args else e}", err=True)
            sys.exit(1)
        except (IndexError, ValueError, OSError) as e:
            # what damaged tables raise deep in a lookup; the traceback helps nobody but a developer
            if os.environ.get("TABLELM_DEBUG"):
                raise
            click.echo(f"Error: {type(e).__name__}: {e}. If a model is involved it may be damaged: check it with "
                       "tablelm verify -m MODEL_DIR and rebuild it (TABLELM_DEBUG=1 shows the traceback).", err=True)
            sys.exit(1)


def _params(items, stage) -> dict:
    return P.resolve(P.parse_assignments(items), stage=stage, base={})


def _model(path):
    from ..builtin import builtin_model
    from ..model import load

    return load(path) if path else builtin_model(progress=True)


ROUTE_OPTIONS = [  # the options of the commands that ask a model (ask, search, eval): sub-models
    click.option("-s", "--submodel", "submodels", multiple=True, metavar="NAME",
                 help="A split model: ask only this sub-model (repeatable) instead of the router's choice."),
    click.option("--route", type=click.Choice(["auto", "all"]), default=None,
                 help="A split model: the router picks the sub-models (auto, the default) or every one is asked "
                      "(all: the unsplit model's ranking)."),
]


def _route_options(f):
    for option in reversed(ROUTE_OPTIONS):
        f = option(f)
    return f


def _routing(model, submodels, route) -> dict:
    """The -s/--route values as keyword arguments of a split model's ask/search; an error for a plain model."""
    if not submodels and route is None:
        return {}
    if not hasattr(model, "submodels"):
        raise TablelmError(f"{model.path or 'this model'} is not split into sub-models, so -s/--route do not apply; "
                           "build one with tablelm build ... --split-by FIELD.")
    out: dict = {"route": route} if route else {}
    if submodels:
        out["submodels"] = [n for item in submodels for n in item.split(",") if n.strip()]
    return out


def _emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


def _print_version(ctx, _param, value) -> None:
    if value and not ctx.resilient_parsing:
        from ..model import __version__  # the one place the version is written (pyproject reads it)

        click.echo(f"tablelm {__version__}")
        ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
def main():
    """tablelm: an untrained LLM. A corpus becomes tables; prompts get ranked, cited cards.

    With no model (-m), commands use the built-in model of Python's own documentation,
    built on first use and cached.

    Shell completion (bash, zsh, fish): eval "$(_TABLELM_COMPLETE=bash_source tablelm)"
    (zsh_source, fish_source for the others).
    """


# ------------------------------------------------------------------------------- build
READER_OPTIONS = [  # the options of every command that reads sources (build, add, update)
    click.option("--id-field", help="JSONL field holding the entity id (default: _id, then id)."),
    click.option("--text-field", help="JSONL field holding the text (default: text)."),
    click.option("--title-field", help="JSONL field holding the title (default: title)."),
    click.option("--category-field", help="JSONL field holding the category (string or list = path)."),
    click.option("--tags-field", help="JSONL field holding the tags (list or string)."),
    click.option("--related-field", help="JSONL field holding related items (list)."),
    registry_option("encoding"),
    registry_option("on_error", default="skip"),  # a command line reports a bad record and goes on
    registry_option("pdf_unit"),
    registry_option("max_file_mb"),
    click.option("--list-separators", default=None, help="CSV: characters that split list cells (default ';|')."),
    registry_option("dedupe_content", "--keep-duplicates", help="Keep entities whose normalized content repeats "
                    "another's."),
]


def _reader_options(f):
    for option in reversed(READER_OPTIONS):
        f = option(f)
    return f


def _reading(options: dict) -> dict:
    """The READER_OPTIONS values as keyword arguments of tablelm.build (and of Model.add)."""
    from ..corpus import FieldMap

    o = dict(options)
    fm_args = {k: o.pop(k) for k in ("id_field", "text_field", "title_field", "category_field", "tags_field",
                                     "related_field", "list_separators")}
    fm_args = {k: v for k, v in fm_args.items() if v is not None}
    return {"field_map": FieldMap(**fm_args) if fm_args else None, "encoding": o["encoding"],
            "on_error": o["on_error"],
            "reader_options": {"pdf_unit": o["pdf_unit"], "max_file_mb": o["max_file_mb"],
                               "dedupe_content": o["dedupe_content"]}}


@main.command()
@click.argument("sources", nargs=-1, type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(path_type=Path),
              help="Model directory to write (replaced atomically). Default with no SOURCE: the built-in model cache.")
@click.option("-p", "--param", "param_items", multiple=True, metavar="NAME=VALUE", help=PARAM_HELP)
@_reader_options
@click.option("--kw-map", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="JSON file {word: replacement} applied before stemming (plurals, acronyms, synonyms).")
@click.option("--memory", "memory_mb", type=click.FloatRange(min=64), default=2048, show_default=True,
              help="Memory budget of the counting, in MB: a larger corpus is read and counted in shards "
                   "(same tables). With --engine dask: per worker.")
@click.option("--split-by", metavar="FIELD",
              help="Build one sub-model per top value of FIELD (category: the top of the category path; tags: the "
                   "first tag; title, source, id (with --split-sep ':': the prefix of ids like npm:NAME), or "
                   "metadata.KEY), asked through a router (docs/submodels.md).")
@click.option("--split-sep", metavar="SEP", help="With --split-by: keep a value's part before SEP ('3.73' -> '3').")
@click.option("--max-submodels", type=click.IntRange(min=2), default=None,
              help="With --split-by: at most this many sub-models (the rarest values share '_other'; default 32).")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="Count in this process, or on a Dask cluster (pip install 'tablelm[dask]'; the same model, "
                   "byte for byte; docs/distributed.md).")
@click.option("--scheduler", metavar="ADDRESS",
              help="With --engine dask: the Dask scheduler (tcp://HOST:8786). Default: a local cluster of one "
                   "worker process per core.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def build(sources, out, param_items, kw_map, memory_mb, as_json, split_by, split_sep, max_submodels, engine,
          scheduler, **reading):
    """Build a model from SOURCES (files or folders; none: Python's documentation)."""
    from ..builtin import builtin_dir
    from ..model import build as build_model
    from ..text.analyzer import read_kw_map

    bp = _params(param_items, "build")
    if scheduler is not None and engine != "dask":
        raise click.UsageError("--scheduler goes with --engine dask.")
    if out is None:
        if sources:
            raise click.UsageError("Pass -o MODEL_DIR to say where the model goes.")
        out = builtin_dir()
    kw = read_kw_map(kw_map) if kw_map else None
    report: dict = {}
    t0 = time.perf_counter()
    if (split_sep or max_submodels) and not split_by:
        raise click.UsageError("--split-sep and --max-submodels go with --split-by FIELD.")
    split = {"split_by": split_by, "split_sep": split_sep, "max_submodels": max_submodels} if split_by else {}
    model = build_model(list(sources) or None, out, kw_map=kw, progress=True, report=report, memory_mb=memory_mb,
                        engine=engine, scheduler=scheduler, **_reading(reading), **split, **bp)
    elapsed = time.perf_counter() - t0
    stats = model.manifest["stats"]
    summary = {"model": str(out), "entities": stats["entities"], "multitokens": stats["multitokens"],
               "pairs": stats["pairs"], "postings": stats["postings"], "seconds": round(elapsed, 3),
               "skipped": report.get("skipped", 0), "duplicates": report.get("duplicates", 0),
               "errors": report.get("errors", [])[:20], "truncated": report.get("truncated", [])[:20],
               "skipped_files": report.get("skipped_files", [])[:20]}
    if split_by:
        summary["submodels"] = model.submodels
    if engine == "dask":
        summary.update(engine="dask", workers=report.get("workers"), shards=report.get("shards"))
    if as_json:
        _emit_json(summary)
        return
    click.echo(f"Built {out}: {stats['entities']:,} entities, {stats['multitokens']:,} multitokens, "
               f"{stats['pairs']:,} pairs, {stats['postings']:,} postings in {elapsed:.2f} s"
               + (f" ({report.get('shards')} shards on {report.get('workers')} Dask workers)." if engine == "dask"
                  else "."))
    if split_by:
        click.echo(f"  {len(model.submodels)} sub-models by {split_by}: "
                   + ", ".join(f"{s['name']} ({s['entities']:,})" for s in model.submodels))
    if summary["duplicates"]:
        click.echo(f"  {summary['duplicates']:,} duplicate records dropped.")
    if summary["skipped"]:
        click.echo(f"  {summary['skipped']:,} malformed records skipped:", err=True)
        for path, line, msg in report["errors"][:10]:
            click.echo(f"    {path}{'' if line is None else f' line {line}'}: {msg}", err=True)
    if report.get("truncated"):
        click.echo(f"  {len(report['truncated']):,} records cut to the per-record size limits:", err=True)
        for path, line, msg in report["truncated"][:10]:
            click.echo(f"    {path}{'' if line is None else f' line {line}'}: {msg}", err=True)
    if report.get("skipped_files"):
        click.echo(f"  {len(report['skipped_files']):,} files not read:")
        for path, reason in report["skipped_files"][:10]:
            click.echo(f"    {path}: {reason}")
        if len(report["skipped_files"]) > 10:
            click.echo(f"    ... and {len(report['skipped_files']) - 10:,} more (--json lists 20).")


# ------------------------------------------------------------------------------- add, delete, update
def _change_summary(verb: str, model_dir, report: dict) -> None:
    click.echo(f"{verb} {model_dir}: {report.get('added', 0):,} added, {report.get('deleted', 0):,} deleted, "
               f"{report.get('recounted', 0):,} recounted ({report.get('promoted', 0):,} multitokens entered the "
               f"dictionary, {report.get('demoted', 0):,} left it) in {report.get('seconds', 0):.2f} s.")
    if report.get("skipped_ids"):
        click.echo(f"  {len(report['skipped_ids']):,} ids already in the model were skipped (tablelm update replaces "
                   f"them): {', '.join(map(str, report['skipped_ids'][:5]))}", err=True)
    if report.get("duplicates"):
        click.echo(f"  {len(report['duplicates']):,} entities repeat content the model has and were dropped.")
    for path, line, msg in report.get("errors", [])[:10]:
        click.echo(f"    {path}{'' if line is None else f' line {line}'}: {msg}", err=True)


def _add_or_update(model_dir, sources, reading, replace: bool, verb: str) -> None:
    from ..model import load

    report: dict = {}
    load(model_dir).add(list(sources), replace=replace, report=report, **_reading(reading))
    _change_summary(verb, model_dir, report)


@main.command()
@model_option(required=True)
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@_reader_options
def add(model_dir, sources, **reading):
    """Add the entities of SOURCES to a model, in place and atomically (no rebuild).

    The model answers exactly as a build of its entities followed by the new ones would.
    Ids the model already has are skipped (use 'tablelm update' to replace them).
    """
    _add_or_update(model_dir, sources, reading, False, "Added to")


@main.command()
@model_option(required=True)
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@_reader_options
def update(model_dir, sources, **reading):
    """Replace the entities of a model that SOURCES have ids for (and add the new ones), in place.

    A replaced entity is deleted and added again, so it moves to the end of the corpus order.
    """
    _add_or_update(model_dir, sources, reading, True, "Updated")


@main.command()
@model_option(required=True)
@click.argument("ids", nargs=-1, required=True)
def delete(model_dir, ids):
    """Delete the entities with these IDS from a model, in place and atomically (no rebuild)."""
    from ..model import load

    report: dict = {}
    load(model_dir).delete(list(ids), report=report)
    _change_summary("Deleted from", model_dir, report)


# ------------------------------------------------------------------------------- ask
@main.command()
@click.argument("prompt", nargs=-1, required=True)
@model_option()
@click.option("-k", default=10, show_default=True, type=click.IntRange(1, P.MAX_K), help="Number of cards.")
@click.option("-p", "--param", "param_items", multiple=True, metavar="NAME=VALUE", help=PARAM_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the whole answer as JSON.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="category=NAME|tag=NAME",
              help="Only entities with this category or tag; repeatable (all must hold).")
@click.option("-v", "--verbose", is_flag=True, help="Every card with why it scored, its source, every section row.")
@_route_options
def ask(prompt, model_dir, k, param_items, as_json, verbose, filters, submodels, route):
    """Answer PROMPT with ranked, cited cards. Syntax: !word excludes, "exact phrase", a~b forces a multitoken."""
    from ..answer.render import render_text

    qp = _params(param_items, ("query", "render"))
    if filters:
        qp["filter"] = tuple(qp.get("filter", ())) + filters
    model = _model(model_dir)
    answer = model.ask(" ".join(prompt), k=k, **qp, **_routing(model, submodels, route))
    if as_json:
        click.echo(answer.to_json())
    else:
        click.echo(render_text(answer, color=sys.stdout.isatty(), verbose=verbose))


# ------------------------------------------------------------------------------- search
@main.command()
@model_option(required=True)
@click.option("--queries", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Queries in BEIR queries.jsonl form ({\"_id\", \"text\"} per line).")
@click.option("--top-k", default=100, show_default=True, type=click.IntRange(1, 100000))
@click.option("--format", "fmt", type=click.Choice(["trec", "jsonl"]), default="trec", show_default=True)
@click.option("--tag", default="tablelm", show_default=True, help="Run tag (last TREC column).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Run file (default: standard output).")
@click.option("-p", "--param", "param_items", multiple=True, metavar="NAME=VALUE", help=PARAM_HELP)
@_route_options
def search(model_dir, queries, top_k, fmt, tag, output, param_items, submodels, route):
    """Run every query of a file and write a TREC run (qid Q0 docid rank score tag).

    Ids holding spaces or '%' are percent-encoded in TREC runs (tablelm's own run reader decodes them).
    """
    from ..evaluation import read_queries, write_trec_run

    qp = _params(param_items, ("query", "render"))
    model = _model(model_dir)
    qs = read_queries(queries)
    run = model.search_many(qs, top_k, **qp, **_routing(model, submodels, route))  # planned in one batch
    out = open(output, "w", encoding="utf-8") if output else sys.stdout
    try:
        if fmt == "trec":
            write_trec_run(run, out, tag=tag)
        else:
            for qid, hits in run.items():
                out.write(json.dumps({"qid": qid, "hits": [{"id": d, "score": s} for d, s in hits]},
                                     ensure_ascii=False) + "\n")
    finally:
        if output:
            out.close()
    if output:
        click.echo(f"Wrote {len(qs):,} queries to {output}.", err=True)


# ------------------------------------------------------------------------------- eval / tune
def _is_prompt_file(path: Path) -> bool:
    """The reference system's ``prompt | reference answer`` file rather than BEIR queries.jsonl."""
    with open(path, "rb") as f:
        head = f.read(4096).decode("utf-8", "replace").lstrip()
    return not head.startswith("{") and "|" in head.splitlines()[0] if head else False


@main.command("eval")
@model_option()
@click.option("--queries", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="BEIR queries.jsonl, or a 'prompt | reference answer' file (coverage is reported then).")
@click.option("--qrels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Judgments (BEIR qrels TSV or TREC qrels); required with queries.jsonl.")
@click.option("-k", default=10, show_default=True, type=click.IntRange(1, P.MAX_K),
              help="Cards a user sees: the cutoff of exhaustivity and of prompt coverage.")
@click.option("-p", "--param", "param_items", multiple=True, metavar="NAME=VALUE", help=PARAM_HELP)
@click.option("--compare", "compare_run", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A TREC run of another system on the same queries: per-query deltas, paired randomization "
                   "test and t-test, wins/ties/losses of this model against it.")
@click.option("--resamples", default=10000, show_default=True, type=click.IntRange(100, 10_000_000),
              help="With --compare: random sign assignments of the randomization test (seed 0).")
@click.option("--json", "as_json", is_flag=True)
@_route_options
def eval_cmd(model_dir, queries, qrels, k, param_items, compare_run, resamples, as_json, submodels, route):
    """Measure answer quality and latency: nDCG@10, MAP@100, Recall@100, MRR@10, exhaustivity.

    With --compare RUN_FILE, also test whether this model's difference from that run is real.
    """
    from .. import evaluation as E

    qp = _params(param_items, ("query", "render"))
    model = _model(model_dir)
    qp.update(_routing(model, submodels, route))
    if _is_prompt_file(queries):
        coverage = E.prompt_coverage(model, E.read_prompts(queries), k=k, **qp)
        if as_json:
            _emit_json(coverage.to_dict())
            return
        click.echo(f"{len(coverage.per_prompt)} prompts; mean coverage of the reference answers' content words "
                   f"by the top {k} cards: {coverage.mean_coverage:.3f}")
        return
    if qrels is None:
        raise click.UsageError("--qrels is required with a queries.jsonl file.")
    metrics = ("ndcg@10", "map@100", "recall@100", "mrr@10", f"exhaustivity@{k}")
    judged = E.read_qrels(qrels)
    baseline = E.read_trec_run(compare_run) if compare_run else None
    if baseline is not None and not any(q in baseline for q in judged):
        raise click.BadParameter(f"{compare_run} has no run for any of the {len(judged)} judged queries of "
                                 f"{qrels}; pass a run of the same queries", param_hint="--compare")
    rep = E.evaluate_model(model, E.read_queries(queries), judged, k=max(100, k), metrics=metrics, **qp)
    cmp = (E.compare_runs(rep.run, baseline, judged, metrics, n_resamples=resamples)
           if baseline is not None else None)
    if as_json:
        _emit_json(dict(rep.to_dict(), **({"compare": dict(cmp.to_dict(), run_file=str(compare_run))}
                                          if cmp else {})))
        return
    click.echo(f"{rep.n_queries} judged queries ({rep.n_missing} returned nothing)")
    for name, value in rep.metrics.items():
        click.echo(f"  {name:<16} {value:.4f}")
    click.echo(f"  latency p50 {rep.latency_ms_p50:.2f} ms, p95 {rep.latency_ms_p95:.2f} ms; "
               f"{rep.queries_per_s:,.0f} queries/s")
    if cmp:
        _echo_comparison(cmp, compare_run)


def _echo_comparison(cmp, run_file) -> None:
    """The paired test of ``tablelm eval --compare`` as text: one line per metric, then the largest deltas."""
    click.echo(f"against {run_file} (A = this model, B = the run; p: paired randomization test, "
               f"{cmp.tests[cmp.metrics[0]]['n_resamples']:,} sign flips, and paired t-test):")
    click.echo(f"  {'metric':<16} {'A':>7} {'B':>7} {'A-B':>8}  wins/ties/losses  p(rand)  p(t)")
    for name in cmp.metrics:
        t = cmp.tests[name]
        verdict = "real (p < 0.05)" if t["p_randomization"] < 0.05 else "could be noise"
        click.echo(f"  {name:<16} {t['mean_a']:7.4f} {t['mean_b']:7.4f} {t['delta']:+8.4f}  "
                   f"{t['wins']:>4}/{t['ties']}/{t['losses']:<6}  {t['p_randomization']:.4f}  "
                   f"{t['p_ttest']:.4f}  {verdict}")
    wins, losses = cmp.largest(cmp.metrics[0])
    for label, items in (("largest wins", wins), ("largest losses", losses)):
        if items:
            click.echo(f"  {label} ({cmp.metrics[0]}): " + ", ".join(f"{q} {d:+.3f}" for q, d in items))
    click.echo("  per-query deltas: --json (compare.per_query)")


@main.command()
@model_option(required=True)
@click.option("--queries", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="BEIR queries.jsonl.")
@click.option("--qrels", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Judgments to tune on.")
@click.option("--heldout-qrels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Judgments reported before/after but never used to choose (shows overfitting).")
@click.option("--metric", default="ndcg@10", show_default=True, help="Metric to maximize.")
@click.option("--budget", default=60, show_default=True, type=click.IntRange(1, 10000), help="Metric evaluations.")
@click.option("--name", default="tuned", show_default=True, help="Name of the saved profile.")
@click.option("--from-usage", is_flag=True, help="Promote the parameter values users chose most often instead.")
@click.option("--min-count", default=3, show_default=True, help="With --from-usage: times a value must be chosen.")
@click.option("--reset", is_flag=True, help="Remove the profile: back to the registry defaults.")
@click.option("--dry-run", is_flag=True, help="Search and report, but do not save the profile.")
@click.option("--force", is_flag=True,
              help="Save the winner even when its held-out score is below the current profile's.")
@click.option("--json", "as_json", is_flag=True)
def tune(model_dir, queries, qrels, heldout_qrels, metric, budget, name, from_usage, min_count, reset, dry_run,
         force, as_json):
    """Optimize the query parameters directly for a metric and save them as the model's default profile.

    With --heldout-qrels, a winner that scores below the current profile on the held-out queries is not
    saved (the current profile stays) unless --force.
    """
    from .. import evaluation as E
    from ..model import load
    from ..tune import profile_from_usage
    from ..tune import tune as run_tune

    model = load(model_dir)
    if reset:
        model.set_profile({"name": "defaults", "params": {}})
        click.echo("Profile removed: the model uses the registry defaults.")
        return
    if from_usage:
        result = profile_from_usage(model, min_count=min_count)
        if not result["records"]:
            raise TablelmError(f"No parameter usage recorded for this model (nothing in {result['file']}), so "
                               "there is nothing to promote and no profile was saved. Recording is opt-in: set "
                               "TABLELM_RECORD_USAGE=1 where the model answers (tablelm ask/serve, Python), "
                               "then run this again.")
        profile = {"name": name, "source": "usage", "params": result["params"], "records": result["records"]}
    else:
        if queries is None or qrels is None:
            raise click.UsageError("--queries and --qrels are required (or use --from-usage).")
        E.parse_metric(metric)
        qs = E.read_queries(queries)
        heldout = (qs, E.read_qrels(heldout_qrels)) if heldout_qrels else None

        def show(step):
            if not as_json:
                mark = "*" if step["accepted"] else " "
                click.echo(f"{mark} {step['step']:>4}  {metric}={step['score']:.4f}  "
                           + ", ".join(f"{k}={v}" for k, v in step["params"].items()))

        result = run_tune(model, qs, E.read_qrels(qrels), metric=metric, budget=budget, heldout=heldout,
                          progress=show)
        profile = {"name": name, "source": "tune", "metric": metric, "params": result["params"],
                   "train": result["train"], "heldout": result.get("heldout"),
                   "queries": str(queries), "qrels": str(qrels)}
    refused = result.get("worse_heldout") if not force else None
    save = not dry_run and not refused
    if save:
        model.set_profile(profile)
    if as_json:
        _emit_json(dict(profile, saved=save, kept_current=refused,
                        **({"path": result["path"]} if "path" in result else {})))
        return
    click.echo(f"profile {name!r}: " + (", ".join(f"{k}={v}" for k, v in profile["params"].items()) or "(defaults)"))
    if "train" in result:
        click.echo(f"  train   {metric} {result['train']['before']:.4f} -> {result['train']['after']:.4f}")
    if result.get("heldout"):
        click.echo(f"  heldout {metric} {result['heldout']['before']:.4f} -> {result['heldout']['after']:.4f}")
    if refused and not dry_run:
        click.echo(f"not saved: {refused}; the current profile stays (--force saves it anyway).")
    elif result.get("worse_heldout") and force and not dry_run:
        click.echo(f"saved although {result['worse_heldout']} (--force).")
    if save:
        click.echo("saved in the model's manifest; used by default from now on.")
    elif dry_run:
        click.echo("not saved (--dry-run).")


# ------------------------------------------------------------------------------- show / info / params
@main.command()
@click.argument("ids", nargs=-1, required=True)
@model_option()
@click.option("--json", "as_json", is_flag=True)
def show(ids, model_dir, as_json):
    """Show the full content of entities by id."""
    model = _model(model_dir)
    ents = [model.entity(i) for i in ids]
    if as_json:
        _emit_json([e.to_dict() for e in ents])
        return
    from ..answer.render import render_entity

    for e in ents:
        click.echo(render_entity(e))


@main.command()
@model_option()
@click.option("--json", "as_json", is_flag=True)
def info(model_dir, as_json):
    """Table sizes, build parameters, corpus and tuned profile of a model."""
    model = _model(model_dir)
    data = model.info()
    if as_json:
        _emit_json(data)
        return
    click.echo(f"model        {data['path']}")
    click.echo(f"format       {data['format_version']} (tablelm {data['tablelm_version']})")
    click.echo(f"fingerprint  {data['fingerprint'][:16]}")
    click.echo(f"corpus       {', '.join(data['corpus']['sources'])}")
    if "counts" in data["corpus"]:  # the built-in corpus: say what it was read from
        n = data["corpus"]["counts"]
        click.echo(f"  python docs  {n['topics']:,} language-reference topics, {n['docstrings']:,} docstrings, "
                   f"{n['html']:,} pages and sections of the HTML documentation")
        html = data["corpus"].get("html_docs")
        click.echo(f"  html docs    {html['folder']} (Python {html['version']})" if html
                   else f"  html docs    {data['corpus'].get('html_docs_hint', 'none')}")
    for k, v in data["stats"].items():
        click.echo(f"{k:<24} {v:,}" if isinstance(v, int) else f"{k:<24} {v}")
    if data.get("submodels"):
        split = data.get("split", {})
        click.echo(f"sub-models (split by {split.get('by')}" + (f", before {split['sep']!r}" if split.get("sep")
                                                                 else "") + "):")
        for s in data["submodels"]:
            click.echo(f"  {s['name']:<22} {s['entities']:>9,} entities  {s['label']}")
    click.echo("build parameters: " + ", ".join(f"{k}={v}" for k, v in data["build_params"].items()))
    prof = data.get("profile") or {}
    if prof.get("params"):
        click.echo(f"profile {prof.get('name', 'tuned')}: " + ", ".join(f"{k}={v}" for k, v in prof["params"].items()))
    click.echo("tables:")
    for name, shape in data["tables"].items():
        click.echo(f"  {name:<22} {' x '.join(f'{s:,}' for s in shape)}")


@main.command()
@model_option(required=True)
def upgrade(model_dir):
    """Rebuild a model of an older format in place, from the entities it stores (no sources needed)."""
    from ..model import upgrade as upgrade_model

    t0 = time.perf_counter()
    model = upgrade_model(model_dir, progress=True)
    click.echo(f"Upgraded {model_dir} to format {model.manifest['format_version']}: {model.n_docs:,} entities "
               f"in {time.perf_counter() - t0:.2f} s.")


@main.command("params")
@click.option("--stage", type=click.Choice(P.STAGES), help="Only this stage.")
@click.option("--json", "as_json", is_flag=True)
def params_cmd(stage, as_json):
    """List every parameter: name, default, rule, stage and help."""
    rows = [p.to_dict() for p in P.REGISTRY.values() if stage is None or p.stage == stage]
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        default = ",".join(r["default"]) if isinstance(r["default"], list) else r["default"]
        click.echo(f"{r['name']}  [{r['stage']}]  default {default}  ({r['rule']})")
        click.echo(f"    {r['help']}")


if __name__ == "__main__":  # pragma: no cover
    main(prog_name="tablelm")
