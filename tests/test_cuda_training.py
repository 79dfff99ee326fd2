"""The shared training loop on the GPU: ImpRAG, the RA reader and the RA-DIT-Llama retriever stage train 4
steps on the device with activation checkpointing to the weights the same fp32 run reaches on the CPU, and with
bf16 autocast to finite losses and a checkpoint evaluation can load.

Marked `cuda` (scripts/gpu-check.sh runs it); IMPRAG_CUDA_TEST_DEVICE=cpu runs it on the CPU (the dry run). One
process: a one-GPU machine cannot run the 2-rank NCCL case (tests/test_train_engine.py runs 2 ranks on gloo).
fp32 matmuls on a GPU differ from the CPU's in summation order only (TF32 is off by default), so 4 steps at lr
1e-3 stay within 1e-3."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

from imprag_bench.harness.training.loop import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests import engine_driver as d  # noqa: E402
from tests.test_train_engine import weights  # noqa: E402

DEVICE = os.environ.get("IMPRAG_CUDA_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")]


def _train(name: str, device: str, out: Path, bf16: bool = False) -> Path:
    obj = d.objective(name, device)
    if bf16:
        obj.bf16 = True
        if hasattr(obj, "cfg"):
            obj.cfg.bf16 = True
    its = d.items() if name != "slice" else [it for it in d.items() if it.kind == "retrieval"]
    train(obj, its, TrainConfig(out=str(out), steps=d.STEPS, batch_size=d.BATCH, lr=1e-3, ckpt_every=2,
                                checkpointing=True))
    return out


@pytest.mark.parametrize("name", ["imprag", "reader", "slice"])
def test_training_on_the_device_matches_the_cpu_and_runs_in_bf16(tmp_path, name):
    dev = weights(_train(name, DEVICE, tmp_path / "dev"))
    cpu = weights(_train(name, "cpu", tmp_path / "cpu"))
    assert dev.keys() == cpu.keys()
    for k in dev:
        assert torch.allclose(dev[k], cpu[k], atol=1e-3), (k, (dev[k] - cpu[k]).abs().max().item())
    low = _train(name, DEVICE, tmp_path / "bf16", bf16=True)
    rows = [json.loads(x) for x in (low / "log.jsonl").read_text().splitlines()]
    assert len(rows) == d.STEPS and all(math.isfinite(r["loss"]) for r in rows)
    assert weights(low)
