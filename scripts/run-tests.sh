#!/usr/bin/env bash
# Installs what the test suite needs, runs ruff and mypy, and runs all the tests (every tier: unit, data, slow, ui).
# Used as is by .ci/run. Debian's chromium and python3.11-doc are installed when missing (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e ".[test]"
# Debian packages the tests use: chromium (browser tests), python3.11-doc (a real HTML site to read)
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
[ -d /usr/share/doc/python3.11/html ] || missing="$missing python3.11-doc"
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "Installing Debian packages for the tests:$missing" >&2
  $SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null \
    || echo "Could not install$missing: the tests that need them will fail." >&2
fi
# Lint and types (configured in pyproject.toml) are tests too (tests/test_lint.py), so that whoever runs the
# suite before merging sees them, not only CI.
exec python -m pytest -q "$@"
