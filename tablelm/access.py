"""Access per sub-model: a key file says which sub-models each key may read.

``tablelm serve -m MODEL --keys keys.json`` reads a JSON file of this form::

    {
      "keys": [
        {"key": "k-3f9c2e0a8b7d4c1e9f00", "name": "sales team", "submodels": ["sales", "marketing"]},
        {"key": "k-a81be03c55d24f6b9e11", "name": "admin", "submodels": "*"}
      ]
    }

* ``key``: the secret a client sends, as ``Authorization: Bearer KEY`` (what OpenAI clients
  send) or ``X-API-Key: KEY``; at least :data:`MIN_KEY_CHARS` characters, no blanks, unique.
* ``submodels``: the names of the sub-models it may read (``tablelm info -m MODEL`` lists
  them), or ``"*"`` for all. A model that is not split has no sub-models: only ``"*"`` applies.
* ``name`` (optional): who the key is for, shown in the server log, never to other keys.

A request with a key is answered by the model restricted to those sub-models
(:meth:`tablelm.submodels.SplitModel.scoped`): its plan, cards, snippets, sections,
suggestions, counts, sample prompts and entities come from them only, and its scores use
their statistics only. A request without a valid key gets a 401 on every route but the
page, its static files, the API docs and ``/healthz`` (which then says nothing about the
model).
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import TablelmError

MIN_KEY_CHARS = 16
_FIELDS = {"key", "name", "submodels"}


class KeyFileError(TablelmError):
    """A key file that cannot be used: what is wrong, where, and how to fix it."""


@dataclass(frozen=True)
class Grant:
    """What one key may read."""

    name: str
    submodels: tuple[str, ...] | None  # None: every sub-model ("*")


def read_keys(path, model) -> dict[str, Grant]:
    """The grants of a key file, checked against ``model``'s sub-models (:class:`KeyFileError` otherwise)."""
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise KeyFileError(f"{where}: cannot read the key file ({e.strerror or e}).") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{where}: the key file is not UTF-8 text.") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise KeyFileError(f"{where}: not valid JSON ({e}). The format is "
                           '{"keys": [{"key": "...", "submodels": ["name", ...]}]} (docs/submodels.md).') from None
    if not isinstance(data, dict) or set(data) != {"keys"} or not isinstance(data["keys"], list) or not data["keys"]:
        raise KeyFileError(f"{where}: expected a JSON object with one entry, \"keys\": a non-empty list of "
                           '{"key": "...", "name": "...", "submodels": [...]} objects.')
    names = [s["name"] for s in model.submodels] if hasattr(model, "submodels") else []
    grants: dict[str, Grant] = {}
    for i, entry in enumerate(data["keys"], 1):
        at = f"{where}: key #{i}"
        if not isinstance(entry, dict):
            raise KeyFileError(f"{at} is a {type(entry).__name__}, expected an object with key and submodels.")
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            raise KeyFileError(f"{at} has unknown field(s) {', '.join(map(repr, unknown))}; the fields are "
                               "key, name and submodels.")
        label = entry.get("name", f"key #{i}")
        if not isinstance(label, str):
            raise KeyFileError(f"{at}: name must be a string.")
        key = entry.get("key")
        if not isinstance(key, str) or len(key) < MIN_KEY_CHARS or any(c.isspace() for c in key):
            raise KeyFileError(f"{at} ({label}): key must be a string of at least {MIN_KEY_CHARS} characters "
                               "without blanks (e.g. python -c 'import secrets; print(secrets.token_urlsafe(24))').")
        if key in grants:
            raise KeyFileError(f"{at} ({label}) repeats the key of {grants[key].name!r}; every key must be unique.")
        subs = entry.get("submodels")
        if subs == "*":
            grants[key] = Grant(label, None)
            continue
        if not isinstance(subs, list) or not subs or not all(isinstance(s, str) for s in subs):
            raise KeyFileError(f"{at} ({label}): submodels must be a non-empty list of sub-model names, or \"*\".")
        if not names:
            raise KeyFileError(f"{at} ({label}) names sub-models, but {getattr(model, 'path', 'the model')} is not "
                               'split into sub-models: use "submodels": "*", or build it with --split-by.')
        missing = [s for s in subs if s not in names]
        if missing:
            raise KeyFileError(f"{at} ({label}): no sub-model {', '.join(map(repr, missing))} in this model; "
                               f"it has: {', '.join(names)}.")
        grants[key] = Grant(label, tuple(dict.fromkeys(subs)))
    return grants


def key_of(headers) -> str | None:
    """The key a request sends: ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return (headers.get("x-api-key") or "").strip() or None


def find_grant(grants: dict[str, Grant], key: str | None) -> tuple[str, Grant] | None:
    """The grant of ``key``, compared in constant time (no timing hint of a near miss)."""
    if not key:
        return None
    found = None
    for k, g in grants.items():
        if hmac.compare_digest(k.encode(), key.encode()):
            found = (k, g)
    return found
