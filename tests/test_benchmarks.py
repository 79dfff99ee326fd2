"""The dtype benchmark runs end to end at a tiny size and reports both dtypes and the one the harness picks."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_bench_dtype_prints_fp32_and_bf16_side_by_side_with_the_picked_dtype(tmp_path):
    from imprag_bench.harness.hardware import weight_dtype

    out = tmp_path / "dtype.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_dtype.py"), "--threads", "1",
                           "--rounds", "1", "--matmul-seconds", "0.05", "--minilm-passages", "2", "--lm-passages", "2",
                           "--no-train", "--reader-examples", "1", "--quick-estimate", "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["picked"] == weight_dtype("auto", "cpu")
    assert len(res["rows"]) == 4 and all(v["fp32"] > 0 and v["bf16"] > 0 for v in res["rows"].values())
    assert res["quick_estimate"]["minilm_index_s_estimated"] > 0
    assert "harness picks" in proc.stdout and "bf16/fp32" in proc.stdout


@pytest.mark.integration
def test_bench_train_memory_measures_every_system_and_plans_both_models_at_a_tiny_size(tmp_path):
    out = tmp_path / "mem.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_train_memory.py"), "--tiny",
                           "--threads", "1", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["models"]) == {"llama-3.2-3b", "llama-3.1-8b"}
    assert {"imprag", "reader", "slice"} <= set(res["models"]["llama-3.2-3b"]["systems"])
    rows = res["plan"]
    assert {r["system"] for r in rows} >= {"imprag (warmup)", "imprag (distill)", "ra-dit-llama retriever (distill)"}
    for r in rows:  # each row adds up, and a one-unit system (the retriever copies) carries its whole bf16 weights
        parts = r["weights_gb"] + r["grads_gb"] + r["optimizer_gb"] + r["activations_gb"]
        assert abs(parts - r["total_gb"]) < 1e-6
        if r["system"].startswith("ra-dit-llama retriever"):
            assert r["weights_gb"] >= 2 * r["params_b"]
        if r["system"].startswith(("reader", "imprag")):
            assert r["weights_gb"] < 2 * r["params_b"]  # one unit per layer: only the root and two layers whole
    assert "Per GPU" in proc.stdout


def test_scale_plan_projects_hours_per_stage_for_both_paper_presets(tmp_path):
    out = tmp_path / "plan.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "scale_plan.py"), "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    small, big = (res["models"][n]["reproduce"] for n in ("Llama-3.2-3B", "Llama-3.1-8B"))
    for r in (small, big):
        assert {"train imprag", "train ra-it", "train ra-dit", "train ra-dit-llama"} <= set(r["gpu_hours"])
        assert abs(sum(r["gpu_hours"].values()) - r["gpu_hours_total"]) < 0.01 * r["gpu_hours_total"]
        assert r["paper_gpu_hours"]["imprag"] == 160 and "no GPU measurement" in r["source"]
    assert all(big["gpu_hours"][k] >= small["gpu_hours"][k] for k in small["gpu_hours"])  # 8B costs more
    assert "paper-8b" in proc.stdout and "| **total** |" in proc.stdout
