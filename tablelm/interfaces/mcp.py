"""``tablelm mcp``: a model served to agents over the Model Context Protocol.

Tools (each answers with structured JSON, also given as text for clients that read only text):

``ask``
    Ranked, cited cards for a prompt: score, why (the matched multitokens and their
    contributions), citations (entity id, field, character span, exact text), snippet,
    knowledge-graph fields, and the sections (categories, tags, related items).
``search``
    Ranked ``(id, score)`` hits, without cards: for an agent that only needs ids.
``entity``
    The full entity (text, title, category path, tags, related items, source).
``describe``
    The model's facts (``tablelm info``) and every query parameter with its default, rule
    and help (``tablelm params``).

``params`` of ``ask`` and ``search`` is an object of registry parameters (``tablelm params``);
its JSON schema is derived from the registry, and the values are validated by the registry
itself, so a bad value gets the same message as on the command line.

Transports: stdio (the default; what agent hosts launch) and Streamable HTTP (``--transport
http``), both from the official Python SDK (``pip install 'tablelm[mcp]'``).
"""

# No ``from __future__ import annotations`` here: the SDK reads the tools' annotations, which
# name types built inside create_server, so they must be evaluated where the tools are defined.
from contextlib import contextmanager
from typing import Annotated, Any

import click

from .. import params as P
from ..errors import TablelmError
from .cli import model_option

QUERY_STAGES = ("query", "render")


def _param_schema(p: P.Param) -> dict:
    """The JSON schema of one registry parameter (documentation for agents; the registry validates)."""
    c = p.constraint
    d = p.to_dict()
    if isinstance(c, P.Interval):
        schema: dict[str, Any] = {"type": "integer" if c.kind is int else "number", "minimum": c.lo, "maximum": c.hi}
    elif isinstance(c, P.Options):
        schema = {"type": "string", "enum": list(c.choices)}
    elif isinstance(c, P.Flag):
        schema = {"type": "boolean"}
    else:  # WordList: a list, or one comma-separated string
        item = {"type": "string", **({"enum": list(c.choices)} if getattr(c, "choices", None) else {})}
        schema = {"anyOf": [{"type": "array", "items": item}, {"type": "string"}]}
    return dict(schema, description=f"{p.help} Rule: {d['rule']}. Default: {d['default']!r}.")


def params_model():
    """A pydantic model whose JSON schema lists every query and render parameter.

    Fields accept any value (``Any``) and unknown names are kept (``extra='allow'``): the
    registry, not pydantic, validates them, so its messages (the rule, the closest names)
    reach the agent unchanged.
    """
    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {
        p.name: (Any, Field(default=None, json_schema_extra=_param_schema(p)))
        for p in P.REGISTRY.values() if p.stage in QUERY_STAGES}
    return create_model("Params", __config__=ConfigDict(extra="allow"), **fields)


def _overrides(params) -> dict:
    """The parameters an agent set (pydantic model, dict or None) as a plain dict."""
    if params is None:
        return {}
    if isinstance(params, dict):
        return dict(params)
    return params.model_dump(exclude_unset=True)


@contextmanager
def _tool_errors():
    """A library error becomes an MCP tool error with its message (the SDK hides the text of any
    other exception from the client, as a crash): what, the value, the rule and the fix reach the agent."""
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        yield
    except TablelmError as e:
        raise ToolError(str(e)) from None
    except KeyError as e:  # an unknown entity id
        raise ToolError(str(e.args[0] if e.args else e)) from None


