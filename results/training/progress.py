"""Recall and EM of ImpRAG checkpoints against training time, per task group, next to reference systems.

Usage (leaderboards written by `imprag-bench run`; minutes from the training log's `elapsed_s`):
  .venv/bin/python results/training/progress.py --out results/training/progress \
      --point "untrained" 0 runs/eval/leaderboard.csv "imprag:l_max=64,bf16=true" \
      --point "quick warmup" 5.1 runs/eval/leaderboard.csv "imprag warmup" ... \
      --ref "dense (MiniLM)" runs/eval/leaderboard.csv dense --ref closed-book runs/eval/leaderboard.csv closed-book
Writes <out>.csv (one row per point/reference and task group) and <out>.png (recall left, EM right).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def rows(label: str, minutes: float | None, board: str, system: str) -> pd.DataFrame:
    """The group rows (`ALL:<group>`) of one system in one leaderboard, labelled."""
    df = pd.read_csv(board)
    df = df[(df.system == system) & df.task.str.startswith("ALL:")]
    if df.empty:
        raise SystemExit(f"{board}: no group rows for system {system!r} (systems: {sorted(set(pd.read_csv(board).system))})")
    return df.assign(label=label, minutes=minutes)[["label", "minutes", "group", "n", "em", "em_lo", "em_hi",
                                                    "recall", "recall_lo", "recall_hi"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--point", nargs=4, action="append", default=[], metavar=("LABEL", "MIN", "CSV", "SYSTEM"))
    ap.add_argument("--ref", nargs=3, action="append", default=[], metavar=("LABEL", "CSV", "SYSTEM"))
    ap.add_argument("--group", default="seen")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    pts = pd.concat([rows(lb, float(m), c, s) for lb, m, c, s in a.point])
    refs = pd.concat([rows(lb, None, c, s) for lb, c, s in a.ref]) if a.ref else pts.iloc[:0]
    table = pd.concat([pts, refs])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(f"{a.out}.csv", index=False)
    print(table.to_string(index=False))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, metric in zip(axes, ("recall", "em")):
        g = pts[pts.group == a.group]
        for lb, x, y, lo, hi in zip(g.label, g.minutes, g[metric], g[f"{metric}_lo"], g[f"{metric}_hi"]):
            ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], fmt="o", capsize=3)
            ax.annotate(lb, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for i, (lb, y) in enumerate(zip(refs[refs.group == a.group].label, refs[refs.group == a.group][metric])):
            if pd.notna(y):
                ax.axhline(y, ls="--", lw=1, color=f"C{i + 5}", label=lb)
        ax.set_xlabel("training time (min)")
        ax.set_ylabel(f"{a.group} {metric} (%)")
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"ImpRAG on mini-KILT {a.group} dev: retrieval recall and EM vs training time (95% CI)")
    fig.tight_layout()
    fig.savefig(f"{a.out}.png", dpi=120)


if __name__ == "__main__":
    main()
