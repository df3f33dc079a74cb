"""The parameter registry: defaults, messages, suggestions, and the contracts with the CLI and docs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import tablelm
from tablelm import params as P
from tablelm.errors import ParamError
from tablelm.interfaces.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
ALL = list(P.REGISTRY.values())
IDS = [p.name for p in ALL]


def bad_values(p: P.Param) -> list:
    """Values that break the constraint of ``p``."""
    c = p.constraint
    if isinstance(c, P.Interval):
        out = [c.hi + 1, c.lo - 1, "abc", True, None]
        if c.kind is int:
            out.append(1.5)
        return out
    if isinstance(c, P.Options):
        return ["nope", 3, None]
    if isinstance(c, P.Flag):
        return ["maybe", 2, None]
    if isinstance(c, P.WordList):
        return ([("nope",), "nope"] if c.choices else []) + [5, None]
    if isinstance(c, P.Codec):
        return ["no-such-codec", 5, None]
    raise AssertionError(f"no bad values known for constraint {c!r}: extend this test")


def message_re(p: P.Param, value) -> str:
    rule, got = re.escape(p.constraint.describe()), re.escape(repr(value))
    return rf"^The '{re.escape(p.name)}' parameter must be {rule}\. Got {got}\.$"


@pytest.mark.parametrize("p", ALL, ids=IDS)
def test_default_is_valid(p):
    assert p.stage in P.STAGES
    assert p.help.strip() and p.help.strip()[-1] in ".)"
    assert p.validate(p.default) == p.default
    assert type(p.validate(p.default)) is type(p.default)
    # the string form the CLI passes gives the default back
    d = p.to_dict()["default"]
    as_text = ",".join(d) if isinstance(d, list) else str(d)
    assert p.validate(as_text) == p.default


@pytest.mark.parametrize("p", ALL, ids=IDS)
def test_bad_values_name_the_parameter_rule_and_value(p):
    for value in bad_values(p):
        with pytest.raises(ParamError, match=message_re(p, value)):
            p.validate(value)
        stage = p.stage if p.stage in ("read", "build") else ("query", "render")
        with pytest.raises(ParamError, match=message_re(p, value)):
            P.resolve({p.name: value}, stage=stage)


@pytest.mark.parametrize("p", [p for p in ALL if isinstance(p.constraint, P.Interval)], ids=lambda p: p.name)
def test_interval_bounds(p):
    c = p.constraint
    assert c.lo <= p.default <= c.hi
    assert p.validate(c.lo) == c.lo and p.validate(c.hi) == c.hi
    assert p.validate(f" {c.lo} ") == c.lo  # CLI strings are converted
    assert isinstance(p.validate(str(c.hi)), c.kind)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([p for p in ALL if isinstance(p.constraint, P.Interval)]), st.floats(-1e7, 1e7))
def test_interval_accepts_exactly_its_range(p, x):
    c = p.constraint
    inside = c.lo <= x <= c.hi and (c.kind is float or float(x).is_integer())
    if inside:
        assert p.validate(x) == (int(x) if c.kind is int else x)
    else:
        with pytest.raises(ParamError, match=message_re(p, x)):
            p.validate(x)


def test_conversions():
    r = P.resolve({"k1": "1.5", "max_rows": "3", "sections": "tags, categories", "ranker": " reference "},
                  stage="query")
    assert (r["k1"], r["max_rows"], r["sections"], r["ranker"]) == (1.5, 3, ("tags", "categories"), "reference")
    assert P.resolve({"stem": "no"}, stage="build")["stem"] is False
    assert P.resolve({"ignore": ["a", " b "]}, stage="query")["ignore"] == ("a", "b")


def _typo(name: str) -> str:
    """A plausible misspelling: two neighbouring letters swapped (or one dropped); short names get a suffix."""
    if len(name) <= 2:
        return name + "_"
    i = len(name) // 2
    if name[i - 1] != name[i]:
        return name[: i - 1] + name[i] + name[i - 1] + name[i + 1:]
    return name[:i] + name[i + 1:]


@pytest.mark.parametrize("p", ALL, ids=IDS)
def test_unknown_names_suggest_close_ones(p):
    typo = _typo(p.name)
    assert typo != p.name
    with pytest.raises(ParamError) as info:
        P.resolve({typo: p.default})
    msg = str(info.value)
    assert msg.startswith(f"Unknown parameter {typo!r}")
    assert "Did you mean" in msg and p.name in msg.split("Did you mean", 1)[1]
    assert "tablelm params" in msg


def test_unknown_name_without_close_match():
    with pytest.raises(ParamError, match=r"^Unknown parameter 'zzz'\. Run 'tablelm params' for the list\.$"):
        P.resolve({"zzz": 1})


def test_stage_is_enforced():
    with pytest.raises(ParamError, match=r"Unknown parameter 'max_ngram' \(query/render stage\)"):
        P.resolve({"max_ngram": 2}, stage=("query", "render"))
    with pytest.raises(ParamError, match=r"Unknown parameter 'k1' \(build stage\)"):
        tablelm.build([], k1=1.0)


def test_assignments():
    assert P.parse_assignments(["k1=1.5", " b =0.5", "ignore=a=b"]) == {"k1": "1.5", "b": "0.5", "ignore": "a=b"}
    for bad in ("k1", "=3", " =3"):
        with pytest.raises(ParamError, match="not of the form name=value"):
            P.parse_assignments([bad])


# --------------------------------------------------------------------------- contracts: CLI and README


def test_every_param_in_tablelm_params_output():
    r = CliRunner().invoke(main, ["params"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    for p in ALL:
        d = p.to_dict()
        default = ",".join(d["default"]) if isinstance(d["default"], list) else d["default"]
        head = [ln for ln in lines if ln.startswith(f"{p.name}  ")]
        assert len(head) == 1, f"{p.name} missing from `tablelm params`"
        assert f"[{p.stage}]" in head[0] and f"default {default}" in head[0] and p.constraint.describe() in head[0]
    rows = json.loads(CliRunner().invoke(main, ["params", "--json"]).output)
    assert [r["name"] for r in rows] == IDS
    assert rows == [p.to_dict() for p in ALL]
    for stage in ("build", "query", "render"):
        rows = json.loads(CliRunner().invoke(main, ["params", "--stage", stage, "--json"]).output)
        assert [r["name"] for r in rows] == [p.name for p in ALL if p.stage == stage]


def test_every_param_documented_in_readme():
    """README.md's parameter table lists every parameter with its stage and default (and nothing else)."""
    assert README.exists(), f"{README} is missing: it must document every parameter"
    text = README.read_text("utf-8")
    m = re.search(r"<!-- params:start -->\n(.*?)\n<!-- params:end -->", text, flags=re.S)
    assert m, "README.md has no <!-- params:start --> ... <!-- params:end --> table"
    rows = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].startswith("`") and cells[0].endswith("`"):
            rows[cells[0].strip("`")] = cells
    missing = [p.name for p in ALL if p.name not in rows]
    assert not missing, f"parameters missing from README.md: {missing} (python scripts/params_doc.py --write)"
    extra = sorted(set(rows) - set(IDS))
    assert not extra, f"README.md documents parameters that do not exist: {extra}"
    for p in ALL:
        d = p.to_dict()
        default = ",".join(d["default"]) if isinstance(d["default"], list) else d["default"]
        assert rows[p.name][1] == p.stage, p.name
        assert rows[p.name][2] == f"`{default}`", f"README default of {p.name} is stale"


def test_every_query_param_is_accepted_per_call(scifact_model):
    """Every query/render parameter works as a keyword of Model.ask and is reported in the answer."""
    for p in ALL:
        if p.stage in ("read", "build"):
            continue
        a = scifact_model.ask("vitamin d", k=2, **{p.name: p.default})
        assert a.params[p.name] == p.default


def test_build_params_are_recorded(scifact_model):
    for p in ALL:
        if p.stage == "build":
            assert scifact_model.build_params[p.name] == p.default
            assert scifact_model.info()["build_params"][p.name] == p.default


def test_k_has_one_rule_everywhere():
    """k: any integer type (numpy's too), never a bool, a float or a string; one message."""
    import numpy as np

    assert P.check_k(np.int64(3)) == 3 and type(P.check_k(np.int64(3))) is int
    assert P.check_k(P.MAX_K) == P.MAX_K and P.check_k(10**6, limit=None) == 10**6
    for bad in (0, -1, True, 3.0, "3", None, P.MAX_K + 1):
        with pytest.raises(ParamError, match=r"The 'k' parameter must be an int in \[1, 1000\] \(the number"):
            P.check_k(bad)
    with pytest.raises(ParamError, match="must be a positive int"):
        P.check_k(0, limit=None)
