"""The HTTP API: one core call, one error envelope, limits, and the OpenAI-compatible endpoint.

Most tests talk to the ASGI app in process (``TestClient``); the OpenAI client tests
talk to a real uvicorn server on 127.0.0.1 (a free port, a background thread).
"""

from __future__ import annotations

import json
import re
import threading

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tablelm import params as P
from tablelm.answer.markdown import md_escape, render_markdown
from tablelm.interfaces.cli import main
from tablelm.interfaces.server import background_server, create_app

PROMPT = "data governance policy"



# xllm_model_dir / xllm_model: the session fixtures of conftest.py (the xLLM enterprise repository).


def strip_timings(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "timings_ms"}


@pytest.fixture(scope="module")
def app(xllm_model):
    app = create_app(xllm_model, max_body_bytes=4096, max_prompt_chars=200, max_k=50)

    @app.get("/test-crash", include_in_schema=False)
    def crash():  # a route that fails, to see the 500 envelope
        raise RuntimeError("boom")

    return app


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def server_url(xllm_model):
    with background_server(create_app(xllm_model)) as url:
        yield url


# --------------------------------------------------------------------------- one core call
def test_get_ask_is_the_cli_json_answer(client, xllm_model_dir):
    r = client.get("/ask", params={"q": PROMPT, "k": 5, "beta": 0.7})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    res = CliRunner().invoke(main, ["ask", "-m", str(xllm_model_dir), "-k", "5", "-p", "beta=0.7", "--json", PROMPT])
    assert res.exit_code == 0, res.output
    cli = json.loads(res.output)
    got = r.json()
    assert [c["id"] for c in got["cards"]] == [c["id"] for c in cli["cards"]]
    assert strip_timings(got) | {"model": None} == strip_timings(cli) | {"model": None}
    assert got["params"]["beta"] == 0.7 and got["params"]["k"] == 5
    assert len(got["cards"]) == 5 and got["cards"][0]["why"] and got["cards"][0]["snippet"]["highlights"]


def test_post_ask_equals_get_ask(client):
    get = client.get("/ask", params={"q": PROMPT, "k": 4, "ignore": "data", "sections": "tags,embeddings"}).json()
    post = client.post("/ask", json={"q": PROMPT, "k": 4, "ignore": ["data"], "sections": ["tags", "embeddings"]})
    assert post.status_code == 200
    assert strip_timings(post.json()) == strip_timings(get)
    assert get["plan"]["ignored"] == ["data"]
    assert set(get["sections"]) <= {"tags", "embeddings"}


def test_repeated_query_arguments_form_a_word_list(client):
    one = client.get("/ask?q=data+governance+policy&ignore=data,policy").json()
    two = client.get("/ask?q=data+governance+policy&ignore=data&ignore=policy").json()
    assert sorted(one["plan"]["ignored"]) == sorted(two["plan"]["ignored"]) == ["data", "policy"]


def test_a_parameter_changes_the_answer(client):
    base = client.get("/ask", params={"q": PROMPT}).json()
    ref = client.get("/ask", params={"q": PROMPT, "ranker": "reference"}).json()
    assert [c["score"] for c in base["cards"]] != [c["score"] for c in ref["cards"]]


def test_entity_full_content_and_404(client, xllm_model):
    card = client.get("/ask", params={"q": PROMPT, "k": 1}).json()["cards"][0]
    r = client.get(f"/entities/{card['id']}")
    assert r.status_code == 200
    assert r.json() == xllm_model.entity(card["id"]).to_dict()
    r = client.get("/entities/no-such-id")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "entity_not_found"
    assert "no-such-id" in r.json()["error"]["message"]


def test_params_info_healthz_samples(client, xllm_model):
    rows = {p["name"]: p for p in client.get("/params").json()["params"]}
    assert set(rows) == set(P.REGISTRY)
    for name, p in P.REGISTRY.items():
        assert rows[name]["settable"] == (p.stage in ("query", "render"))
        assert rows[name]["rule"] == p.constraint.describe()
    assert rows["beta"]["min"] == 0.0 and rows["beta"]["max"] == 2.0
    info = client.get("/info").json()
    assert info["stats"]["entities"] == xllm_model.n_docs
    assert info["limits"]["max_prompt_chars"] == 200
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["entities"] == xllm_model.n_docs
    samples = client.get("/samples").json()["prompts"]
    assert samples and all(client.get("/ask", params={"q": s}).json()["cards"] for s in samples[:3])


def test_openapi_documents_every_settable_parameter(client):
    schema = client.get("/openapi.json").json()
    for path in ("/ask", "/entities/{entity_id}", "/params", "/info", "/healthz", "/v1/chat/completions",
                 "/v1/models"):
        assert path in schema["paths"], path
    documented = {p["name"] for p in schema["paths"]["/ask"]["get"]["parameters"]}
    settable = {n for n, p in P.REGISTRY.items() if p.stage in ("query", "render")}
    assert settable | {"q", "k"} <= documented
    docs = client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text


