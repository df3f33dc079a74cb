"""The HTTP interface: JSON API, web page and an OpenAI-compatible endpoint.

Every route parses its input, makes the one core call (:meth:`Model.ask`,
:meth:`Model.entity`, :meth:`Model.params`, :meth:`Model.info`) and renders the
result; nothing here ranks, matches or invents text.

Routes
------
``GET /ask?q=...&k=...&<param>=...`` and ``POST /ask`` (JSON ``{"q", "k", <param>: value}``)
    The answer, the same JSON as ``tablelm ask --json``.
``GET /entities/{id}``
    The full entity.
``GET /params``, ``GET /info``, ``GET /samples``, ``GET /healthz``
    Parameter registry (defaults, bounds, help), manifest and table sizes, sample
    prompts, liveness.
``POST /v1/chat/completions``, ``GET /v1/models``
    OpenAI-compatible: the last user message is the prompt; the reply is the answer
    rendered as Markdown with numbered citations (``stream: true`` gives SSE chunks).
``/``
    The web page (static files in ``interfaces/web``, no front-end build step).
``/openapi.json``, ``/docs``, ``/redoc``
    The API schema and interactive docs.

Every error, whatever raised it (a bad parameter, an unknown route, a body too
large, a malformed HTTP request, a crash), has one shape,
``{"error": {"code", "message", "details"}}``, with the HTTP status that fits it.
Responses are strict JSON (NaN and infinities become ``null``, lone surrogates
U+FFFD), so a browser can always parse them. ``tablelm serve`` answers only
requests whose ``Host`` header names the interface it is bound to (or a name
given with ``--allowed-host``), so a DNS-rebinding page cannot read a local server.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import params as P
from ..answer.markdown import render_markdown
from ..errors import ParamError, TablelmError
from ..tables.store import trim_mapped
from .cli import model_option

log = logging.getLogger("tablelm.server")

WEB_DIR = Path(__file__).parent / "web"


def _redoc_assets() -> Path | None:
    """The folder of ReDoc's standalone script shipped by fastapi-standalone-docs, if installed."""
    try:
        import fastapi_standalone_docs
    except ImportError:
        return None
    folder = Path(fastapi_standalone_docs.__file__).parent / "static" / "redoc"
    return folder if (folder / "redoc.standalone.js").is_file() else None


REDOC_ASSETS = _redoc_assets()

#: Defaults of the request limits (``tablelm serve`` flags change them).
MAX_BODY_BYTES = 64 * 1024
MAX_PROMPT_CHARS = 1000
MAX_K = 100
#: resident pages of the mapped model tables (MB) above which the server drops them after a
#: request (tables/store.py trim_mapped); TABLELM_SERVE_MAPPED_MB overrides, 0 never drops. The
#: pages stay in the OS page cache: a dropped page costs a minor fault when read again. 256, not
#: 512: the 1M model's server peaked at 1,046 MB over 10,000 asks with 512 (format 7: ~500 MB of it
#: caches and impacts) and at 805 MB with 256, p95 46 ms (docs/scaling.md)
MAPPED_MB = 256

#: The model name the OpenAI-compatible endpoint announces.
OPENAI_MODEL_ID = "tablelm"

_SURROGATE = re.compile("[\ud800-\udfff]")

_STATUS_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "request_too_large",
                 415: "unsupported_media_type", 422: "invalid_request", 500: "internal_error"}

# The page builds its DOM with textContent only; this policy is a second line of defence
# against injected markup: no inline script, nothing loaded from elsewhere.
_PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
             "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


