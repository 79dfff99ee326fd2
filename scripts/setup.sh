#!/usr/bin/env bash
# Create .venv (Python >= 3.11, which the pins in constraints.txt need) and install imprag-bench with pinned versions. Idempotent.
# torch is pinned to 2.13.0 and installed first, so that nothing pulls a multi-GB CUDA build.
# GPU machines: `bash scripts/setup.sh --cuda cu130` installs the same torch built for CUDA 13.0 from PyTorch's own
# index (https://download.pytorch.org/whl/<tag>; cu126, cu128, cu130: pick the newest your driver supports,
# `nvidia-smi` shows it). Everything else is the same pinned set.
set -euo pipefail
cd "$(dirname "$0")/.."
CUDA=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cuda) CUDA="${2:-}"; shift 2 || true ;;
    *) echo "scripts/setup.sh: unknown argument $1 (usage: scripts/setup.sh [--cuda cuXYZ])" >&2; exit 2 ;;
  esac
done
if [ -n "$CUDA" ] && ! [[ "$CUDA" =~ ^cu[0-9]{3}$ ]]; then
  echo "scripts/setup.sh: --cuda expects a tag like cu130 (PyTorch's wheel index name), got '$CUDA'" >&2; exit 2
fi
TORCH_FROM=()
[ -n "$CUDA" ] && TORCH_FROM=(--index-url "https://download.pytorch.org/whl/$CUDA")
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.imprag-bench-installed
want=$( (cat pyproject.toml constraints.txt; echo "cuda=$CUDA") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "${TORCH_FROM[@]}" "torch==2.13.0"
  .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[test]"
  echo "$want" > "$stamp"
fi
