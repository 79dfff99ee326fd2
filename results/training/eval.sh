#!/bin/bash
# ImpRAG training evaluation (run from the repository root after training, see results/training/README.md):
# mini-KILT seen dev, 100 per task, k=5 (recall@5), the quick preset's 2-shot prompts. Each ImpRAG checkpoint
# gets its own index (~3 min here). The runner resumes per system label, so reference predictions of an
# earlier run with the same settings can be copied into "$OUT/preds/" first to skip them.
OUT="${1:-runs/eval-k5-v3}"
.venv/bin/imprag-bench run --preset quick --tasks nq hotpotqa --split dev --n 100 --k 5 --systems \
  "imprag:checkpoint=runs/train/imprag-full/checkpoint-refit,bf16=true,label=imprag-full-refit" \
  "imprag:checkpoint=runs/train/imprag-full/checkpoint,bf16=true,label=imprag-full" \
  "imprag:checkpoint=runs/train/imprag-full/checkpoint-stage0,bf16=true,label=imprag-full-stage0" \
  "imprag:checkpoint=runs/train/imprag-full/checkpoint-warmup,bf16=true,label=imprag-full-warmup" \
  "imprag:checkpoint=runs/train/imprag-quick/checkpoint,bf16=true,label=imprag-quick" \
  "imprag:l_max=64,bf16=true,label=imprag-untrained" dense closed-book --out "$OUT"
