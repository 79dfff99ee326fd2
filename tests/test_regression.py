"""The committed quick run's predictions are reproduced byte for byte by the current code (closed-book and
bm25 on three tasks of results/quick: the same examples, prompts, retrieved ids, predictions and scores), so a
refactoring that changes what a system answers cannot pass unnoticed."""
import json
from pathlib import Path

import pytest

from imprag_bench.harness.cli import main

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "quick"


@pytest.mark.integration
def test_quick_preset_predictions_are_unchanged(tmp_path, one_thread):
    cfg = json.loads((COMMITTED / "config.json").read_text())
    tasks, systems = ["nq", "fever", "aida"], ["closed-book", "bm25"]
    assert main(["run", "--preset", "quick", "--tasks", *tasks, "--systems", *systems, "--n", str(cfg["n"]),
                 "--dtype", cfg.get("dtype", "float32"),
                 "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache")]) == 0
    for system in systems:
        for task in tasks:
            got = (tmp_path / "run" / "preds" / system / f"{task}.jsonl").read_bytes()
            assert got == (COMMITTED / "preds" / system / f"{task}.jsonl").read_bytes(), (system, task)


def test_usage_presets_table_names_every_addition():
    """Each addition a training preset carries is explained in ADDITIONS and named in docs/usage.md's table."""
    from imprag_bench.harness.registry import TRAINERS
    from imprag_bench.harness.training.config import ADDITIONS
    readme = (ROOT / "docs" / "usage.md").read_text()
    table = readme.split("| setting | `paper` (the paper's recipe)", 1)[1].split("\n\n", 1)[0]
    carried = {a for name in TRAINERS.names() for cfg in TRAINERS.get(name).presets.values() for a in cfg.additions}
    assert carried and carried <= set(ADDITIONS)
    assert all(f"`{a}`" in table for a in carried), sorted(a for a in carried if f"`{a}`" not in table)
    from imprag_bench.harness.training.config import UNAVOIDABLE
    assert all(set(cfg.additions) <= set(UNAVOIDABLE) for name in TRAINERS.names()
               for b, cfg in TRAINERS.get(name).presets.items() if b == "paper")


def test_results_doc_headline_tables_are_generated_from_the_committed_csvs():
    import pandas as pd

    from imprag_bench.harness.paired import markdown_deltas
    from imprag_bench.harness.report import markdown_groups
    run = ROOT / "results" / "headline"
    systems = ["closed-book", "bm25", "bm25-oracle", "dense", "dense-oracle", "ra-it", "ra-dit", "ra-dit-llama",
               "ra-dit-llama-cpu-additions", "imprag", "imprag-cpu-additions"]
    baselines = [s for s in systems if s != "imprag"]
    readme = (ROOT / "docs" / "results.md").read_text()
    paired = pd.read_csv(run / "paired.csv")
    assert markdown_groups(pd.read_csv(run / "leaderboard.csv"), systems) in readme
    assert markdown_deltas(paired, "em", baselines, reference="imprag") in readme
    assert markdown_deltas(paired, "recall", baselines[1:], reference="imprag") in readme
    for metric in ("em", "recall"):  # the preset's matched pair: both sides with the CPU additions
        assert markdown_deltas(paired, metric, ["ra-dit-llama-cpu-additions"],
                               reference="imprag-cpu-additions") in readme


def test_results_doc_headline_wall_times_and_costs_match_the_committed_run():
    """docs/results.md's wall-time row and cost table are typed from manifest.json and costs.csv: they must agree."""
    import pandas as pd

    run = ROOT / "results" / "headline"
    readme = (ROOT / "docs" / "results.md").read_text()
    wall = json.loads((run / "manifest.json").read_text())["wall_s"]
    order = ["train:ra-it", "train:ra-dit", "train:ra-dit-llama", "train:ra-dit-llama-cpu-additions",
             "train:imprag", "train:imprag-cpu-additions", "eval", "stats", "costs"]
    assert set(order) == set(wall), sorted(wall)
    total = sum(wall.values())
    row = " | ".join(f"{wall[s]:.0f}" for s in order)
    assert f"| seconds | {row} | {total:,.0f} ({total / 3600:.1f} h) |" in readme
    costs = pd.read_csv(run / "costs.csv").set_index("system")
    for system, label in [("imprag", "ImpRAG"), ("ra-dit-llama", "RA-DIT-Llama"), ("ra-dit", "RA-DIT"),
                          ("closed-book", "closed-book")]:
        c = costs.loc[system]
        assert f"| {label} | {c['latency_s_per_example']:.2f} s | {c['params_total'] / 1e6:.1f} M" in readme, system
    assert f"RA-DIT-Llama takes {costs.loc['ra-dit-llama', 'latency_ratio']:.2f} times ImpRAG's time" in readme


def test_quick_preset_shows_all_three_families_and_its_doc_table_matches():
    """The quick preset runs closed-book, BM25 and ImpRAG, the ImpRAG labelled untrained; docs/results.md's quick
    table is the committed run's leaderboard."""
    import pandas as pd

    from imprag_bench.harness.config import SystemSpec, load_preset
    from imprag_bench.harness.report import markdown_groups
    specs = [SystemSpec.from_config(s) for s in load_preset("quick")["systems"]]
    assert {"closed-book", "bm25", "imprag"} <= {s.name for s in specs}
    assert all("untrained" in s.label for s in specs if s.name == "imprag")
    board = pd.read_csv(COMMITTED / "leaderboard.csv")
    assert set(board["system"]) == {s.label for s in specs}
    table = markdown_groups(board, [s.label for s in specs])
    assert table in (ROOT / "docs" / "results.md").read_text()
