"""``tablelm verify``: check every file of a model against its manifest.

Registered lazily on the main group (see ``_Group.LAZY`` in :mod:`tablelm.interfaces.cli`).
"""

from __future__ import annotations

import sys

import click

from .cli import model_option


@click.command()
@model_option(required=True)
def verify(model_dir):
    """Check a model: every table's size, dtype, shape and checksum; one line per problem.

    Exit status 0 when the model is intact, 1 when something is damaged (rebuild it).
    """
    from ..errors import TablelmError
    from ..model import load
    from ..submodels import is_split, read_split_manifest
    from ..tables.store import verify as verify_files

    if is_split(model_dir):  # a split model: its router and every sub-model, each a tables directory
        try:
            manifest = read_split_manifest(model_dir)
        except TablelmError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(1)
        root = model_dir / manifest["folder"]
        problems = [line for name in ["router"] + [s["name"] for s in manifest["submodels"]]
                    for line in verify_files(root / name)]
        for line in problems:
            click.echo(f"Error: {line}", err=True)
        if problems:
            sys.exit(1)
        click.echo(f"{model_dir}: OK ({len(manifest['submodels'])} sub-models and the router, "
                   f"{manifest['stats']['entities']:,} entities; sizes, shapes and checksums match the manifests)")
        return
    problems = verify_files(model_dir)
    if not problems:
        try:
            model = load(model_dir)  # the tables a model needs are all there and fit together
        except TablelmError as e:
            problems = [str(e)]
    for line in problems:
        click.echo(f"Error: {line}", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"{model_dir}: OK ({len(model.manifest['tables'])} tables, {model.n_docs:,} entities; "
               "sizes, shapes and checksums match the manifest)")