# --------------------------------------------------------------------------- errors
ERROR_CASES = [
    # (method, url, body or raw bytes, status, code, words the message must contain)
    ("GET", "/ask?q=data&bta=1", None, 422, "invalid_parameter", ["'bta'", "beta"]),
    ("GET", "/ask?q=data&beta=9", None, 422, "invalid_parameter", ["'beta'", "[0.0, 2.0]", "'9'"]),
    ("GET", "/ask?q=data&ranker=pagerank", None, 422, "invalid_parameter", ["'ranker'", "'reference'", "pagerank"]),
    ("GET", "/ask?q=data&max_ngram=2", None, 422, "invalid_parameter", ["'max_ngram'"]),  # build stage
    ("GET", "/ask?q=data&k=0", None, 422, "invalid_parameter", ["'k'", "[1, 50]", "'0'"]),
    ("GET", "/ask?q=data&k=many", None, 422, "invalid_parameter", ["'k'"]),
    ("GET", "/ask", None, 422, "missing_prompt", ["'q'"]),
    ("GET", "/ask?q=%20%20", None, 422, "missing_prompt", ["'q'"]),
    ("GET", "/ask?q=" + "x" * 201, None, 422, "prompt_too_long", ["201", "200"]),
    ("POST", "/ask", {"q": "data", "beta": "high"}, 422, "invalid_parameter", ["'beta'", "high"]),
    ("POST", "/ask", {"k": 3}, 422, "invalid_request", ["q"]),
    ("POST", "/ask", {"q": ["a"]}, 422, "invalid_request", ["q"]),
    ("POST", "/ask", b"{not json", 400, "invalid_json", ["JSON"]),
    ("POST", "/ask", {"q": "x " * 3000}, 413, "request_too_large", ["4,096"]),
    ("DELETE", "/ask", None, 405, "method_not_allowed", ["DELETE"]),
    ("GET", "/no/such/route", None, 404, "not_found", ["/no/such/route"]),
    ("GET", "/entities/%3Cscript%3E", None, 404, "entity_not_found", ["<script>"]),
    ("POST", "/v1/chat/completions", {"messages": []}, 422, "invalid_request", ["messages"]),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "system", "content": "hi"}]}, 422, "missing_prompt",
     ["user"]),
    ("GET", "/test-crash", None, 500, "internal_error", ["RuntimeError"]),
]


@pytest.mark.parametrize("method,url,body,status,code,words", ERROR_CASES,
                         ids=[f"{c[3]}-{c[4]}-{i}" for i, c in enumerate(ERROR_CASES)])
def test_every_error_has_one_envelope(client, method, url, body, status, code, words):
    if isinstance(body, bytes):
        r = client.request(method, url, content=body, headers={"content-type": "application/json"})
    else:
        r = client.request(method, url, json=body)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    data = r.json()
    assert set(data) == {"error"}
    assert set(data["error"]) == {"code", "message", "details"}
    assert data["error"]["code"] == code
    assert isinstance(data["error"]["message"], str) and isinstance(data["error"]["details"], dict)
    for w in words:
        assert w in data["error"]["message"], (w, data["error"]["message"])


def test_parameter_error_details_name_parameter_rule_and_value(client):
    d = client.get("/ask?q=data&beta=9").json()["error"]["details"]
    assert d == {"parameter": "beta", "value": "9", "rule": "a float in [0.0, 2.0]"}