# --------------------------------------------------------------------------- errors
class APIError(Exception):
    """An error with an HTTP status, a stable ``code`` and structured ``details``."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details or {}


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    """The one error envelope of the HTTP API."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def json_safe(value):
    """``value`` as strict JSON can hold it: non-finite floats → None, lone surrogates → U+FFFD."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {json_safe(str(k)): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """A JSON response that is always strict, valid UTF-8 JSON.

    Starlette refuses NaN (``allow_nan=False``) and UTF-8 refuses lone surrogates, so a
    NaN in an entity's metadata or a surrogate echoed from a request made the response,
    or the error response about it, fail with a 500. Only then is the content cleaned.
    """

    def render(self, content) -> bytes:
        try:
            return super().render(content)
        except (ValueError, UnicodeEncodeError):
            return super().render(json_safe(content))


def _error(status: int, code: str, message: str, details: dict | None = None, headers=None) -> JSONResponse:
    return SafeJSONResponse(jsonable_encoder(error_body(code, message, details)), status_code=status,
                            headers=headers)


def _check_text(value: Any, name: str) -> None:
    """A 422 for request text that is not valid Unicode (a lone surrogate, from a JSON ``\\ud800``)."""
    texts = value if isinstance(value, (list, tuple)) else [value]
    for text in texts:
        bad = _SURROGATE.search(text) if isinstance(text, str) else None
        if bad:
            raise APIError(422, "invalid_text",
                           f"The {name!r} argument holds a lone surrogate ({bad[0]!a}), "
                           "which is not Unicode text; send UTF-8 text.", {"parameter": name})


class HostCheck:
    """ASGI middleware: answer only requests whose ``Host`` names one of ``allowed`` (port ignored).

    A page on another site can make the user's browser send requests to 127.0.0.1 under a
    name it controls (DNS rebinding) and read the answers; the Host header still carries
    that name, so refusing unknown names closes the hole, as other local servers do.
    """

    def __init__(self, app, allowed):
        self.app, self.allowed = app, frozenset(h.lower() for h in allowed)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or "*" in self.allowed:
            return await self.app(scope, receive, send)
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").strip().lower()
        if host.startswith("["):  # [::1]:8000
            name = host[1:].partition("]")[0]
        else:  # name:port, or a bare IPv6 address
            name = host.partition(":")[0] if host.count(":") == 1 else host
        if name not in self.allowed:
            resp = _error(400, "invalid_host",
                          f"The Host header {host!r} is not a name this server answers to "
                          f"({', '.join(sorted(self.allowed))}); start it with --allowed-host NAME to add one.",
                          {"host": host, "allowed": sorted(self.allowed)})
            return await resp(scope, receive, send)
        return await self.app(scope, receive, send)


def allowed_hosts_for(bind_host: str, extra=()) -> list[str]:
    """The Host names a server bound to ``bind_host`` answers to: loopback names for a loopback
    address, the address itself otherwise; ``*`` (any) for all interfaces (0.0.0.0, ::)."""
    names = {bind_host.strip("[]").lower(), *(h.lower() for h in extra)}
    if bind_host in ("0.0.0.0", "::", ""):
        names.add("*")
    if bind_host in ("127.0.0.1", "::1", "localhost") or bind_host.startswith("127."):
        names |= {"localhost", "127.0.0.1", "::1"}
    return sorted(names)


class KeyCheck:
    """ASGI middleware: with access keys, a 401 envelope for a request without a valid key,
    except on the page, its static files, the API docs and ``/healthz`` (tablelm/access.py)."""

    def __init__(self, app, keys):
        self.app, self.keys = app, keys

    async def __call__(self, scope, receive, send):
        from ..access import find_grant, key_of

        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if path in _OPEN_PATHS or path.startswith(_OPEN_PREFIXES) or find_grant(self.keys, key_of(headers)):
            return await self.app(scope, receive, send)
        resp = _error(401, "unauthorized", _NEED_KEY, {"path": path}, headers={"WWW-Authenticate": "Bearer"})
        return await resp(scope, receive, send)


_NEED_KEY = ("This server needs an access key: send it as 'Authorization: Bearer KEY' (or 'X-API-Key: KEY'); "
             "ask the server's operator for one.")
#: routes that answer without an access key: the page, its files, the API docs, liveness
_OPEN_PATHS = ("/", "/openapi.json", "/docs", "/redoc", "/healthz")
_OPEN_PREFIXES = ("/static/", "/docs-assets/", "/redoc-assets/")


class _AnyPath(Convertor):
    """Like Starlette's ``path``, but also matching newlines: an entity id may hold one."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return str(value)


register_url_convertor("anypath", _AnyPath())


class PageTrim:
    """ASGI middleware: after each HTTP request, drop the resident pages of the memory-mapped
    model tables once they pass ``budget_mb`` (tables/store.py :func:`trim_mapped`), so that the
    server's resident set stays bounded however many parts of the tables its queries touch; the
    pages stay in the page cache and the next reads fault them back in."""

    def __init__(self, app, budget_mb: float):
        self.app, self.budget_mb = app, budget_mb

    async def __call__(self, scope, receive, send):
        try:
            return await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                trim_mapped(self.budget_mb)


