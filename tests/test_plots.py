"""Tests for the headline figure (imprag_bench.harness.plots): families and hues, and a measured layout check on a
synthetic 12-system leaderboard with long labels: every label inside the figure, no two labels overlapping."""
import colorsys

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.paired import paired_table
from imprag_bench.harness.plots import (family, family_styles, headline_figure, plot_headline, system_order,
                                       tasks_figure)
from imprag_bench.harness.report import leaderboard

SYSTEMS = ["closed-book", "bm25", "bm25:query=oracle", "dense", "dense:query=oracle,encoder=minilm", "ra-it",
           "ra-dit", "ra-dit-llama", "ra-dit-llama:cpu-additions,stage0=true,refit=true", "imprag",
           "imprag:cpu-additions,stage0=true,refit=true", "imprag-paper-recipe-matched-budget"]
TASKS = [("nq", "seen"), ("hotpotqa", "seen"), ("simpleqa", "unseen-qa"), ("2wiki", "unseen-qa"),
         ("trex", "unseen-format"), ("zsre", "unseen-format"), ("fever", "unseen-format"), ("aida", "unseen-format")]


def _records(n=30, seed=0):
    rng = np.random.default_rng(seed)
    recs = []
    for si, s in enumerate(SYSTEMS):
        p = 0.1 + 0.06 * si
        for t, g in TASKS:
            for i in range(n):
                rc = None if (t == "fever" or s == "closed-book") else float(rng.random() < p + 0.2)
                recs.append({"system": s, "task": t, "group": g, "id": f"{t}-{i}", "em": float(rng.random() < p),
                             "f1": 0.0, "recall": rc})
    return recs


@pytest.fixture(scope="module")
def tables():
    recs = _records()
    return leaderboard(recs, n_boot=200), paired_table(recs, "imprag", n_boot=200)


def test_family():
    assert [family(s) for s in SYSTEMS] == ["closed-book", "bm25", "bm25", "dense", "dense", "ra-it", "ra-dit",
                                            "ra-dit-llama", "ra-dit-llama", "imprag", "imprag", "imprag"]
    assert family("newsys:x=1") == "newsys" and family("newsys-v2") == "newsys-v2"
    assert system_order(["imprag-b", "bm25", "imprag", "zz", "closed-book"]) == [
        "closed-book", "bm25", "imprag", "imprag-b", "zz"]


def test_family_hues_shared_and_shades_distinct():
    styles = family_styles(SYSTEMS)
    hue = {s: colorsys.rgb_to_hls(*to_rgb(c))[0] for s, (c, _) in styles.items()}
    fams = {}
    for s in SYSTEMS:
        fams.setdefault(family(s), []).append(s)
    for members in fams.values():
        assert len({round(hue[s], 3) for s in members}) == 1  # one hue per family
        assert len({styles[s][0] for s in members}) == len(members)  # distinct shades
        assert len({styles[s][1] for s in members}) == len(members)  # distinct markers
    assert len({round(hue[m[0]], 3) for m in fams.values()}) == len(fams)  # families differ in hue


def _boxes(fig):
    """(kind, text, window bbox) of every visible non-empty text, and the axes' bboxes."""
    FigureCanvasAgg(fig).draw()
    r = fig.canvas.get_renderer()
    texts = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):  # the drawn tick labels: those whose tick lies in the view
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks():
                lab = tick.label1
                if lo - 1e-9 <= tick.get_loc() <= hi + 1e-9 and lab.get_visible() and lab.get_text():
                    texts.append(("tick", lab.get_text(), lab.get_window_extent(r)))
        for t in ax.texts:
            texts.append(("value", t.get_text(), t.get_window_extent(r)))
        for t in (ax.title, ax.xaxis.label, ax.yaxis.label):
            if t.get_text():
                texts.append(("label", t.get_text(), t.get_window_extent(r)))
    for t in fig.texts + [t for t in (fig._suptitle, fig._supxlabel) if t is not None]:
        texts.append(("label", t.get_text(), t.get_window_extent(r)))
    return texts, [ax.get_window_extent(r) for ax in fig.axes], fig.bbox


