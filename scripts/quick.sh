#!/usr/bin/env bash
# Install (if needed) and run the offline quick preset: closed-book, BM25 and untrained ImpRAG on all eight
# mini-KILT tasks, 12 examples each -> runs/quick/ (leaderboard.csv, groups.png, tasks.png, report.html). Extra arguments go to
# `imprag-bench run` (e.g. --systems closed-book bm25 dense).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/imprag-bench run --preset quick "$@"
