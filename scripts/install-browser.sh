#!/usr/bin/env bash
# Install Debian's headless-capable chromium for the HTML report's browser tests, where it is missing.
# Idempotent and quiet: does nothing when chromium is on PATH; needs apt-get (and root or sudo) otherwise.
# Without apt-get it says so and exits 0: the browser tests then skip with that reason.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: no chromium and no apt-get; the browser tests will be skipped" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "install-browser: not root and no sudo; install chromium yourself (apt-get install chromium)" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null 2>&1 && echo "install-browser: installed $(chromium --version 2>/dev/null)"
