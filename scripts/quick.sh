#!/usr/bin/env bash
# Install (if needed) and run the offline quick preset: untrained baselines (+ ImpRAG) on all eight
# mini-KILT tasks -> runs/quick/leaderboard.csv, groups.png, tasks.png. Extra arguments go to `imprag-bench run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/imprag-bench run --preset quick "$@"
