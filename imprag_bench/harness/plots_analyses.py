"""The figures of harness.analyses: the layer-boundary sweep in Figure 2's layout (EM and recall against b with t
fixed and against t with b fixed, ours with 95% intervals as solid lines, the paper's Llama-3.2-3B values dashed
and labelled as a reference) and the retrievers' learning curve."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from imprag_bench.harness.paper_values import FIG2_B, FIG2_B_AT_T, FIG2_T, FIG2_T_AT_B  # noqa: E402
from imprag_bench.harness.plots import _save  # noqa: E402

COLORS = {"em": "#1f6fb4", "recall": "#d9730d"}


def plot_sweep(sweep: pd.DataFrame, out_png: str | os.PathLike) -> Path:
    """Two panels from sweep.csv rows (panel b: t fixed, panel t: b fixed; a `both` row belongs to each)."""
    fig = Figure(figsize=(11, 4.2))
    for ax, axis, paper, fixed, paper_fixed in ((fig.add_subplot(1, 2, 1), "b", FIG2_B, "t", FIG2_B_AT_T),
                                                (fig.add_subplot(1, 2, 2), "t", FIG2_T, "b", FIG2_T_AT_B)):
        rows = sweep[sweep["panel"].isin([axis, "both"])].sort_values(axis)
        for i, (metric, name) in enumerate((("em", "EM"), ("recall", "recall"))):
            c = COLORS[metric]
            ax.errorbar(rows[axis], rows[metric], yerr=[rows[metric] - rows[f"{metric}_lo"],
                                                        rows[f"{metric}_hi"] - rows[metric]],
                        color=c, marker="o", capsize=3, label=f"ours: {name}")
            xs = sorted(paper)
            ax.plot(xs, [paper[x][i] for x in xs], color=c, ls="--", alpha=0.6, label=f"paper (Llama-3.2-3B): {name}")
        fixed_at = ", ".join(str(v) for v in sorted(set(rows[fixed])))
        ax.set_title(f"vary {axis} (ours: {fixed} = {fixed_at}; paper: {fixed} = {paper_fixed})")
        ax.set_xlabel(f"{axis}: last layer of the {'retrieval' if axis == 'b' else 'reading'} group")
        ax.set_ylabel("NQ dev, %")
        ax.grid(alpha=0.3)
    fig.axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _save(fig, out_png)


def plot_curve(curve: pd.DataFrame, out_png: str | os.PathLike) -> Path:
    """Recall@k against retrieval-training steps (log scale), one panel per task, one line per system family,
    with 95% intervals."""
    tasks = list(dict.fromkeys(curve["task"]))
    fig = Figure(figsize=(5.2 * len(tasks), 4))
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), i + 1)
        for family, rows in curve[curve["task"] == task].groupby("family", sort=True):
            rows = rows.sort_values("retrieval_steps")
            ax.errorbar(rows["retrieval_steps"], rows["recall"], marker="o", capsize=3, label=family,
                        yerr=[rows["recall"] - rows["recall_lo"], rows["recall_hi"] - rows["recall"]])
        ax.set_xscale("log")
        ax.set_title(f"{task} (dev)")
        ax.set_xlabel("retrieval-training steps")
        ax.set_ylabel("recall@k, %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out_png)