def _mapped_budget() -> float:
    try:
        return float(os.environ.get("TABLELM_SERVE_MAPPED_MB", MAPPED_MB))
    except ValueError:
        return float(MAPPED_MB)


class BodyLimit:
    """ASGI middleware: refuse request bodies larger than ``limit`` bytes with a 413 envelope.

    The body is read (at most ``limit + 1`` bytes) before the app sees it, so a client
    that sends no Content-Length, or lies about it, cannot get past the limit.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            return await self._refuse(scope, receive, send, int(declared))
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._refuse(scope, receive, send, size)
            chunks.append(chunk)
            more = msg.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send, size):
        resp = _error(413, "request_too_large",
                      f"The request body is larger than the limit of {self.limit:,} bytes (got at least {size:,}). "
                      "Send a shorter prompt, or start the server with a larger --max-body-bytes.",
                      {"limit_bytes": self.limit, "size_bytes": size}, headers={"Connection": "close"})
        await resp(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError):
        return _error(exc.status, exc.code, exc.message, exc.details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        code = _STATUS_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"No route {request.method} {request.url.path}. The API is listed at /docs."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        return _error(exc.status_code, code, message, {"path": request.url.path}, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        if any(e["type"] == "json_invalid" for e in errors):
            return _error(400, "invalid_json", "The request body is not valid JSON.", {"errors": errors})
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(x) for x in first["loc"] if x != "body") or "request"
        return _error(422, "invalid_request", f"Invalid {where}: {first['msg']}.", {"errors": errors})

    @app.exception_handler(ParamError)
    async def _param_error(request: Request, exc: ParamError):
        return _error(422, "invalid_parameter", str(exc), exc.details or {})

    @app.exception_handler(TablelmError)
    async def _tablelm_error(request: Request, exc: TablelmError):
        return _error(400, "bad_request", str(exc))

    @app.exception_handler(UnicodeError)
    async def _unicode_error(request: Request, exc: UnicodeError):
        return _error(422, "invalid_text", f"The request holds text that is not valid Unicode ({exc}); "
                      "send UTF-8 text.")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error",
                      f"Internal server error ({type(exc).__name__}); the server log has the traceback.")


# --------------------------------------------------------------------------- request parsing
class AskBody(BaseModel):
    """``POST /ask``: the same names as the query arguments of ``GET /ask``."""

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "examples": [{"q": "data governance policy", "k": 5, "beta": 0.7, "ignore": ["data"]}]})

    q: str = Field(description="The prompt. `!word` excludes entities with the word, `a~b` forces a multitoken.")
    # checked by _check_k (strict: `true` or "5" is not a number of cards in JSON)
    k: Any = Field(10, description="Number of cards.", json_schema_extra={"type": "integer"})


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """The OpenAI chat-completions request; sampling fields (temperature, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False  # "yes" or 1 is an error, not a stream
    tablelm: dict[str, Any] | None = Field(
        None, description="Optional tablelm parameters for this call, e.g. {\"k\": 5, \"beta\": 0.7}.")


class Limits:
    def __init__(self, max_body_bytes: int, max_prompt_chars: int, max_k: int):
        self.max_body_bytes, self.max_prompt_chars, self.max_k = max_body_bytes, max_prompt_chars, max_k


def _check_prompt(q: Any, limits: Limits) -> str:
    _check_text(q, "q")
    if not isinstance(q, str) or not q.strip():
        raise APIError(422, "missing_prompt", "The 'q' argument (the prompt) is required and must not be empty.",
                       {"parameter": "q"})
    if len(q) > limits.max_prompt_chars:
        raise APIError(422, "prompt_too_long",
                       f"The prompt has {len(q):,} characters; the limit is {limits.max_prompt_chars:,}.",
                       {"parameter": "q", "length": len(q), "limit": limits.max_prompt_chars})
    return q


def _check_k(k: Any, limits: Limits, strict: bool = False) -> int:
    """``k`` as an int in [1, max_k]; a URL's string form is accepted unless ``strict`` (JSON)."""
    try:
        if strict and not isinstance(k, int):
            raise ValueError
        return P.check_k(int(k.strip()) if isinstance(k, str) else k, limits.max_k)
    except ValueError:  # ParamError is one
        raise APIError(422, "invalid_parameter",
                       f"The 'k' parameter must be an int in [1, {limits.max_k}]. Got {k!r}.",
                       {"parameter": "k", "rule": f"an int in [1, {limits.max_k}]", "value": k}) from None


def _check_params(model, overrides: dict) -> dict:
    """Validate per-call parameters one by one so the error names the culprit."""
    for name, value in overrides.items():
        _check_text(value, name)
        try:
            model.params(**{name: value})
        except ParamError as e:
            p = P.REGISTRY.get(name)
            e.details = {"parameter": name, "value": value,
                         "rule": p.constraint.describe() if p and p.stage in ("query", "render") else None}
            raise
    return overrides


def _query_overrides(request: Request) -> dict:
    out: dict[str, Any] = {}
    for name in request.query_params.keys():
        if name in ("q", "k"):
            continue
        values = request.query_params.getlist(name)
        out[name] = ",".join(values) if len(values) > 1 else values[0]
    return out


def _param_openapi() -> list[dict]:
    """OpenAPI descriptions of every per-call parameter, generated from the registry."""
    out = []
    for p in P.REGISTRY.values():
        if p.stage not in ("query", "render"):
            continue
        d = p.to_dict()
        schema: dict[str, Any] = {"type": {"int": "integer", "float": "number"}.get(d["type"], "string")}
        for key, skey in (("min", "minimum"), ("max", "maximum")):
            if key in d:
                schema[skey] = d[key]
        if "choices" in d and d["type"] == "options":
            schema["enum"] = d["choices"]
        default = d["default"]
        schema["default"] = ",".join(default) if isinstance(default, list) else default
        out.append({"name": p.name, "in": "query", "required": False, "schema": schema,
                    "description": f"{p.help} Must be {d['rule']}. Stage: {p.stage}."})
    return out


def _message_text(msg: ChatMessage) -> str:
    if isinstance(msg.content, str):
        return msg.content
    if isinstance(msg.content, list):
        return " ".join(str(part.get("text", "")) for part in msg.content if part.get("type") == "text")
    return ""


# --------------------------------------------------------------------------- sample prompts
def sample_prompts(model, n: int = 10) -> list[str]:
    """Prompts that show what a corpus is about: its most frequent knowledge-graph multitokens.

    Multitokens of two words or more, ranked by their count in the title, category and
    tags fields (graph tokens weigh most, see BACKGROUND), words made of letters only.
    Single words fill in when a corpus has few phrases.
    """
    import numpy as np

    # a split model (or an access key's part of it): the counts of its sub-models only
    counts = model.sample_counts() if hasattr(model, "sample_counts") else np.asarray(model.tables.mt_counts)
    counts = counts.astype(np.int64)
    graph = counts[:, 1:].sum(axis=1) if counts.shape[1] > 1 else counts[:, 0]
    weight = graph * 4 + counts[:, 0]
    order = np.argsort(-weight, kind="stable")
    order = order[weight[order] > 0]  # what the scope has: a key never sees another sub-model's words
    phrases: list[str] = []
    words: list[str] = []
    for mt in order[: 50 * n].tolist():
        text = model.tables.display(mt)
        if not all(w.isalpha() and len(w) > 1 for w in text.split()):
            continue
        (phrases if model.tables.mt_len[mt] >= 2 else words).append(text)
        if len(phrases) >= n:
            break
    out: list[str] = []
    for t in phrases + words:
        if not any(t in o or o in t for o in out):
            out.append(t)
    return out[:n]


# --------------------------------------------------------------------------- the app
def _route_args(model, overrides: dict) -> dict:
    """The sub-model arguments of a request (``s`` or ``submodels``, ``route``, ``route_max``,
    ``route_coverage``, ``route_method``), taken out of ``overrides``; a 422 for a model that is not split."""
    out = {}
    for name in ("s", "submodels", "route", "route_max", "route_coverage", "route_method"):
        if name in overrides:
            value = overrides.pop(name)
            _check_text(value, name)
            out["submodels" if name == "s" else name] = value
    if out and not hasattr(model, "submodels"):
        raise APIError(422, "not_split", f"This model is not split into sub-models, so {', '.join(sorted(out))} "
                       "does not apply; build one with tablelm build ... --split-by FIELD.",
                       {"parameter": sorted(out)[0]})
    return out


def create_app(model, *, max_body_bytes: int = MAX_BODY_BYTES, max_prompt_chars: int = MAX_PROMPT_CHARS,
               max_k: int = MAX_K, allowed_hosts=None, keys=None, mapped_mb: float | None = None) -> FastAPI:
    """The ASGI app serving ``model`` (loaded once by the caller, memory-mapped).

    Parameters
    ----------
    model : tablelm.model.Model
        The model every request is answered with.
    max_body_bytes : int
        Largest request body accepted (413 above).
    max_prompt_chars : int
        Longest prompt accepted (422 above).
    max_k : int
        Largest number of cards per request.
    allowed_hosts : list of str, optional
        Host names (no port) the app answers to, ``"*"`` for any; others get a 400 envelope.
        None (the default for a library caller) checks nothing; ``tablelm serve`` passes
        :func:`allowed_hosts_for` its ``--host``.
    keys : dict, optional
        Access keys (:func:`tablelm.access.read_keys`): every request but the page, the docs and
        ``/healthz`` must send one, and sees only the sub-models its key may read. None: no keys
        (everything is readable, as on a loopback-only server).
    mapped_mb : float, optional
        Resident MB of mapped model pages above which they are dropped after a request (0: never);
        default ``TABLELM_SERVE_MAPPED_MB`` or :data:`MAPPED_MB`.
    """
    limits = Limits(max_body_bytes, max_prompt_chars, max_k)
    app = FastAPI(
        title="tablelm",
        version=model.manifest.get("tablelm_version", ""),
        summary="An untrained LLM: ranked, cited cards from backend tables.",
        description="Every error has the shape `{\"error\": {\"code\", \"message\", \"details\"}}`. "
                    "The web page is at `/`; `tablelm params` lists the parameters.",
        docs_url=None, redoc_url=None, default_response_class=SafeJSONResponse,
    )
    app.state.model = model
    app.state.limits = limits
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(PageTrim, budget_mb=_mapped_budget() if mapped_mb is None else float(mapped_mb))
    if keys is not None:
        app.add_middleware(KeyCheck, keys=keys)  # every route needs a key, whatever its handler does
    if allowed_hosts is not None:
        app.add_middleware(HostCheck, allowed=allowed_hosts)  # added last: runs first
    started = time.time()
    from ..access import find_grant, key_of

    # one restricted model per key, made once: every request of a key reads through it
    scoped = {k: model if g.submodels is None else model.scoped(list(g.submodels)) for k, g in (keys or {}).items()}

    def model_of(request: Request):
        """The model this request may read: the whole one without keys, else its key's part."""
        if keys is None:
            return model
        got = find_grant(keys, key_of(request.headers))
        if got is None:
            raise APIError(401, "unauthorized", _NEED_KEY)
        return scoped[got[0]]

    def ask(m, q, k, overrides, strict=False):
        q = _check_prompt(q, limits)
        k = _check_k(k, limits, strict)
        route = _route_args(m, overrides)
        _check_params(m, overrides)
        return m.ask(q, k=k, **overrides, **route)

    # ---------------------------------------------------------------- JSON API
    @app.get("/ask", tags=["answer"], summary="Answer a prompt",
             openapi_extra={"parameters": _param_openapi()})
    def ask_get(request: Request, q: str | None = None, k: str = "10"):
        """Ranked, cited cards and sections for the prompt ``q``; every parameter of
        ``GET /params`` (stage query or render) may be given as a query argument. A split model
        also takes ``s`` (sub-models to ask, comma-separated) and ``route`` (auto or all)."""
        return SafeJSONResponse(ask(model_of(request), q, k, _query_overrides(request)).to_dict())

    @app.post("/ask", tags=["answer"], summary="Answer a prompt (JSON body)")
    def ask_post(request: Request, body: AskBody):
        """The same as ``GET /ask``, with the arguments as a JSON object; word lists may be JSON arrays."""
        return SafeJSONResponse(ask(model_of(request), body.q, body.k, dict(body.model_extra or {}),
                                    strict=True).to_dict())

    @app.get("/entities/{entity_id:anypath}", tags=["model"], summary="Full content of an entity")
    def entity(request: Request, entity_id: str):
        m = model_of(request)
        _check_text(entity_id, "id")
        try:
            e = m.entity(entity_id)
        except KeyError:
            raise APIError(404, "entity_not_found", f"No entity with id {entity_id!r} in this model.",
                           {"id": entity_id}) from None
        return e.to_dict()

    @app.get("/params", tags=["model"], summary="The parameter registry")
    def params(request: Request):
        """Every parameter: name, default, rule, bounds or choices, help and stage. ``model_default``
        is the value this model uses when a request does not set it (a tuned profile may change it);
        ``settable`` says whether it can be set per request (stages query and render)."""
        m = model_of(request)
        current = m.params()
        rows = []
        for p in P.REGISTRY.values():
            d = p.to_dict()
            d["settable"] = p.stage in ("query", "render")
            value = current.get(p.name, m.build_params.get(p.name, p.default))
            d["model_default"] = list(value) if isinstance(value, tuple) else value
            rows.append(d)
        return {"params": rows, "k": {"default": 10, "min": 1, "max": limits.max_k, "help": "Number of cards."}}

    @app.get("/info", tags=["model"], summary="Manifest and table sizes")
    def info(request: Request):
        data = model_of(request).info()
        data["limits"] = {"max_body_bytes": limits.max_body_bytes, "max_prompt_chars": limits.max_prompt_chars,
                          "max_k": limits.max_k}
        return jsonable_encoder(data)

    @app.get("/samples", tags=["model"], summary="Sample prompts for this corpus")
    def samples(request: Request, n: int = 10):
        return {"prompts": sample_prompts(model_of(request), max(1, min(n, 50)))}

    @app.get("/healthz", tags=["model"], summary="Liveness")
    def healthz(request: Request):
        """Liveness; with access keys, the model's facts only for a request with a key (and of its part)."""
        up = round(time.time() - started, 3)
        if keys is not None and find_grant(keys, key_of(request.headers)) is None:
            return {"status": "ok", "uptime_s": up}
        m = model_of(request)
        return {"status": "ok", "fingerprint": m.manifest["fingerprint"][:16], "entities": m.n_docs, "uptime_s": up}

    # ---------------------------------------------------------------- OpenAI-compatible
    @app.get("/v1/models", tags=["openai"], summary="OpenAI-compatible model list")
    def models(request: Request):
        """``tablelm`` (the router's choice), and ``tablelm/NAME`` for each sub-model of a split model."""
        m = model_of(request)
        ids = [OPENAI_MODEL_ID] + [f"{OPENAI_MODEL_ID}/{s['name']}" for s in getattr(m, "submodels", [])]
        return {"object": "list", "data": [{"id": i, "object": "model", "created": int(started), "owned_by": "tablelm",
                                            "fingerprint": m.manifest["fingerprint"][:16]} for i in ids]}

    @app.post("/v1/chat/completions", tags=["openai"], summary="OpenAI-compatible chat completion")
    async def chat_completions(request: Request, body: ChatRequest):
        """The last user message is the prompt; the reply is the answer as Markdown with numbered
        citations. ``tablelm`` (optional object) sets parameters, e.g. ``{"k": 5}``; the model
        ``tablelm/NAME`` asks only the sub-model NAME of a split model."""
        m = model_of(request)
        users = [m for m in body.messages if m.role == "user"]
        if not users:
            raise APIError(422, "missing_prompt", "The messages contain no 'user' message to answer.",
                           {"parameter": "messages"})
        overrides = dict(body.tablelm or {})
        k = overrides.pop("k", 5)
        if body.model and body.model.startswith(OPENAI_MODEL_ID + "/"):
            overrides["submodels"] = body.model[len(OPENAI_MODEL_ID) + 1:]
        answer = await run_in_threadpool(ask, m, _message_text(users[-1]), k, overrides, True)
        text = render_markdown(answer, max_cards=len(answer.cards))
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        n_in, n_out = len(answer.prompt.split()), len(text.split())
        usage = {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}
        if not body.stream:
            return {"id": cid, "object": "chat.completion", "created": created, "model": OPENAI_MODEL_ID,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}], "usage": usage}

        def chunk(delta: dict, finish=None) -> str:
            return "data: " + json.dumps({
                "id": cid, "object": "chat.completion.chunk", "created": created, "model": OPENAI_MODEL_ID,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}, ensure_ascii=False) + "\n\n"

        def events():
            yield chunk({"role": "assistant", "content": ""})
            for line in text.splitlines(keepends=True):
                yield chunk({"content": line})
            yield chunk({}, "stop")
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    # ---------------------------------------------------------------- docs and the web page
    @app.get("/docs", include_in_schema=False)
    def docs():
        if swagger_dir is None:
            return _error(503, "docs_unavailable", "The API docs need Swagger UI 5 or later (which reads OpenAPI "
                          "3.1), served from the package: pip install 'swagger-ui-bundle-v2>=5'. "
                          "The schema itself is at /openapi.json.")
        return get_swagger_ui_html(openapi_url="/openapi.json", title="tablelm API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")

    @app.get("/redoc", include_in_schema=False)
    def redoc():
        if REDOC_ASSETS is None:  # fastapi-standalone-docs missing: FastAPI's CDN page
            return get_redoc_html(openapi_url="/openapi.json", title="tablelm API")
        # the script and the logo from the installed package, no web fonts: renders offline
        return get_redoc_html(openapi_url="/openapi.json", title="tablelm API",
                              redoc_js_url="/redoc-assets/redoc.standalone.js",
                              redoc_favicon_url="/redoc-assets/logo-mini.svg", with_google_fonts=False)

    if REDOC_ASSETS is not None:
        app.mount("/redoc-assets", StaticFiles(directory=REDOC_ASSETS), name="redoc-assets")

    swagger_dir = swagger_ui_dir()
    if swagger_dir is not None:
        app.mount("/docs-assets", StaticFiles(directory=swagger_dir), name="docs-assets")

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Content-Security-Policy": _PAGE_CSP, "X-Content-Type-Options": "nosniff",
                                     "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    return app


