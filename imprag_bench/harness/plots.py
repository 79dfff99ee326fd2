"""Figures of a leaderboard (imprag_bench.harness.report.leaderboard) and a paired table (harness.paired).

`plot_headline` is the headline figure: per task group (columns: seen, unseen-qa, unseen-format, all), a dot
plot of every system's EM and recall with 95% intervals, then the paired deltas of the reference system
against each baseline with their intervals, a zero line and the significant ones filled. `plot_groups` is
its first two rows (no paired table needed); `plot_tasks` draws the same dot rows per task.

Legible at 10+ systems: one row per system (horizontal dots and whiskers, never stacked bars), values
written in a column in each panel's right margin (one per row, so they cannot collide), constrained layout
so nothing is cut, and system families (the label up to ':' or a known family name, `family`) share a
hue with shades and marker shapes within the family. Uses matplotlib's object API with the Agg renderer
(no display, no pyplot global state) and writes each PNG atomically.
"""
from __future__ import annotations

import colorsys
import math
import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from imprag_bench.harness.errors import UserError  # noqa: E402
from imprag_bench.harness.io import atomic_write  # noqa: E402

GROUP_ORDER = ("seen", "unseen-qa", "unseen-format", "all")


def _save(fig: Figure, out_png: str | os.PathLike) -> Path:
    """Render atomically (imprag_bench.harness.io): readers never see half a PNG."""
    return atomic_write(out_png, lambda f: fig.savefig(f, format="png", dpi=150, bbox_inches="tight"), binary=True)


def plot_groups(df: pd.DataFrame, out_png: str | os.PathLike) -> Path:
    """EM and recall by task group (seen / unseen-qa / unseen-format / all), one dot row per system with its
    95% interval: the score rows of `plot_headline` (no paired table). Returns the path written."""
    return plot_headline(df, None, out_png)


def plot_tasks(df: pd.DataFrame, out_png: str | os.PathLike, per_row: int = 4) -> Path:
    """Per-task figure: EM then recall for every task row, `per_row` tasks per row of panels, one dot row per
    system with its 95% interval (tasks without recall, e.g. FEVER, read "n/a"). Returns the path written."""
    return _save(tasks_figure(df, per_row), out_png)


# --- system families, colours, the headline dot plot ---

FAMILIES = ("closed-book", "bm25", "dense", "ra-it", "ra-dit", "ra-dit-llama", "imprag")  # order of the rows
MARKERS = "osD^vP*Xh<>p"
DELTA_TITLE = {"em": "EM", "recall": "recall"}


def family(label: str, families: Sequence[str] = FAMILIES) -> str:
    """A system's family: the longest known family name the label is, or starts with followed by '-' (e.g.
    imprag-paper, ra-dit-llama); else the label up to its first ':'. Options after ':' never matter
    (imprag:cpu-additions, bm25:query=oracle)."""
    base = str(label).split(":", 1)[0]
    hits = [f for f in families if base == f or base.startswith(f + "-")]
    return max(hits, key=len) if hits else base


def system_order(systems, families: Sequence[str] = FAMILIES) -> list[str]:
    """Systems grouped by family (known families in `families` order, others alphabetically after them);
    within a family the plain family name first, then alphabetical."""
    rank = {f: i for i, f in enumerate(families)}
    return sorted(dict.fromkeys(systems), key=lambda s: (rank.get(family(s, families), len(rank)),
                                                         family(s, families), s != family(s, families), s))


def family_styles(systems, families: Sequence[str] = FAMILIES) -> dict[str, tuple[tuple, str]]:
    """(colour, marker) per system: one hue per family (tab10, then tab20), shades of it and different
    marker shapes within a family, so variants of one system read as one family but stay distinct."""
    ordered = system_order(systems, families)
    fams = list(dict.fromkeys(family(s, families) for s in ordered))
    cmap = matplotlib.colormaps["tab10" if len(fams) <= 10 else "tab20"]
    out = {}
    for fi, fam in enumerate(fams):
        members = [s for s in ordered if family(s, families) == fam]
        h, light, sat = colorsys.rgb_to_hls(*to_rgb(cmap(fi % cmap.N)))
        shades = [light] if len(members) == 1 else np.linspace(max(0.22, light - 0.18), min(0.62, light + 0.16),
                                                               len(members))
        for j, s in enumerate(members):
            out[s] = (colorsys.hls_to_rgb(h, float(shades[j]), sat), MARKERS[j % len(MARKERS)])
    return out


def _groups(rows: pd.DataFrame) -> list[str]:
    present = set(rows["group"])
    return [g for g in GROUP_ORDER if g in present] + sorted(present - set(GROUP_ORDER))


