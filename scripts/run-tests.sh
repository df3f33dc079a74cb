#!/usr/bin/env bash
# Installs what the test suite needs and runs all of it (fast, slow and browser tests).
# Used as is by .ci/run. Debian's chromium is installed when missing (needs root or sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check -e ".[test]"
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  echo "Installing Debian's chromium for the browser tests..." >&2
  $SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
    || echo "Could not install chromium: the browser tests will fail." >&2
fi
exec python -m pytest -q "$@"