# --------------------------------------------------------------------------- API docs
def swagger_ui_dir() -> Path | None:
    """The Swagger UI assets to serve at ``/docs``: version 5 or later, from the installed package.

    FastAPI writes OpenAPI 3.1, which Swagger UI reads from version 5 on (4.x shows only an
    error). The assets come from ``swagger-ui-bundle-v2`` (a dependency), never from a CDN, so
    the docs work offline. That package installs into the same ``swagger_ui_bundle`` module as
    the older ``swagger-ui-bundle`` (4.15); both may be present, so the newest ``vendor``
    folder is chosen by its version, not by whichever ``__init__`` was installed last.
    Returns None when no version 5 or later is installed.
    """
    try:
        import swagger_ui_bundle
    except ImportError:
        return None
    found = []
    for folder in (Path(swagger_ui_bundle.__file__).parent / "vendor").glob("swagger-ui-*"):
        m = re.fullmatch(r"swagger-ui-(\d+)\.(\d+)\.(\d+)", folder.name)
        if m and int(m[1]) >= 5 and (folder / "swagger-ui-bundle.js").is_file():
            found.append((tuple(map(int, m.groups())), folder))
    return max(found)[1] if found else None


# --------------------------------------------------------------------------- running it
def _envelope_protocol():
    """uvicorn's h11 protocol, answering a malformed request with the JSON error envelope.

    uvicorn itself answers "Invalid HTTP request received." as plain text before any app
    runs; this subclass writes the same 400 as ``{"error": ...}``.
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class EnvelopeH11Protocol(H11Protocol):
        def send_400_response(self, msg: str) -> None:
            body = json.dumps(error_body("malformed_request", f"{msg.rstrip('.')}: the request is not valid "
                                         "HTTP/1.1.")).encode()
            headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                       (b"content-length", str(len(body)).encode())]
            try:
                for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                              h11.Data(data=body), h11.EndOfMessage()):
                    self.transport.write(self.conn.send(event))
            except h11.LocalProtocolError:  # the connection's state allows no response any more
                pass
            self.transport.close()

    return EnvelopeH11Protocol


EnvelopeH11Protocol = _envelope_protocol()


@contextlib.contextmanager
def background_server(app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
    """Serve ``app`` with uvicorn in a background thread; yields the base URL.

    ``port=0`` binds a free port. Used by the tests and handy in notebooks.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False, http=EnvelopeH11Protocol))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the uvicorn server did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def app_from_env() -> FastAPI:
    """App factory for ``tablelm serve --workers N``: each worker process loads the model
    (memory-mapped, so the pages are shared) named by ``TABLELM_SERVE_MODEL``."""
    from ..builtin import builtin_model
    from ..model import load
    from ..query import kernel

    model_dir = os.environ.get("TABLELM_SERVE_MODEL")
    limits = json.loads(os.environ.get("TABLELM_SERVE_LIMITS") or "{}")  # also allowed_hosts
    model = load(model_dir) if model_dir else builtin_model()
    kernel.warm()  # the compiled kernels before the first request, not inside it
    keys_file = os.environ.get("TABLELM_SERVE_KEYS")
    if keys_file:
        from ..access import read_keys

        limits["keys"] = read_keys(keys_file, model)
    return create_app(model, **limits)


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