def _group_titles(df: pd.DataFrame, groups: list[str]) -> list[str]:
    task_rows = df[~df["task"].astype(str).str.startswith("ALL:")]
    out = []
    for g in groups:
        members = list(dict.fromkeys(task_rows["task"] if g == "all" else task_rows[task_rows["group"] == g]["task"]))
        inner = f"{len(members)} tasks" if g == "all" else ", ".join(members)
        out.append(f"{g}\n({inner})" if members else g)
    return out


def _dot_row(axes, items: list[str], values: dict, styles: dict, xlim: tuple[float, float], fmt: str,
             ylabel: str, xlabel: str, zero: bool) -> None:
    """One figure row: a dot with whiskers per (item, column), the value in each panel's right margin."""
    for col, (ax, vals) in enumerate(zip(axes, values)):
        margin = blended_transform_factory(ax.transAxes, ax.transData)
        for y, item in enumerate(items):
            if y % 2 == 0:
                ax.axhspan(y - 0.5, y + 0.5, color="0.95", zorder=0, lw=0)
            colour, marker = styles[item]
            v, lo, hi, sig = vals.get(item, (math.nan,) * 3 + (None,))
            if not np.isfinite(v):
                ax.text(1.03, y, "n/a", transform=margin, ha="left", va="center", fontsize=7, color="0.5")
                continue
            err = [[max(0.0, v - lo)], [max(0.0, hi - v)]] if np.isfinite(lo) and np.isfinite(hi) else None
            filled = sig is None or bool(sig)
            ax.errorbar([v], [y], xerr=err, fmt=marker, color=colour, mfc=colour if filled else "white",
                        mec=colour, ms=5, capsize=2, elinewidth=1.2, zorder=3)
            ax.text(1.03, y, (fmt % v) + ("*" if sig else ""), transform=margin, ha="left", va="center",
                    fontsize=7, color=colour)
        ax.set_ylim(len(items) - 0.5, -0.5)
        ax.set_yticks(range(len(items)))
        ax.set_yticklabels(items if col == 0 else [], fontsize=8)
        if col == 0:
            for tick, item in zip(ax.get_yticklabels(), items):
                tick.set_color(styles[item][0])
            ax.set_ylabel(ylabel, fontsize=9)
        ax.tick_params(axis="y", length=0)
        ax.tick_params(axis="x", labelsize=7)
        ax.set_xlim(*xlim)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        if zero:
            ax.axvline(0.0, color="0.3", lw=0.8, zorder=1)


def _score_values(rows: pd.DataFrame, metric: str, keys: list[str], col: str = "group") -> list[dict]:
    out = []
    for g in keys:
        sub = rows[rows[col] == g]
        out.append({s: (float(v), float(lo), float(hi), None) for s, v, lo, hi in
                    zip(sub["system"], sub[metric], sub[f"{metric}_lo"], sub[f"{metric}_hi"]) if pd.notna(v)})
    return out


def _delta_values(pr: pd.DataFrame, metric: str, groups: list[str]) -> list[dict]:
    out = []
    for g in groups:
        sub = pr[(pr["scope"] == f"ALL:{g}") & (pr["metric"] == metric)]
        out.append({b: (float(d), float(lo), float(hi), bool(sig) if pd.notna(lo) else None) for b, d, lo, hi, sig in
                    zip(sub["baseline"], sub["delta"], sub["lo"], sub["hi"], sub["significant"]) if pd.notna(d)})
    return out


def _limits(values: list[dict], zero: bool) -> tuple[float, float]:
    ends = [x for vals in values for v, lo, hi, _ in vals.values() for x in (v, lo, hi) if np.isfinite(x)]
    if zero:
        m = max([abs(x) for x in ends] + [1.0]) * 1.08
        return -m, m
    top = max(5.0, max(ends, default=0.0) * 1.08)
    return -0.02 * min(top, 100.0), min(top, 102.0)  # room either side so a dot at 0 or 100 is drawn whole


def _paired_for(paired: pd.DataFrame, reference: str | None, baselines: Sequence[str] | None,
                families: Sequence[str]) -> tuple[str, pd.DataFrame, list[str]]:
    refs = list(dict.fromkeys(paired["reference"]))
    if reference is None:
        if len(refs) != 1:
            raise UserError(f"paired table has references {', '.join(map(str, refs))}: name one")
        reference = refs[0]
    pr = paired[paired["reference"] == reference]
    if pr.empty:
        raise UserError(f"paired table has no rows with reference {reference!r}")
    have = list(dict.fromkeys(pr["baseline"]))
    if baselines is None:  # the other families: the explicit-query baselines (and closed-book)
        baselines = [b for b in have if family(b, families) != family(reference, families)]
    missing = [b for b in baselines if b not in have]
    if missing:
        raise UserError(f"paired table has no rows for baseline(s) {', '.join(missing)} (reference {reference!r})")
    return reference, pr, system_order(baselines, families)


