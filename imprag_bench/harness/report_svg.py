"""The seen-vs-unseen chart as inline SVG: EM per group per system, with 95% interval whiskers.

Drawn in Python (not JS) so it is in the file itself, testable without a browser, and shows even with
scripts disabled. Every piece of text goes through html.escape, so labels from the data cannot inject markup.
"""
from __future__ import annotations

import math
from html import escape

# Tableau-10: distinguishable, colour-blind friendly enough for up to ten systems (then it cycles).
PALETTE = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
           "#9c755f", "#bab0ac")


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def group_chart(rows: list[dict], systems: list[str], groups: list[str], metric: str = "em") -> str:
    """Grouped bars: one cluster per group row ("ALL:seen", ...), one bar per system, whiskers lo..hi.

    rows: leaderboard rows (dicts with system, task, metric, metric_lo, metric_hi); groups: the task
    names of the group rows in display order. Missing cells are left empty. Returns an <svg> string.
    """
    cell = {(r["system"], r["task"]): r for r in rows}
    vals = [_num(cell[s, g].get(f"{metric}_hi", cell[s, g].get(metric))) for s in systems for g in groups
            if (s, g) in cell]
    top = max([v for v in vals if v is not None] + [1.0])
    step = next(s for s in (1, 2, 5, 10, 20, 25) if top / s <= 6)  # at most 6 round ticks
    top = min(100.0, math.ceil(top / step) * step)
    bar = 18
    gap = max(28, 110 - len(systems) * bar)  # a cluster is at least as wide as "unseen-format"
    width_plot = max(1, len(groups)) * (max(1, len(systems)) * bar + gap)
    left, right, top_pad, bottom = 48, 16, 16, 64
    legend_rows = math.ceil(len(systems) / 4)
    height_plot = 240
    w = max(left + width_plot + right, left + 4 * 170 + right)
    h = top_pad + height_plot + bottom + 18 * legend_rows
    y = lambda v: top_pad + height_plot * (1 - v / top)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" role="img" aria-label="{escape(metric.upper())} per group and system">']
    for t in range(0, int(top) + 1, step):
        yy = y(t)
        out.append(f'<line x1="{left}" x2="{left + width_plot}" y1="{yy:.1f}" y2="{yy:.1f}" class="grid"/>'
                   f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end" class="tick">{t}</text>')
    out.append(f'<text x="12" y="{top_pad + height_plot / 2:.0f}" class="axis" '
               f'transform="rotate(-90 12 {top_pad + height_plot / 2:.0f})" text-anchor="middle">'
               f'{escape(metric.upper())} (%)</text>')
    for gi, g in enumerate(groups):
        x0 = left + gi * (len(systems) * bar + gap) + gap / 2
        for si, s in enumerate(systems):
            r = cell.get((s, g))
            v = _num(r.get(metric)) if r else None
            if v is None:
                continue
            x = x0 + si * bar
            color = PALETTE[si % len(PALETTE)]
            lo, hi = _num(r.get(f"{metric}_lo")), _num(r.get(f"{metric}_hi"))
            tip = f"{s} · {g}: {v:.1f}" + (f" [{lo:.1f}, {hi:.1f}]" if lo is not None and hi is not None else "")
            out.append(f'<rect x="{x + 1:.1f}" y="{y(v):.1f}" width="{bar - 2}" height="{max(0.0, y(0) - y(v)):.1f}" '
                       f'fill="{color}"><title>{escape(tip)}</title></rect>')
            if lo is not None and hi is not None:
                cx = x + bar / 2
                out.append(f'<path d="M{cx:.1f} {y(lo):.1f}V{y(hi):.1f}M{cx - 4:.1f} {y(lo):.1f}h8'
                           f'M{cx - 4:.1f} {y(hi):.1f}h8" class="whisker"/>')
        label = g[4:] if g.startswith("ALL:") else g
        out.append(f'<text x="{x0 + len(systems) * bar / 2:.1f}" y="{top_pad + height_plot + 18}" '
                   f'text-anchor="middle" class="glabel">{escape(label)}</text>')
    ly = top_pad + height_plot + 42
    for si, s in enumerate(systems):
        lx = left + (si % 4) * 170
        yy = ly + (si // 4) * 18
        out.append(f'<rect x="{lx}" y="{yy - 10}" width="12" height="12" fill="{PALETTE[si % len(PALETTE)]}"/>'
                   f'<text x="{lx + 17}" y="{yy}" class="legend">{escape(s[:24])}</text>')
    out.append("</svg>")
    return "".join(out)
