#!/bin/bash
# ImpRAG training evaluation (run from the repository root after training, see results/training/README.md):
# mini-KILT seen dev, 100 per task, k=5 (recall@5), the quick preset's 2-shot prompts.
.venv/bin/imprag-bench run --preset quick --tasks nq hotpotqa --split dev --n 100 --k 5 --systems \
  "imprag:checkpoint=runs/train/imprag-full/checkpoint,bf16=true,label=imprag-full" \
  "imprag:checkpoint=runs/train/imprag-full/checkpoint-warmup,bf16=true,label=imprag-full-warmup" \
  "imprag:checkpoint=runs/train/imprag-full/checkpoint-stage0,bf16=true,label=imprag-full-stage0" \
  "imprag:checkpoint=runs/train/imprag-full-s0distill/checkpoint,bf16=true,label=imprag-s0distill" \
  "imprag:checkpoint=runs/train/imprag-quick/checkpoint,bf16=true,label=imprag-quick" \
  "imprag:l_max=64,bf16=true,label=imprag-untrained" dense closed-book --out "${1:-runs/eval-k5}"
