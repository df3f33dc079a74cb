"""Access per sub-model (tablelm/access.py, ``tablelm serve --keys``): a restricted key reads only
its sub-models, through every route: answers, cards, snippets, sections, suggestions, counts,
sample prompts, entities, the OpenAI-compatible endpoint."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

import tablelm
from tablelm.access import KeyFileError, read_keys
from tablelm.interfaces.server import create_app, serve_command

from conftest import XLLM, cached_model

SALES_KEY = "k-sales-0123456789abcdef"
ADMIN_KEY = "k-admin-0123456789abcdef"
ALLOWED = ("sales", "finance")
PROMPTS = ["sales forecast dashboard", "data governance policy", "marketing campaign budget", "supplier contract",
           "machine learning platform", "customer churn", "logistics shipment tracking", "quarterly revenue"]


@pytest.fixture(scope="session")
def split_dir(tmp_path_factory):
    if not XLLM.exists():
        pytest.skip(f"test data not found at {XLLM}")
    out = tmp_path_factory.mktemp("xllm-split-access") / "model"
    return cached_model(out, ["split", XLLM.read_bytes(), "category", 8],
                        lambda path: tablelm.build([XLLM], path, split_by="category", max_submodels=8))


@pytest.fixture(scope="session")
def split(split_dir):
    return tablelm.load(split_dir)


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    path.write_text(json.dumps({"keys": [{"key": SALES_KEY, "name": "sales team", "submodels": list(ALLOWED)},
                                         {"key": ADMIN_KEY, "name": "admin", "submodels": "*"}]}))
    return path


@pytest.fixture(scope="session")
def client(split, keys_file):
    return TestClient(create_app(split, keys=read_keys(keys_file, split)), raise_server_exceptions=False)


@pytest.fixture(scope="session")
def forbidden(split):
    """What the sales key must never see: the ids, labels and multitokens of the other sub-models only."""
    allowed = split.scoped(list(ALLOWED))
    others = split.scoped([n for n in split.names if n not in ALLOWED])
    ids = set(others.ids)
    own_mt = allowed.tables.mt_total > 0
    only_others = (others.tables.mt_total > 0) & ~own_mt
    words = {others.tables.display(int(mt)) for mt in only_others.nonzero()[0]}
    labels = set()
    for n in split.names:
        if n not in ALLOWED:
            sub = split.submodel(n)
            for table in ("category", "tags", "titles", "related"):
                labels |= set(sub.tables.context(table).names)
    for n in ALLOWED:
        sub = split.submodel(n)
        for table in ("category", "tags", "titles", "related"):
            labels -= set(sub.tables.context(table).names)
    return {"ids": ids, "words": words, "labels": labels, "allowed": allowed}


def _sales(headers=None):
    return {"Authorization": f"Bearer {SALES_KEY}", **(headers or {})}


def _check_answer(answer: dict, forbidden: dict) -> None:
    """No card, citation, snippet, section row or suggestion of a forbidden sub-model."""
    allowed_ids = set(forbidden["allowed"].ids)
    for c in answer["cards"]:
        assert c["id"] in allowed_ids and c["submodel"] in ALLOWED
        assert all(cit["entity"] in allowed_ids for cit in c["citations"])
    for p in (answer.get("summary") or {}).get("passages", []):
        assert p["entity"] in allowed_ids
    for name, rows in answer["sections"].items():
        for row in rows:
            if name == "embeddings":
                assert row["multitoken"] not in forbidden["words"]
            else:
                assert row["label"] not in forbidden["labels"]
    plan = answer["plan"]
    for w in plan["tokens_kept"] + plan["multitokens_matched"]:
        assert w not in forbidden["words"]
    assert set(answer["routing"]["asked"]) <= set(ALLOWED)
    assert {r["submodel"] for r in answer["routing"]["candidates"]} <= set(ALLOWED)


# --------------------------------------------------------------------------- the key file
def test_key_file_errors_say_what_where_and_how(split, tmp_path):
    def bad(content, match, model=split):
        path = tmp_path / "k.json"
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        with pytest.raises(KeyFileError, match=match):
            read_keys(path, model)

    bad("{not json", r"k.json: not valid JSON .* The format is")
    bad({"key": "x"}, r'one entry, "keys": a non-empty list')
    bad({"keys": []}, "a non-empty list")
    bad({"keys": ["k"]}, r"key #1 is a str, expected an object")
    bad({"keys": [{"key": SALES_KEY, "submodels": "*", "role": "x"}]}, r"key #1 has unknown field\(s\) 'role'")
    bad({"keys": [{"key": "short", "submodels": "*"}]}, r"key #1 \(key #1\): key must be a string of at least 16")
    bad({"keys": [{"key": SALES_KEY, "name": "a", "submodels": "*"}, {"key": SALES_KEY, "name": "b",
                                                                    "submodels": "*"}]},
        r"key #2 \(b\) repeats the key of 'a'")
    bad({"keys": [{"key": SALES_KEY, "submodels": []}]}, "submodels must be a non-empty list")
    bad({"keys": [{"key": SALES_KEY, "name": "t", "submodels": ["sales", "hr"]}]},
        r"key #1 \(t\): no sub-model 'hr' in this model; it has: finance, logistics")
    with pytest.raises(KeyFileError, match="cannot read the key file"):
        read_keys(tmp_path / "missing.json", split)


def test_a_plain_model_takes_only_all_access_keys(xllm_model, tmp_path):
    path = tmp_path / "k.json"
    path.write_text(json.dumps({"keys": [{"key": SALES_KEY, "submodels": ["sales"]}]}))
    with pytest.raises(KeyFileError, match=r'is not split into sub-models: use "submodels": "\*"'):
        read_keys(path, xllm_model)
    path.write_text(json.dumps({"keys": [{"key": SALES_KEY, "submodels": "*"}]}))
    c = TestClient(create_app(xllm_model, keys=read_keys(path, xllm_model)))
    assert c.get("/ask", params={"q": "sales"}).status_code == 401
    assert c.get("/ask", params={"q": "sales"}, headers=_sales()).status_code == 200


# --------------------------------------------------------------------------- no key, wrong key
@pytest.mark.parametrize("method,path", [("GET", "/ask?q=sales"), ("POST", "/ask"), ("GET", "/entities/1"),
                                         ("GET", "/info"), ("GET", "/params"), ("GET", "/samples"),
                                         ("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                                         ("GET", "/no/such/route")])
def test_every_route_needs_a_valid_key(client, method, path):
    body = {"q": "sales"} if path == "/ask" else {"messages": [{"role": "user", "content": "sales"}]}
    for headers in ({}, {"Authorization": "Bearer k-wrong-0123456789abcdef"}, {"X-API-Key": SALES_KEY[:-1]}):
        r = client.request(method, path, headers=headers, json=body if method == "POST" else None)
        assert r.status_code == 401, (path, headers, r.text)
        assert r.json()["error"]["code"] == "unauthorized" and "Bearer KEY" in r.json()["error"]["message"]
        assert "cards" not in r.text and "stats" not in r.text


def test_the_page_docs_and_liveness_answer_without_a_key_but_say_nothing(client):
    assert client.get("/").status_code == 200
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and "entities" not in h and "fingerprint" not in h
    assert client.get("/healthz", headers=_sales()).json()["entities"] == 150 + 235


# --------------------------------------------------------------------------- a restricted key
def test_answers_hold_only_the_keys_submodels(client, forbidden):
    for prompt in PROMPTS:
        for extra in ({}, {"route": "all"}, {"s": "sales"}):
            r = client.get("/ask", params={"q": prompt, "k": 30, **extra}, headers=_sales())
            assert r.status_code == 200, r.text
            _check_answer(r.json(), forbidden)
        r = client.post("/ask", json={"q": prompt, "k": 30, "route": "all"}, headers={"X-API-Key": SALES_KEY})
        assert r.status_code == 200
        _check_answer(r.json(), forbidden)


def test_a_word_only_other_submodels_have_is_unknown_to_the_key(client, split, forbidden):
    word = sorted(w for w in forbidden["words"] if " " not in w and w.isalpha() and len(w) > 5)[0]
    mine = client.get("/ask", params={"q": word}, headers=_sales()).json()
    assert mine["cards"] == [] and word not in json.dumps(mine["sections"])
    assert mine["plan"]["tokens_kept"] == [] and mine["plan"]["unknown"] == [word]
    admin = client.get("/ask", params={"q": word}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()
    assert admin["cards"] and admin["plan"]["tokens_kept"]  # the word is there, for a key that may see it


def test_scores_of_a_key_use_only_its_statistics(client, split):
    """Same prompt, same sub-model: a restricted key's scores come from its scope's N and df, so
    they differ from the admin's (whose scope is the whole collection) and equal the scope's own."""
    prompt = "sales forecast dashboard"
    mine = client.get("/ask", params={"q": prompt, "s": "sales"}, headers=_sales()).json()["cards"]
    admin = client.get("/ask", params={"q": prompt, "s": "sales"},
                       headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["cards"]
    expected = split.scoped(list(ALLOWED)).ask(prompt, submodels=["sales"]).cards
    assert [(c["id"], c["score"]) for c in mine] == [(c.id, c.score) for c in expected]
    assert [c["score"] for c in mine] != [c["score"] for c in admin]


def test_entities_of_other_submodels_are_not_found(client, split, forbidden):
    other = sorted(forbidden["ids"])[:20]
    missing = client.get("/entities/no-such-id-at-all", headers=_sales())
    for eid in other:
        r = client.get(f"/entities/{eid}", headers=_sales())
        assert r.status_code == 404 and r.json()["error"]["code"] == "entity_not_found"
        assert r.json()["error"]["message"] == f"No entity with id {eid!r} in this model."
        assert r.json()["error"].keys() == missing.json()["error"].keys()  # the same answer as for no entity
        ok = client.get(f"/entities/{eid}", headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert ok.status_code == 200 and ok.json()["id"] == eid
    mine = sorted(forbidden["allowed"].ids)[:5]
    assert all(client.get(f"/entities/{e}", headers=_sales()).status_code == 200 for e in mine)


def test_pinning_a_forbidden_submodel_names_only_the_keys_own(client, split):
    for params in ({"s": "marketing"}, {"s": "sales,marketing"}, {"submodels": "technology"}):
        r = client.get("/ask", params={"q": "sales", **params}, headers=_sales())
        assert r.status_code == 400
        msg = r.json()["error"]["message"]
        assert "it has: finance, sales." in msg
        assert not any(n in msg.split("it has:")[1] for n in split.names if n not in ALLOWED)


def test_info_samples_params_and_models_describe_only_the_keys_part(client, split, forbidden):
    info = client.get("/info", headers=_sales()).json()
    assert [s["name"] for s in info["submodels"]] == sorted(ALLOWED)
    assert info["stats"]["entities"] == 385 and info["stats"]["submodels"] == 2
    assert info["stats"]["multitokens"] == int((forbidden["allowed"].tables.mt_total > 0).sum())
    assert not any(n in json.dumps(info) for n in ("marketing", "technology", "logistics"))
    samples = client.get("/samples", params={"n": 50}, headers=_sales()).json()["prompts"]
    assert samples and not set(samples) & forbidden["words"]
    assert client.get("/params", headers=_sales()).status_code == 200
    ids = [m["id"] for m in client.get("/v1/models", headers=_sales()).json()["data"]]
    assert ids == ["tablelm", "tablelm/finance", "tablelm/sales"]
    admin = [m["id"] for m in client.get("/v1/models", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["data"]]
    assert len(admin) == 1 + len(split.names)


def test_the_openai_endpoint_answers_from_the_keys_submodels(client, forbidden):
    for model in ("tablelm", "tablelm/sales"):
        for prompt in PROMPTS[:4]:
            body = {"model": model, "messages": [{"role": "user", "content": prompt}], "tablelm": {"k": 10}}
            r = client.post("/v1/chat/completions", json=body, headers=_sales())
            assert r.status_code == 200, r.text
            text = r.json()["choices"][0]["message"]["content"]
            cited = [line.split("`")[1] for line in text.splitlines() if line.startswith("[") and "`" in line]
            assert all(c in set(forbidden["allowed"].ids) for c in cited)
            assert not any(f"`{i}`" in text for i in forbidden["ids"])
            if model == "tablelm/sales":
                assert "Sub-models asked: sales" in text
    body = {"model": "tablelm/marketing", "messages": [{"role": "user", "content": "sales"}]}
    r = client.post("/v1/chat/completions", json=body, headers=_sales())
    assert r.status_code == 400 and "marketing" not in r.json()["error"]["message"].split("it has:")[1]
    body = {"model": "tablelm", "stream": True, "messages": [{"role": "user", "content": "sales"}]}
    streamed = client.post("/v1/chat/completions", headers=_sales(), json=body)
    assert streamed.status_code == 200 and not any(f"`{i}`" in streamed.text for i in forbidden["ids"])


def test_without_keys_a_split_model_is_served_as_today(split):
    c = TestClient(create_app(split))
    a = c.get("/ask", params={"q": "marketing campaign", "route": "all"}).json()
    assert a["cards"] and a["routing"]["submodels_in_scope"] == len(split.names)
    assert c.get("/healthz").json()["entities"] == split.n_docs
    plain = c.get("/ask", params={"q": "marketing", "s": "nope"})
    assert plain.status_code == 400 and "No sub-model 'nope'" in plain.json()["error"]["message"]
    prompt = "marketing campaign budget"
    for method in ("share", "pairs"):
        got = c.get("/ask", params={"q": prompt, "route_method": method}).json()["routing"]["asked"]
        assert got == split.ask(prompt, route_method=method).routing["asked"]
    bad = c.get("/ask", params={"q": prompt, "route_method": "dense"})
    assert bad.status_code == 400 and "route_method must be 'pairs' or 'share'" in bad.json()["error"]["message"]


def test_sub_model_arguments_on_a_plain_model_are_a_clear_error(xllm_model):
    c = TestClient(create_app(xllm_model))
    r = c.get("/ask", params={"q": "sales", "s": "sales"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_split"


def test_serve_refuses_a_public_interface_without_keys(split_dir, tmp_path):
    r = CliRunner().invoke(serve_command, ["-m", str(split_dir), "--host", "0.0.0.0", "--port", "0"])
    assert r.exit_code == 2 and "pass --keys FILE" in r.output and "--allow-open" in r.output
    bad = tmp_path / "k.json"
    bad.write_text(json.dumps({"keys": [{"key": SALES_KEY, "submodels": ["nope"]}]}))
    r = CliRunner().invoke(serve_command, ["-m", str(split_dir), "--keys", str(bad), "--port", "0"])
    assert r.exit_code != 0 and "no sub-model 'nope'" in str(r.exception or r.output)


@pytest.mark.ui
def test_the_web_page_asks_for_a_key_then_pins_a_submodel(split, keys_file):
    """In a real Chromium: the page asks for the key, then offers the key's sub-models only, and a
    pinned sub-model's cards say where they come from, with the routing line."""
    from tablelm.interfaces.server import background_server

    from test_web_ui import CHROMIUM_ARGS, _browser_or_fail, _wait_answer

    sync_playwright, chromium = _browser_or_fail()
    with background_server(create_app(split, keys=read_keys(keys_file, split))) as url:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                page.goto(url + "/")
                page.wait_for_selector("#key-form:not([hidden])", timeout=15000)
                page.fill("#api-key", SALES_KEY)
                page.click("#key-button")
                page.wait_for_selector("body[data-ready='1']", timeout=15000)
                options = page.locator("#submodel option").all_inner_texts()
                assert options[:2] == ["router's choice", "every sub-model"]
                assert [o.split(" ")[0] for o in options[2:]] == sorted(ALLOWED)
                page.select_option("#submodel", "sales")
                page.fill("#prompt", "sales forecast")
                page.click("#ask-button")
                _wait_answer(page, 0)
                subs = page.locator("#cards .card .submodel").all_inner_texts()
                assert subs and {s.strip(" ·") for s in subs} == {"sales"}
                assert "sub-models asked: sales" in page.locator("#plan").inner_text()
                assert "s=sales" in page.url
            finally:
                browser.close()
