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
