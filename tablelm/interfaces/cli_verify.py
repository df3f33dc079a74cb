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
    from ..tables.store import verify as verify_files

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
