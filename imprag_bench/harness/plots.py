"""Bar charts of a leaderboard (imprag_bench.harness.report.leaderboard): one bar per system, 95% CI error bars.

`plot_groups` is the headline figure (seen vs unseen task groups); `plot_tasks` breaks it down per task.
Both draw EM and retrieval recall side by side; tasks without recall (FEVER) get no recall bar and an
"n/a" mark. Uses matplotlib's object API with the Agg renderer (no display, no pyplot global state) and
writes each PNG atomically.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from imprag_bench.harness.errors import UserError  # noqa: E402
from imprag_bench.harness.io import atomic_write  # noqa: E402

GROUP_ORDER = ("seen", "unseen-qa", "unseen-format", "all")
METRICS = (("em", "Exact match (%)"), ("recall", "Retrieval recall (%)"))


def _save(fig: Figure, out_png: str | os.PathLike) -> Path:
    """Render atomically (imprag_bench.harness.io): readers never see half a PNG."""
    return atomic_write(out_png, lambda f: fig.savefig(f, format="png", dpi=150, bbox_inches="tight"), binary=True)


def _bars(ax, table: pd.DataFrame, xkeys: list[str], xcol: str, metric: str, label_values: bool) -> None:
    """Grouped bars: x positions are `xkeys` (values of `xcol`), one bar per system, CI error bars."""
    systems = list(dict.fromkeys(table["system"]))
    width = 0.8 / max(1, len(systems))
    x = np.arange(len(xkeys))
    colors = matplotlib.colormaps["tab10"]
    top = 0.0
    for i, system in enumerate(systems):
        sub = table[table["system"] == system].set_index(xcol)
        vals = np.array([sub[metric].get(k, math.nan) for k in xkeys], dtype=float)
        lo = np.array([sub[f"{metric}_lo"].get(k, math.nan) for k in xkeys], dtype=float)
        hi = np.array([sub[f"{metric}_hi"].get(k, math.nan) for k in xkeys], dtype=float)
        ok = np.isfinite(vals)
        err = np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)])[:, ok]
        pos = x[ok] - 0.4 + width * (i + 0.5)
        bars = ax.bar(pos, vals[ok], width, yerr=err, capsize=3, color=colors(i % 10),
                      label=system if metric == "em" else None, error_kw={"elinewidth": 1})
        if label_values and ok.any():
            ax.bar_label(bars, fmt="%.1f", label_type="center", fontsize=7, color="white")
        top = max(top, np.nanmax(np.append(hi[ok], vals[ok])) if ok.any() else 0.0)
    for j, k in enumerate(xkeys):
        if not table[table[xcol] == k][metric].notna().any():
            ax.text(x[j], 1, "n/a", ha="center", va="bottom", fontsize=8, color="0.4")
    ax.set_ylim(0, min(100.0, max(5.0, top * 1.15)))
    ax.set_xticks(x)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _legend(fig: Figure, axes) -> None:
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5), frameon=False)


def plot_groups(df: pd.DataFrame, out_png: str | os.PathLike) -> Path:
    """Headline figure: EM and recall by task group (seen / unseen-qa / unseen-format / all).

    Uses the leaderboard's pooled "ALL:<group>" rows; x labels list each group's tasks. Returns the path.
    """
    rows = df[df["task"].astype(str).str.startswith("ALL:")]
    if rows.empty:
        raise UserError("leaderboard has no group rows (task 'ALL:...') to plot")
    present = set(rows["group"])
    groups = [g for g in GROUP_ORDER if g in present] + sorted(present - set(GROUP_ORDER))
    task_rows = df[~df["task"].astype(str).str.startswith("ALL:")]
    labels = []
    for g in groups:
        members = list(dict.fromkeys(task_rows["task"] if g == "all" else task_rows[task_rows["group"] == g]["task"]))
        inner = f"{len(members)} tasks" if g == "all" else ", ".join(members)
        labels.append(f"{g}\n({inner})" if members else g)
    fig = Figure(figsize=(max(10.0, 3.2 * len(groups)), 5.0), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (metric, title) in zip(axes, METRICS):
        _bars(ax, rows, groups, "group", metric, label_values=True)
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_title(title)
    if "fever" in set(task_rows["task"]):
        axes[1].set_title("Retrieval recall (%), FEVER excluded (no recall)")
    fig.suptitle("Seen vs unseen tasks (pooled over examples, 95% bootstrap CI)")
    _legend(fig, axes)
    return _save(fig, out_png)


def plot_tasks(df: pd.DataFrame, out_png: str | os.PathLike) -> Path:
    """Per-task figure: EM (top) and recall (bottom) for every task row, one bar per system.

    Tasks with no recall (FEVER) show "n/a" instead of a recall bar. Returns the path written.
    """
    rows = df[~df["task"].astype(str).str.startswith("ALL:")]
    if rows.empty:
        raise UserError("leaderboard has no per-task rows to plot")
    tasks = list(dict.fromkeys(rows["task"]))
    group_of = dict(zip(rows["task"], rows["group"]))
    n_sys = rows["system"].nunique()
    fig = Figure(figsize=(max(8.0, 0.5 * len(tasks) * max(2, n_sys) + 2), 7.5), layout="constrained")
    axes = fig.subplots(2, 1)
    for ax, (metric, title) in zip(axes, METRICS):
        _bars(ax, rows, tasks, "task", metric, label_values=False)
        ax.set_xticklabels([f"{t}\n({group_of[t]})" for t in tasks], fontsize=8)
        ax.set_ylabel(title)
    fig.suptitle("Per-task scores (95% bootstrap CI)")
    _legend(fig, axes)
    return _save(fig, out_png)
