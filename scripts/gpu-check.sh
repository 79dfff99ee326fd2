#!/usr/bin/env bash
# GPU check, from the working tree alone (no hub, no registry, a tiny random Llama made in memory), in well
# under 8 minutes: the suite's CUDA-marked tests (bf16 on the GPU vs fp32 on the CPU for the layer-group
# forward and the reading; ImpRAG, the RA reader and the RA-DIT-Llama retriever trained on the GPU against the
# CPU, tests/test_cuda_training.py), then index-build and per-example latency figures as a table
# (benchmarks/gpu_check.py; JSON to $OUT/gpu_check.json or results/gpu_check.json).
# Without CUDA it prints a message and exits 0. --dry runs the same steps on the CPU (bf16 model on the CPU
# for the tests, small sizes for the figures): a check of the script itself, not of a GPU.
# Python: $PYTHON, else .venv/bin/python, else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi; fi
DRY=0
[[ "${1:-}" == "--dry" ]] && DRY=1
OUTDIR="${OUT:-results}"
if [[ $DRY == 1 ]]; then
  echo "gpu-check: dry run on CPU"
  IMPRAG_CUDA_TEST_DEVICE=cpu timeout 240 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests
  timeout 240 "$PY" benchmarks/gpu_check.py --dry
  exit 0
fi
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu-check: no CUDA device here; skipping (scripts/gpu-check.sh --dry exercises it on the CPU)"
  exit 0
fi
"$PY" -c "import torch; print('gpu-check:', torch.cuda.get_device_name(), 'torch', torch.__version__)"
timeout 240 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests
timeout 240 "$PY" benchmarks/gpu_check.py --device cuda --json "$OUTDIR/gpu_check.json"
