"""``tablelm graph`` and ``tablelm taxonomy``: the knowledge graph of a model.

Registered on the main group by one line at the end of :mod:`tablelm.interfaces.cli`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from .cli import model_option


def _load(model_dir: Path):
    from ..model import load

    return load(model_dir)  # ModelError says what is missing and how to rebuild


@click.command()
@model_option(required=True)
@click.option("--format", "fmt", type=click.Choice(["json", "dot"]), default="json",
              show_default=True, help="JSON data, or Graphviz DOT (dot -Tsvg FILE).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="File to write (default: standard output).")
def graph(model_dir, fmt, output):
    """Export the category tree (with entity counts) and the related-item links."""
    from ..graph import graph_dict, to_dot

    data = graph_dict(_load(model_dir))
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n" if fmt == "json" else to_dot(data)
    if output:
        output.write_text(text, encoding="utf-8")
        c = data["counts"]
        click.echo(f"Wrote {output}: {c['categories']:,} categories, {c['related_edges']:,} "
                   f"related links ({c['external_related']:,} to targets outside the corpus).",
                   err=True)
    else:
        click.echo(text, nl=False)


@click.command()
@model_option(required=True)
@click.option("--normalize", is_flag=True,
              help="Divide counts by the category's total (big categories stop winning by size).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def taxonomy(model_dir, normalize, as_json):
    """Taxonomy reconstruction: predict each entity's category from its text (leave-one-out)
    and count exact and near (parent/child/sibling) matches."""
    from ..graph import reconstruct_taxonomy, taxonomy_text

    result = reconstruct_taxonomy(_load(model_dir), normalize=normalize)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        click.echo(taxonomy_text(result))