def headline_figure(df: pd.DataFrame, paired: pd.DataFrame | None = None, reference: str | None = None,
                    baselines: Sequence[str] | None = None, delta_metrics: Sequence[str] = ("em", "recall"),
                    families: Sequence[str] = FAMILIES) -> Figure:
    """The headline Figure (see plot_headline); returned unsaved so tests can measure its layout."""
    rows = df[df["task"].astype(str).str.startswith("ALL:")]
    if rows.empty:
        raise UserError("leaderboard has no group rows (task 'ALL:...') to plot")
    groups = _groups(rows)
    systems = system_order(rows["system"], families)
    panels = [(systems, _score_values(rows, m, groups), "%.1f", label, f"{label} (%)", False)
              for m, label in (("em", "EM"), ("recall", "recall"))]
    if paired is not None and len(paired):
        reference, pr, bases = _paired_for(paired, reference, baselines, families)
        for m in delta_metrics:
            panels.append((bases, _delta_values(pr, m, groups), "%+.1f",
                           f"{reference}\nminus baseline", f"Δ {DELTA_TITLE.get(m, m)} (points)", True))
    styles = family_styles(list(systems) + [b for p in panels for b in p[0]], families)
    heights = [len(p[0]) + 2.2 for p in panels]
    fig = Figure(figsize=(2.2 + 3.0 * len(groups), 0.26 * sum(heights) + 1.0), layout="constrained")
    axes = fig.subplots(len(panels), len(groups), squeeze=False, gridspec_kw={"height_ratios": heights})
    for r, (items, values, fmt, ylabel, xlabel, zero) in enumerate(panels):
        _dot_row(axes[r], items, values, styles, _limits(values, zero), fmt, ylabel, xlabel, zero)
    for ax, title in zip(axes[0], _group_titles(df, groups)):
        ax.set_title(title, fontsize=9)
    notes = ["95% bootstrap intervals, pooled over each group's examples"]
    if "fever" in set(df["task"]):
        notes.append("recall excludes FEVER (no recall)")
    if len(panels) > 2:
        notes.append("deltas: paired bootstrap; filled / * = interval excludes 0")
    fig.suptitle("Seen vs unseen tasks", fontsize=11)
    fig.supxlabel("; ".join(notes), fontsize=8)
    return fig


def tasks_figure(df: pd.DataFrame, per_row: int = 4, families: Sequence[str] = FAMILIES) -> Figure:
    """The per-task Figure (see plot_tasks); returned unsaved so tests can measure its layout."""
    rows = df[~df["task"].astype(str).str.startswith("ALL:")]
    if rows.empty:
        raise UserError("leaderboard has no per-task rows to plot")
    tasks = list(dict.fromkeys(rows["task"]))
    group_of = dict(zip(rows["task"], rows["group"]))
    systems = system_order(rows["system"], families)
    styles = family_styles(systems, families)
    chunks = [tasks[i:i + per_row] for i in range(0, len(tasks), per_row)]
    ncols = min(per_row, len(tasks))
    fig = Figure(figsize=(2.2 + 3.0 * ncols, (0.26 * (len(systems) + 2.6)) * 2 * len(chunks) + 1.0),
                 layout="constrained")
    axes = fig.subplots(2 * len(chunks), ncols, squeeze=False)
    for m, (metric, label) in enumerate((("em", "EM"), ("recall", "recall"))):
        values = _score_values(rows, metric, tasks, col="task")
        xlim = _limits(values, zero=False)
        for c, chunk in enumerate(chunks):
            r = m * len(chunks) + c
            vals = values[c * per_row:c * per_row + len(chunk)]
            _dot_row(axes[r][:len(chunk)], systems, vals, styles, xlim, "%.1f", label, f"{label} (%)", False)
            for ax, t in zip(axes[r], chunk):
                ax.set_title(f"{t} ({group_of[t]})", fontsize=9)
            for ax in axes[r][len(chunk):]:
                ax.set_axis_off()
    fig.suptitle("Per-task scores (95% bootstrap intervals)", fontsize=11)
    return fig


def plot_headline(df: pd.DataFrame, paired: pd.DataFrame | None, out_png: str | os.PathLike,
                  reference: str | None = None, baselines: Sequence[str] | None = None,
                  delta_metrics: Sequence[str] = ("em", "recall"), families: Sequence[str] = FAMILIES) -> Path:
    """Headline figure: columns are the task groups (seen, unseen-qa, unseen-format, all); rows are EM and
    recall per system (leaderboard group rows, 95% intervals), then for each of `delta_metrics` the paired
    delta `reference - baseline` (harness.paired table, scope "ALL:<group>") with its interval, a zero line,
    significant ones filled and starred. `reference` defaults to the paired table's only reference;
    `baselines` to every baseline of another family. `paired=None` draws the score rows only. Returns the path."""
    return _save(headline_figure(df, paired, reference, baselines, delta_metrics, families), out_png)
