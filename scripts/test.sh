#!/usr/bin/env bash
# Install (if needed) and run the whole test suite. Extra arguments go to pytest (e.g. -m "not integration").
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install-browser.sh || echo "install-browser failed; the browser tests will be skipped" >&2
exec .venv/bin/python -m pytest -q "$@"
