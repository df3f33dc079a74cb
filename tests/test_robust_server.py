"""Robustness of the HTTP server and the terminal output against hostile input.

Every bad request gets the one JSON error envelope with a 4xx (never a 500, never
invalid JSON); a DNS-rebinding Host is refused; ids with newlines are fetchable;
/redoc renders from the package; corpus text cannot send terminal escapes.
A hypothesis suite throws random JSON bodies and query strings at the API.
"""

from __future__ import annotations

import json
import socket
import subprocess

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tablelm
from tablelm.interfaces.server import REDOC_ASSETS, SafeJSONResponse, allowed_hosts_for, background_server, create_app

from conftest import cli_env, tablelm_cmd, write

EVIL_TITLE = "Wing \x1b]0;pwned\x07 title \x1b]52;c;ZXZpbA==\x07\x1bc"


@pytest.fixture(scope="module")
def evil_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("evil")
    rows = [{"_id": "a\nb", "text": "wing flow over the boundary layer", "title": "newline id"},
            {"_id": "esc", "text": "wing lift \x1b[2J cleared \x1b]52;c;ZXZpbA==\x07", "title": EVIL_TITLE},
            {"_id": "3", "text": "boundary layer transition", "metadata": {"x": 1.5}}]
    src = write(d / "c.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    tablelm.build([src], d / "m")
    return d / "m"


@pytest.fixture(scope="module")
def evil_model(evil_dir):
    return tablelm.load(evil_dir)


@pytest.fixture(scope="module")
def client(evil_model):
    return TestClient(create_app(evil_model, max_k=50), raise_server_exceptions=False)


def _envelope(r, status: int | None = None) -> dict:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    body = json.loads(r.content.decode("utf-8"), parse_constant=lambda c: pytest.fail(f"invalid JSON {c}"))
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def _post(client, path, raw: str):
    return client.post(path, content=raw.encode("utf-8"), headers={"content-type": "application/json"})


# --------------------------------------------------------------------------- 4xx, not 500


def test_a_lone_surrogate_in_the_prompt_is_a_422(client):
    err = _envelope(_post(client, "/ask", '{"q": "wing \\ud800"}'), 422)
    assert err["code"] == "invalid_text"
    _envelope(client.get("/ask", params={"q": "wing", "ignore": "x"}).request and
              _post(client, "/ask", '{"q": "wing", "ignore": ["\\udfff"]}'), 422)
    _envelope(_post(client, "/v1/chat/completions", '{"messages": [{"role": "user", "content": "w \\ud800"}]}'), 422)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_a_422_in_valid_json(client, literal):
    err = _envelope(_post(client, "/ask", f'{{"q": "wing", "beta": {literal}}}'), 422)
    assert err["code"] == "invalid_parameter" and "beta" in err["message"]
    _envelope(client.get("/ask", params={"q": "wing", "beta": literal.lower()}), 422)


@pytest.mark.parametrize("body", ['{"q": "wing", "k": true}', '{"q": "wing", "k": "5"}', '{"q": "wing", "k": 2.0}',
                                  '{"q": "wing", "k": null}'])
def test_k_in_json_must_be_an_integer(client, body):
    err = _envelope(_post(client, "/ask", body), 422)
    assert "'k'" in err["message"]


def test_k_as_a_url_argument_is_parsed(client):
    assert client.get("/ask", params={"q": "wing", "k": "2"}).status_code == 200
    _envelope(client.get("/ask", params={"q": "wing", "k": "true"}), 422)


@pytest.mark.parametrize("stream", ['"yes"', "1", '"true"', "null"])
def test_stream_must_be_a_boolean(client, stream):
    _envelope(_post(client, "/v1/chat/completions",
                    f'{{"messages": [{{"role": "user", "content": "wing"}}], "stream": {stream}}}'), 422)
    _envelope(_post(client, "/v1/chat/completions",
                    '{"messages": [{"role": "user", "content": "wing"}], "tablelm": {"k": true}}'), 422)


def test_responses_with_nan_are_strict_json():
    r = SafeJSONResponse({"a": float("nan"), "b": [float("inf"), "x\ud800"], "c": 1})
    assert json.loads(r.body) == {"a": None, "b": [None, "x\ufffd"], "c": 1}


# --------------------------------------------------------------------------- ids, docs


def test_an_id_with_a_newline_can_be_fetched(client):
    r = client.get("/entities/a%0Ab")
    assert r.status_code == 200 and r.json()["id"] == "a\nb"
    _envelope(client.get("/entities/a%0Ac"), 404)


@pytest.mark.skipif(REDOC_ASSETS is None, reason="fastapi-standalone-docs is not installed")
def test_redoc_is_served_from_the_package(client):
    page = client.get("/redoc")
    assert page.status_code == 200
    assert "/redoc-assets/redoc.standalone.js" in page.text
    assert "cdn" not in page.text.lower() and "fonts.googleapis" not in page.text
    js = client.get("/redoc-assets/redoc.standalone.js")
    assert js.status_code == 200 and len(js.content) > 100_000


# --------------------------------------------------------------------------- a real server: HTTP and Host


@pytest.fixture(scope="module")
def live(evil_model):
    app = create_app(evil_model, allowed_hosts=allowed_hosts_for("127.0.0.1"))
    with background_server(app) as url:
        yield url


def _raw(url: str, data: bytes) -> tuple[int, bytes, bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), head, body


@pytest.mark.parametrize("request_bytes", [b"GARBAGE\r\n\r\n",
                                           b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n",
                                           b"GET /\x00 HTTP/1.1\r\nHost: localhost\r\n\r\n"])
def test_malformed_http_gets_the_envelope(live, request_bytes):
    status, head, body = _raw(live, request_bytes)
    assert status == 400 and b"application/json" in head.lower()
    assert json.loads(body)["error"]["code"] == "malformed_request"


def test_only_the_bound_host_names_are_answered(live):
    port = live.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost", f"[::1]:{port}"):
        status, _, body = _raw(live, f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        assert status == 200, (host, body)
    for host in (f"evil.example:{port}", "attacker.test", "localhost.evil.example"):
        status, _, body = _raw(live, f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        assert status == 400 and json.loads(body)["error"]["code"] == "invalid_host", (host, body)


def test_allowed_hosts_for():
    assert allowed_hosts_for("127.0.0.1") == ["127.0.0.1", "::1", "localhost"]
    assert "*" in allowed_hosts_for("0.0.0.0")
    assert allowed_hosts_for("192.168.1.5", ["tablelm.lan"]) == ["192.168.1.5", "tablelm.lan"]


# --------------------------------------------------------------------------- terminal


def test_text_output_neutralizes_terminal_escapes(evil_dir, tmp_path):
    env = cli_env(tmp_path / "cache")
    for args in (("ask", "-m", evil_dir, "wing lift"), ("show", "-m", evil_dir, "esc")):
        r = subprocess.run(tablelm_cmd(*args), env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\x07" not in r.stdout, repr(r.stdout)
        assert "\\x1b]0;pwned\\x07" in r.stdout  # shown, not sent


# --------------------------------------------------------------------------- fuzz the API


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
_names = st.sampled_from(["q", "k", "beta", "ignore", "stream", "messages", "tablelm", "model", "x"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.dictionaries(_names, _json_values, max_size=5), _json_values),
       path=st.sampled_from(["/ask", "/v1/chat/completions"]))
def test_any_json_body_gets_an_answer_or_the_envelope(client, body, path):
    raw = json.dumps(body, ensure_ascii=True)  # NaN/Infinity literals and \\ud800 escapes included
    r = _post(client, path, raw)
    if r.status_code != 200:
        _envelope(r)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(params=st.dictionaries(_names, st.text(max_size=12), max_size=4),
       entity=st.text(max_size=12))
def test_any_query_string_gets_an_answer_or_the_envelope(client, params, entity):
    r = client.get("/ask", params=params)
    if r.status_code != 200:
        _envelope(r)
    r = client.get("/entities/" + "".join(f"%{b:02X}" for b in entity.encode("utf-8", "surrogatepass")))
    if r.status_code != 200:
        _envelope(r)
