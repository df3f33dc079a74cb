"""``tablelm mcp``: the model as MCP tools, driven by the official SDK's own client.

In process (``mcp.Client(server)``) for the tools' contract, then the real transports: the
``tablelm mcp`` command over stdio (as an agent host launches it) and over Streamable HTTP
(loopback only).
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import pytest

import tablelm

from conftest import ROOT, TINY_DOCS, cli_env

mcp = pytest.importorskip("mcp", reason="the MCP tests need the SDK: pip install 'tablelm[mcp]'")
from mcp import Client, StdioServerParameters  # noqa: E402

from tablelm.interfaces.mcp import create_server  # noqa: E402


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


async def _exercise(client, model) -> None:
    """The contract every transport must keep."""
    tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {"ask", "search", "entity", "describe"}
    # the params schema is the registry's: every query/render parameter, with its rule
    schema = tools["ask"].input_schema
    props = schema["$defs"]["Params"]["properties"]
    assert set(props) == {p.name for p in tablelm.params.REGISTRY.values() if p.stage in ("query", "render")}
    assert props["phrase_weight"]["minimum"] == 0.0 and props["ranker"]["enum"] == ["tablelm", "reference"]
    assert schema["required"] == ["prompt"]

    r = await client.call_tool("ask", {"prompt": "read a file line by line", "k": 2,
                                       "params": {"phrase_weight": 0.5}})
    assert not r.is_error, r.content
    got = r.structured_content
    want = model.ask("read a file line by line", k=2, phrase_weight=0.5)
    assert [c["id"] for c in got["cards"]] == [c.id for c in want.cards] and got["cards"][0]["id"] == "files/read"
    card = got["cards"][0]
    assert card["score"] == want.cards[0].score and card["why"] and card["citations"]
    c = card["citations"][0]
    text = model.entity(c["entity"]).text if c["field"] == "text" else None
    assert text is None or text[c["start"]:c["end"]] == c["text"]
    assert got["params"]["phrase_weight"] == 0.5
    assert json.loads(r.content[0].text)["cards"][0]["id"] == "files/read"  # the same answer as text

    r = await client.call_tool("search", {"query": "json", "k": 3})
    assert not r.is_error
    assert [(h["id"], h["score"]) for h in r.structured_content["hits"]] == model.search("json", 3)

    r = await client.call_tool("entity", {"id": "dates/now"})
    assert r.structured_content["title"] == "Current date" and "datetime.now" in r.structured_content["text"]

    r = await client.call_tool("describe", {})
    d = r.structured_content
    assert d["info"]["stats"]["entities"] == len(TINY_DOCS) and d["defaults"]["k1"] == 1.5
    assert {p["name"] for p in d["params"]} == set(props)

    # the registry's own messages reach the agent as tool errors
    for args, message in [({"prompt": "json", "params": {"phrase_weigh": 1}}, "Did you mean phrase_weight"),
                          ({"prompt": "json", "params": {"phrase_weight": 9}},
                           "The 'phrase_weight' parameter must be a float in [0.0, 5.0]. Got 9."),
                          ({"prompt": "json", "k": 0}, "'k' parameter must be")]:
        r = await client.call_tool("ask", args)
        assert r.is_error and message in r.content[0].text, r.content
    r = await client.call_tool("entity", {"id": "nope"})
    assert r.is_error and "no entity with id 'nope'" in r.content[0].text


def test_tools_in_process(tiny_model):
    async def main():
        async with Client(create_server(tiny_model)) as client:
            await _exercise(client, tiny_model)

    _run(main())


@pytest.mark.slow
def test_stdio_command(tiny_model, tablelm_cache):
    params = StdioServerParameters(command=sys.executable, args=["-m", "tablelm", "mcp", "-m", str(tiny_model.path)],
                                   env=cli_env(tablelm_cache), cwd=str(ROOT))

    async def main():
        async with Client(params) as client:
            await _exercise(client, tiny_model)

    _run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_streamable_http_command(tiny_model, tablelm_cache):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tablelm", "mcp", "-m", str(tiny_model.path), "--transport", "http",
                             "--port", str(port)], env=cli_env(tablelm_cache), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"tablelm mcp --transport http did not start: {proc.stderr.read()}")
                time.sleep(0.1)

        async def main():
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                await _exercise(client, tiny_model)

        _run(main())
    finally:
        proc.terminate()
        proc.wait(timeout=10)