def create_server(model, *, name: str = "tablelm"):
    """An ``MCPServer`` (official ``mcp`` SDK) answering from ``model``.

    Parameters
    ----------
    model : tablelm.Model
        The loaded model; it is shared by every call (answers only read it).
    name : str
        The server name shown to clients.

    Returns
    -------
    mcp.server.mcpserver.MCPServer
        Run it with ``.run("stdio")`` or ``.run("streamable-http", host=..., port=...)``, or
        connect to it in process with ``mcp.Client(server)``.
    """
    from mcp.server.mcpserver import MCPServer
    from pydantic import Field

    from ..model import __version__

    Params = params_model()
    n = model.n_docs
    server = MCPServer(
        name=name, version=__version__,
        instructions=(f"tablelm answers from a fixed corpus of {n:,} entities with ranked, cited cards; nothing is "
                      "generated. Use 'ask' for cards with evidence, 'search' for ids only, 'entity' to read one "
                      "in full, 'describe' for the corpus and the tunable parameters."))
    K = Annotated[int, Field(description="Number of results (validated by the model, as everywhere).")]
    ParamsArg = Annotated[Params | None, Field(  # type: ignore[valid-type]  # a model built at run time
        description="Registry parameters (tablelm params), e.g. {\"phrase_weight\": 0.5}; omitted ones keep "
                    "their default.")]

    Sub = Annotated[str | None, Field(description="A model split into sub-models: ask only this one (describe "
                                                  "lists them); omitted, the router picks.")]

    def pin(submodel):
        if submodel is None:
            return {}
        if not hasattr(model, "submodels"):
            from ..errors import TablelmError

            raise TablelmError("This model is not split into sub-models: leave 'submodel' out.")
        return {"submodels": [submodel]}

    @server.tool(name="ask")
    def ask(prompt: Annotated[str, Field(description="The question; !word excludes, a~b forces a multitoken.")],
            k: K = 5, params: ParamsArg = None, submodel: Sub = None) -> dict[str, Any]:
        """Answer a prompt with ranked, cited cards from the corpus: each card has its score, why it
        scored, citations (entity id, field, character span, exact text) and knowledge-graph fields."""
        with _tool_errors():
            return model.ask(prompt, k=k, **_overrides(params), **pin(submodel)).to_dict()

    @server.tool(name="search")
    def search(query: Annotated[str, Field(description="The query text.")], k: K = 10,
               params: ParamsArg = None, submodel: Sub = None) -> dict[str, Any]:
        """Ranked entity ids and scores for a query (no cards): the fast path for retrieval."""
        with _tool_errors():
            hits = model.search(query, k, **_overrides(params), **pin(submodel))
        return {"query": query, "hits": [{"id": i, "score": s} for i, s in hits]}

    @server.tool(name="entity")
    def entity(id: Annotated[str, Field(description="An entity id, as given by ask or search.")]) -> dict[str, Any]:
        """The full entity with this id: text, title, category path, tags, related items, source."""
        with _tool_errors():
            e = model.entity(id)
        return dict(e.to_dict(), text=e.text)

    @server.tool(name="describe")
    def describe() -> dict[str, Any]:
        """What the model is (corpus, sizes, build parameters, tuned profile) and every query
        parameter that ask and search accept, with its default, rule and help."""
        info = model.info()
        info.pop("tables", None)  # array shapes: noise for an agent
        return {"info": info, "params": [p.to_dict() for p in P.REGISTRY.values() if p.stage in QUERY_STAGES],
                "defaults": {k: list(v) if isinstance(v, tuple) else v for k, v in model.defaults.items()}}

    return server


@click.command("mcp")
@model_option()
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio", show_default=True,
              help="stdio (launched by an agent host) or Streamable HTTP at http://HOST:PORT/mcp.")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --transport http: interface to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535),
              help="With --transport http: port.")
def mcp_command(model_dir, transport, host, port):
    """Serve a model to MCP clients (agents): ask, search, entity and describe tools."""
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise click.ClickException("tablelm mcp needs the MCP SDK: pip install 'tablelm[mcp]'.") from None
    from ..builtin import builtin_model
    from ..model import load

    model = load(model_dir) if model_dir else builtin_model(progress=True)
    server = create_server(model)
    if transport == "stdio":  # stdout carries the protocol: say nothing there
        server.run("stdio")
    else:
        click.echo(f"tablelm mcp: {model.n_docs:,} entities from {model.path}; Streamable HTTP at "
                   f"http://{host}:{port}/mcp (Ctrl+C stops)", err=True)
        server.run("streamable-http", host=host, port=port)