def test_body_limit_holds_without_content_length(client):
    def chunks():
        for _ in range(10):
            yield b" " * 1000
    r = client.post("/ask", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


# --------------------------------------------------------------------------- web page and its safety headers
def test_index_page_and_assets_are_served(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert 'id="prompt"' in r.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200


def test_page_script_never_uses_innerhtml():
    from tablelm.interfaces.server import WEB_DIR

    js = (WEB_DIR / "app.js").read_text("utf-8")
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", js)


# --------------------------------------------------------------------------- Markdown rendering
def test_markdown_has_numbered_citations_and_only_corpus_text(xllm_model):
    answer = xllm_model.ask(PROMPT, k=4)
    md = render_markdown(answer)
    sources = re.findall(r"^\[(\d)\] `([^`]+)` — (.+?)(?: — (.+))?$", md, re.M)
    assert [int(n) for n, *_ in sources] == [1, 2, 3, 4]
    assert [i for _, i, *_ in sources] == [c.id for c in answer.cards]
    items = re.findall(r"^(\d)\. \*\*(.+?)\*\* \(.*?\) — (.+) \[(\d)\]$", md, re.M)
    assert len(items) == 4
    for (n, title, snippet, ref), card in zip(items, answer.cards):
        assert n == ref
        entity = xllm_model.entity(card.id)
        assert title.replace("\\", "") == md_escape(entity.title).replace("\\", "")
        # every piece of the snippet is a piece of the entity's text
        plain = snippet.replace("**", "").replace("\\", "").strip("…")
        assert " ".join(plain.split()) in " ".join(entity.text.split())


def test_markdown_escapes_markup():
    assert md_escape("<script>alert(1)</script> *x* [a](b)") == \
        r"\<script\>alert(1)\</script\> \*x\* \[a\](b)"


# --------------------------------------------------------------------------- a real server, real clients
def test_openai_client_chat_completion(server_url, xllm_model):
    openai = pytest.importorskip("openai", reason="pip install openai (test extra)")
    client = openai.OpenAI(base_url=server_url + "/v1", api_key="not-needed", max_retries=0)
    models = client.models.list()
    assert [m.id for m in models.data] == ["tablelm"]
    reply = client.chat.completions.create(
        model="tablelm", messages=[{"role": "system", "content": "be brief"},
                                   {"role": "user", "content": "what about ai platforms?"},
                                   {"role": "assistant", "content": "..."},
                                   {"role": "user", "content": PROMPT}],
        extra_body={"tablelm": {"k": 3}})
    text = reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert text == render_markdown(xllm_model.ask(PROMPT, k=3))
    assert "[1]" in text and "[3]" in text and "[4]" not in text


def test_openai_client_streaming(server_url, xllm_model):
    openai = pytest.importorskip("openai", reason="pip install openai (test extra)")
    client = openai.OpenAI(base_url=server_url + "/v1", api_key="not-needed", max_retries=0)
    stream = client.chat.completions.create(model="tablelm", stream=True,
                                            messages=[{"role": "user", "content": PROMPT}])
    chunks = list(stream)
    assert len(chunks) > 3
    assert chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == render_markdown(xllm_model.ask(PROMPT, k=5))


def test_sse_stream_ends_with_done(server_url):
    import httpx

    with httpx.stream("POST", server_url + "/v1/chat/completions",
                      json={"model": "tablelm", "stream": True, "messages": [{"role": "user", "content": PROMPT}]},
                      timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["choices"][0]["delta"]["role"] == "assistant"


def test_openai_client_sees_the_error_envelope(server_url):
    openai = pytest.importorskip("openai", reason="pip install openai (test extra)")
    client = openai.OpenAI(base_url=server_url + "/v1", api_key="not-needed", max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.chat.completions.create(model="tablelm", messages=[{"role": "user", "content": PROMPT}],
                                       extra_body={"tablelm": {"beta": 42}})
    assert "'beta'" in err.value.message


def test_concurrent_requests_get_identical_answers(server_url):
    import httpx

    prompts = [PROMPT, "gen ai platform", "sales data product", "supply chain logistics"]
    expected = {p: [c["id"] for c in httpx.get(server_url + "/ask", params={"q": p}).json()["cards"]]
                for p in prompts}
    results, errors = [], []

    def worker(i):
        try:
            with httpx.Client(base_url=server_url, timeout=30) as c:
                for j in range(5):
                    p = prompts[(i + j) % len(prompts)]
                    r = c.get("/ask", params={"q": p})
                    results.append((p, r.status_code, [x["id"] for x in r.json()["cards"]]))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 60
    assert all(status == 200 and ids == expected[p] for p, status, ids in results)


def test_page_says_what_the_letters_matched(builtin_model):
    """The web page's plan line (app.js planNode, run by Node) names the letter multitokens matched
    (or the phrases no entity says, or that the model indexes no letters) and the letters left out,
    as the text answer does."""
    import json
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    from tablelm.interfaces.server import WEB_DIR

    js = (WEB_DIR / "app.js").read_text("utf-8")
    body = re.search(r"^function planNode\(answer\) \{.*?^\}$", js, re.M | re.S).group(0)
    answer = builtin_model.ask("vitamin A and X", k=3).to_dict()
    found = dict(answer, plan=dict(answer["plan"], letter_multitokens=["vitamin A"]))
    old = dict(answer, plan=dict(answer["plan"], letters_indexed=False))
    stub = """
const el = (tag, attrs, ...kids) => ({kids, append(...k) { this.kids.push(...k); }});
const text = (n) => typeof n === "string" ? n : n.kids.map(text).join("");
""" + body + "".join(f"\nconsole.log(text(planNode({json.dumps(a)})));" for a in (answer, found, old))
    out = subprocess.run([node, "-e", stub], capture_output=True, text=True, timeout=60, check=True).stdout
    none, hit, before = out.splitlines()
    assert "no entity says: \u201cvitamin A\u201d" in none and "single letters not matched: X" in none, out
    assert "a single letter counts with the word next to it: \u201cvitamin A\u201d" in hit and "no entity" not in hit
    assert "single letters not indexed in this model (tablelm upgrade): \u201cvitamin A\u201d" in before, out
