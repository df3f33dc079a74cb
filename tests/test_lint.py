"""Lint and types: ruff and mypy, as configured in pyproject.toml, find nothing.

They run as tests so that whoever runs the suite before merging sees a finding, not only CI.
A finding in a file you are changing: fix it (``python -m ruff check --fix .`` mends many). The
per-file ignores and mypy overrides in pyproject.toml list what is left for the files' owners.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT


def _run(module: str, *args: str, timeout: int) -> subprocess.CompletedProcess:
    pytest.importorskip(module, reason=f"pip install {module} (it is in the 'test' extra)")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_ruff_finds_nothing():
    r = _run("ruff", "check", "--no-cache", "--output-format", "concise", ".", timeout=120)
    assert r.returncode == 0, (f"ruff check found problems:\n{r.stdout}\nIn a file you changed: python -m ruff check "
                               "--fix . mends many. In another's file: add it under [tool.ruff.lint.per-file-ignores] "
                               "in pyproject.toml and tell its owner.")


@pytest.mark.slow
def test_mypy_finds_nothing():
    r = _run("mypy", timeout=600)
    assert r.returncode == 0, (f"mypy found type errors:\n{r.stdout}\nIn another's module: add it to the "
                               "[[tool.mypy.overrides]] list in pyproject.toml and tell its owner.")
