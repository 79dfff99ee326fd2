"""The paper's analyses from a finished reproduce folder, beside the paper's own values where it has them.

A reproduce preset names one under `analysis: {name: ..., rows: {system label: what that system is in the
analysis}}`; after the stats stage, rank 0 calls the registered function with the folder and the rows. The
paper's numbers (harness.paper_values) stay apart from ours: a `source` column in table3.csv, a dashed and
labelled line in sweep.png.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.io import atomic_write_text
from imprag_bench.harness.paper_values import TABLE3, TABLE3_AVG
from imprag_bench.harness.registry import ANALYSES

PAPER = "paper: Llama-3.2-3B"


@ANALYSES.register("objective-ablation")
def objective_ablation(out: Path, rows: dict[str, str]) -> Path:
    """Table 3: EM and recall per task and averaged, for each system of `rows` (label -> the paper's objective:
    warmup-only, distill-only, both) beside the paper's row of the same objective -> <out>/table3.csv."""
    bad = sorted(set(rows.values()) - set(TABLE3))
    if bad:
        raise UserError(f"analysis objective-ablation: unknown objectives {bad} (known: {', '.join(TABLE3)})")
    board = pd.read_csv(Path(out) / "leaderboard.csv")
    lines = []
    for label, objective in rows.items():
        ours = board[board["system"] == label].set_index("task")
        if ours.empty:
            raise UserError(f"analysis objective-ablation: {out}/leaderboard.csv has no system {label!r}")
        for task, (em, recall) in TABLE3[objective].items():
            lines.append({"objective": objective, "task": task, "source": PAPER, "system": "imprag",
                          "em": em, "recall": recall})
            if task in ours.index:
                r = ours.loc[task]
                lines.append({"objective": objective, "task": task, "source": "ours", "system": label,
                              "em": r["em"], "recall": r["recall"], "em_lo": r["em_lo"], "em_hi": r["em_hi"]})
        em, recall = TABLE3_AVG[objective]
        lines.append({"objective": objective, "task": "avg", "source": PAPER, "system": "imprag", "em": em,
                      "recall": recall})
        mine = ours.loc[[t for t in TABLE3[objective] if t in ours.index]]
        lines.append({"objective": objective, "task": "avg", "source": "ours", "system": label,
                      "em": round(mine["em"].mean(), 2), "recall": round(mine["recall"].dropna().mean(), 2)})
    dst = Path(out) / "table3.csv"
    atomic_write_text(dst, pd.DataFrame(lines).to_csv(index=False))
    return dst


@ANALYSES.register("layer-sweep")
def layer_sweep(out: Path, rows: dict[str, str]) -> Path:
    """Figure 2: for each system of `rows` (label -> the panel it belongs to: b, t or both) its resolved (b, t)
    from its checkpoint, NQ EM and recall with intervals, training steps, wall time and checkpoint digest (from
    manifest.json) -> <out>/sweep.csv and the two-panel <out>/sweep.png beside the paper's values."""
    import json

    from imprag_bench.harness.plots_analyses import plot_sweep

    bad = sorted(set(rows.values()) - {"b", "t", "both"})
    if bad:
        raise UserError(f"analysis layer-sweep: panels must be b, t or both (got {bad})")
    out = Path(out)
    board = pd.read_csv(out / "leaderboard.csv").set_index(["system", "task"])
    manifest = json.loads((out / "manifest.json").read_text())
    lines = []
    for label, panel in rows.items():
        entry = manifest["systems"].get(label, {})
        config = Path(entry.get("checkpoint", "")) / "imprag_config.json"
        if not config.is_file() or (label, "nq") not in board.index:
            raise UserError(f"analysis layer-sweep: {label!r} needs a trained ImpRAG checkpoint with "
                            f"imprag_config.json and an nq row in {out}/leaderboard.csv")
        groups, r = json.loads(config.read_text()), board.loc[(label, "nq")]
        state = config.parent / "trainer_state.json"
        steps = json.loads(state.read_text())["step"] if state.is_file() else entry["train_config"]["steps"]
        lines.append({"system": label, "panel": panel, "b": groups["b"], "t": groups["t"], "n": int(r["n"]),
                      **{k: r[k] for k in ("em", "em_lo", "em_hi", "recall", "recall_lo", "recall_hi")},
                      "distinct_top1": r.get("distinct_top1"), "steps": steps,
                      "train_wall_s": manifest["wall_s"].get(f"train:{label}"),
                      "checkpoint_sha256": entry.get("checkpoint_sha256")})
    sweep = pd.DataFrame(lines)
    dst = out / "sweep.csv"
    atomic_write_text(dst, sweep.to_csv(index=False))
    plot_sweep(sweep, out / "sweep.png")
    return dst


@ANALYSES.register("learning-curve")
def learning_curve(out: Path, rows: dict[str, list[str]]) -> Path:
    """The retriever's learning curve: for each system of `rows` (label -> [family, the training-config key that
    counts its retriever's steps]: `steps` for ImpRAG's joint training, `retriever_steps` for RA-DIT-Llama's
    retriever stage) those steps (from manifest.json) and its recall@k with intervals and distinct_top1 on every
    task of the run -> <out>/curve.csv and <out>/curve.png."""
    import json

    from imprag_bench.harness.plots_analyses import plot_curve

    out = Path(out)
    board = pd.read_csv(out / "leaderboard.csv")
    manifest = json.loads((out / "manifest.json").read_text())
    lines = []
    for label, (family, key) in rows.items():
        cfg = manifest["systems"].get(label, {}).get("train_config")
        mine = board[(board["system"] == label) & ~board["task"].str.startswith("ALL:")]
        if cfg is None or mine.empty:
            raise UserError(f"analysis learning-curve: {label!r} needs a training config in {out}/manifest.json "
                            f"and rows in {out}/leaderboard.csv")
        steps = cfg.get(key)
        if not isinstance(steps, int):
            raise UserError(f"analysis learning-curve: {label!r} trained with {key}={steps!r}; give it a step count")
        for r in mine.itertuples():
            lines.append({"system": label, "family": family, "retrieval_steps": steps, "task": r.task,
                          "n": r.n, "recall": r.recall, "recall_lo": r.recall_lo, "recall_hi": r.recall_hi,
                          "em": r.em, "distinct_top1": getattr(r, "distinct_top1", None)})
    curve = pd.DataFrame(lines)
    dst = out / "curve.csv"
    atomic_write_text(dst, curve.to_csv(index=False))
    plot_curve(curve, out / "curve.png")
    return dst
