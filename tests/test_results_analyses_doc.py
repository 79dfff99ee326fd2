"""docs/results.md's analysis tables (layer sweep, learning curve, objective ablation, pooling) are typed from
the committed CSVs: each row must agree with its CSV, so a rerun that changes a number cannot leave the prose
table stale."""
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "results.md").read_text()


def cell(value: float, lo: float, hi: float) -> str:
    return f"{value:.1f} [{lo:.1f}, {hi:.1f}]"


def test_layer_sweep_table_matches_sweep_csv():
    sweep = pd.read_csv(ROOT / "results" / "layer-sweep" / "sweep.csv")
    assert len(sweep) >= 6
    for r in sweep.itertuples():
        row = (f"| {r.b} | {r.t} | {cell(r.em, r.em_lo, r.em_hi)} | {cell(r.recall, r.recall_lo, r.recall_hi)} "
               f"| {r.distinct_top1} | {r.train_wall_s:.0f} |")
        assert row in DOC, row


def test_learning_curve_table_matches_curve_csv():
    curve = pd.read_csv(ROOT / "results" / "learning-curve" / "curve.csv")
    columns = [("imprag", "nq"), ("imprag", "trex"), ("ra-dit-llama", "nq"), ("ra-dit-llama", "trex")]
    at = curve.set_index(["retrieval_steps", "family", "task"])
    steps = sorted(curve["retrieval_steps"].unique())
    assert len(steps) >= 4 and steps[-1] / steps[0] >= 30
    for s in steps:
        cells = []
        for family, task in columns:
            r = at.loc[(s, family, task)]
            cells.append(f"{cell(r['recall'], r['recall_lo'], r['recall_hi'])} / {r['distinct_top1']}")
        row = f"| {s} | " + " | ".join(cells) + " |"
        assert row in DOC, row


def test_objective_ablation_table_matches_leaderboard_and_table3():
    run = ROOT / "results" / "objective-ablation"
    board = pd.read_csv(run / "leaderboard.csv").set_index(["system", "task"])
    paper = pd.read_csv(run / "table3.csv").query("task == 'avg' and source != 'ours'").set_index("objective")
    rows = [("imprag-warmup-only", "warmup-only"), ("imprag-distill-only", "distill-only"), ("imprag-both", "both"),
            ("closed-book", None)]
    for label, objective in rows:
        a = board.loc[(label, "ALL:all")]
        recall = "–" if pd.isna(a["recall"]) else cell(a["recall"], a["recall_lo"], a["recall_hi"])
        groups = " | ".join(f"{board.loc[(label, 'ALL:' + g), 'em']:.1f}"
                            for g in ("seen", "unseen-qa", "unseen-format"))
        top1 = board.loc[label]["distinct_top1"].dropna()
        top1 = f"{int(top1.min())}-{int(top1.max())}" if len(top1) else "–"
        theirs = f"{paper.loc[objective, 'em']:.1f} ({paper.loc[objective, 'recall']:.1f})" if objective else "–"
        row = f"| {label} | {cell(a['em'], a['em_lo'], a['em_hi'])} | {recall} | {groups} | {top1} | {theirs} |"
        assert row in DOC, row


def test_pooling_table_matches_leaderboard():
    board = pd.read_csv(ROOT / "results" / "pooling" / "leaderboard.csv").set_index(["system", "task"])
    systems = list(board.index.get_level_values("system").unique())
    assert len(systems) == 12
    for system in systems:
        nq, trex = board.loc[(system, "nq")], board.loc[(system, "trex")]
        row = (f"| {system} | {nq['em']:.1f} | {cell(nq['recall'], nq['recall_lo'], nq['recall_hi'])} | "
               f"{trex['em']:.1f} | {cell(trex['recall'], trex['recall_lo'], trex['recall_hi'])} | "
               f"{int(nq['distinct_top1'])}, {int(trex['distinct_top1'])} |")
        assert row in DOC, row