def _problems(fig):
    texts, axes, whole = _boxes(fig)
    out = []
    for kind, text, b in texts:
        if not (b.x0 >= whole.x0 - 0.5 and b.y0 >= whole.y0 - 0.5
                and b.x1 <= whole.x1 + 0.5 and b.y1 <= whole.y1 + 0.5):
            out.append(f"{kind} {text!r} outside the figure")
    shrink = lambda b: b.expanded(1.0, 1.0).shrunk(0.98, 0.9)  # noqa: E731  tolerate sub-pixel touching
    values = [(t, b) for k, t, b in texts if k == "value"]
    for i, (t, b) in enumerate(values):
        for kind, t2, b2 in texts:
            if b2 is not b and shrink(b).overlaps(shrink(b2)):
                out.append(f"value {t!r} overlaps {kind} {t2!r}")
        if any(shrink(b).overlaps(a) for a in axes):
            out.append(f"value {t!r} overlaps a panel")
    ticks = [(t, b) for k, t, b in texts if k == "tick"]
    for i, (t, b) in enumerate(ticks):
        for t2, b2 in ticks[i + 1:]:
            if shrink(b).overlaps(shrink(b2)):
                out.append(f"tick {t!r} overlaps tick {t2!r}")
    return out


def test_layout_checker_can_fail():
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.text(0.5, 0.5, "one label")
    ax.text(0.52, 0.5, "another label")
    ax.text(1.5, 0.5, "outside", transform=ax.transAxes)
    found = _problems(fig)
    assert any("overlaps value 'another label'" in p for p in found) and any("'outside' outside" in p for p in found)


def test_headline_12_systems_layout(tables, tmp_path):
    board, paired = tables
    fig = headline_figure(board, paired, reference="imprag")
    assert _problems(fig) == []
    assert len(fig.axes) == 4 * 4  # EM, recall, delta EM, delta recall x 4 groups
    first = fig.axes[0]
    assert [t.get_text() for t in first.get_yticklabels()] == system_order(SYSTEMS)
    # delta rows list the other families' systems, and a value is starred iff the interval excludes 0
    delta_ax = fig.axes[8]  # delta EM, group "seen"
    bases = [t.get_text() for t in delta_ax.get_yticklabels()]
    assert bases == [s for s in system_order(SYSTEMS) if family(s) != "imprag"]
    rows = paired[(paired["scope"] == "ALL:seen") & (paired["metric"] == "em")].set_index("baseline")
    stars = [t.get_text().endswith("*") for t in delta_ax.texts]
    assert stars == [bool(rows.loc[b, "significant"]) for b in bases]
    assert [t.get_text().rstrip("*") for t in delta_ax.texts] == [f"{rows.loc[b, 'delta']:+.1f}" for b in bases]
    out = plot_headline(board, paired, tmp_path / "headline.png", reference="imprag")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_groups_layout_and_baseline_choice(tables):
    board, paired = tables
    assert _problems(headline_figure(board)) == []  # what plot_groups draws (test_report checks it writes)
    fig = headline_figure(board, paired, baselines=["dense", "ra-dit-llama"], delta_metrics=("em",))
    assert len(fig.axes) == 3 * 4 and [t.get_text() for t in fig.axes[8].get_yticklabels()] == ["dense", "ra-dit-llama"]
    with pytest.raises(UserError, match="no rows for baseline"):
        headline_figure(board, paired, baselines=["nope"])
    two = pd.concat([paired, paired.assign(reference="x")])
    with pytest.raises(UserError, match="name one"):
        headline_figure(board, two)


def test_tasks_layout(tables):
    board, _ = tables
    fig = tasks_figure(board)
    assert _problems(fig) == []
    assert len(fig.axes) == 4 * 4 and fig.axes[0].get_title() == "nq (seen)"
    fever_recall = [ax for ax in fig.axes if ax.get_title() == "fever (unseen-format)"][1]
    assert {t.get_text() for t in fever_recall.texts} == {"n/a"}


def test_one_task_one_system(tmp_path):
    recs = [{"system": "bm25", "task": "nq", "group": "seen", "id": str(i), "em": float(i % 2), "f1": 0.0,
             "recall": 1.0} for i in range(4)]
    board = leaderboard(recs, n_boot=50)
    assert len(tasks_figure(board).axes) == 2 and len(headline_figure(board).axes) == 2 * 2  # seen, all