@click.command("serve")
@model_option()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: all).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: a free one).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes (answers are CPU-bound: up to one per core).")
@click.option("--max-prompt-chars", default=MAX_PROMPT_CHARS, show_default=True, type=click.IntRange(1, 10**6),
              help="Longest prompt accepted.")
@click.option("--max-body-bytes", default=MAX_BODY_BYTES, show_default=True, type=click.IntRange(256, 10**8),
              help="Largest request body accepted.")
@click.option("--max-k", default=MAX_K, show_default=True, type=click.IntRange(1, P.MAX_K),
              help="Largest number of cards per request.")
@click.option("--allowed-host", "allowed_host", multiple=True, metavar="NAME",
              help="Another Host name to answer to (repeatable; '*': any). By default only the names of --host "
                   "(localhost, 127.0.0.1, ::1 for a loopback address) are answered, against DNS rebinding.")
@click.option("--keys", "keys_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Access keys: a JSON file mapping each key to the sub-models it may read (docs/submodels.md). "
                   "Requests then need a key and see only those sub-models.")
@click.option("--allow-open", is_flag=True,
              help="Serve a non-loopback --host without --keys (anyone who reaches the port reads everything).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve_command(model_dir, host, port, workers, max_prompt_chars, max_body_bytes, max_k, allowed_host, keys_file,
                  allow_open, log_level):
    """Serve the JSON API, the web page (/) and an OpenAI-compatible endpoint (/v1)."""
    import uvicorn

    from ..builtin import builtin_model
    from ..model import load
    from ..query import kernel

    if not keys_file and not allow_open and not is_loopback(host):
        raise click.UsageError(f"--host {host} listens beyond this machine and no --keys file restricts who reads "
                               "what: pass --keys FILE (docs/submodels.md), or --allow-open to serve every entity "
                               "to anyone who reaches the port.")
    model = load(model_dir) if model_dir else builtin_model(progress=True)  # built once, before any worker
    if workers == 1:
        kernel.warm()  # the compiled kernels before the first request, not inside it (workers: app_from_env)
    keys = None
    if keys_file:
        from ..access import read_keys

        keys = read_keys(keys_file, model)  # checked before listening: a bad file is an error, not a 401
    limits = dict(max_body_bytes=max_body_bytes, max_prompt_chars=max_prompt_chars, max_k=max_k,
                  allowed_hosts=allowed_hosts_for(host, allowed_host))
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    click.echo(f"tablelm: {model.n_docs:,} entities from {model.path}; web page http://{shown}:{port}/ , "
               f"API docs http://{shown}:{port}/docs (Ctrl+C stops)", err=True)
    if keys is not None:
        click.echo(f"tablelm: {len(keys)} access keys from {keys_file}; requests without one get a 401", err=True)
    if workers == 1:
        uvicorn.run(create_app(model, keys=keys, **limits), host=host, port=port, log_level=log_level,
                    http=EnvelopeH11Protocol)
        return
    os.environ["TABLELM_SERVE_MODEL"] = str(model.path)
    if keys_file:
        os.environ["TABLELM_SERVE_KEYS"] = str(keys_file)
    os.environ["TABLELM_SERVE_LIMITS"] = json.dumps(limits)
    uvicorn.run("tablelm.interfaces.server:app_from_env", factory=True, workers=workers, host=host, port=port,
                http="tablelm.interfaces.server:EnvelopeH11Protocol",
                log_level=log_level)
