#!/bin/bash
# The bar check on every seen dev question (mini-KILT: 200 per task): the `full` result against MiniLM + reader,
# closed-book and the untrained ImpRAG, k=5, the quick preset's 2-shot prompts.
# Writes leaderboard.csv under $OUT; results/training/leaderboard-n200.csv is a copy of it.
OUT="${1:-runs/eval-k5-n200}"
.venv/bin/imprag-bench run --preset quick --tasks nq hotpotqa --split dev --n 200 --k 5 --systems \
  "imprag:checkpoint=runs/train/imprag-full/checkpoint-refit,bf16=true,label=imprag-full-refit" \
  "imprag:l_max=64,bf16=true,label=imprag-untrained" dense closed-book --out "$OUT"
