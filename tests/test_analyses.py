"""The paper's analyses beside its own numbers: the transcribed values agree with the paper's averages, the
Table 3 preset trains the three objectives, and table3.csv keeps our rows and the paper's apart."""
from pathlib import Path

import pandas as pd
import pytest

from imprag_bench.harness.analyses import PAPER, objective_ablation
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.paper_values import FIG2_B, FIG2_B_AT_T, FIG2_T, FIG2_T_AT_B, TABLE3, TABLE3_AVG
from imprag_bench.harness.reproduce import ReproducePreset, train_configs


def test_transcribed_table3_rows_average_to_the_papers_avg_column():
    for objective, row in TABLE3.items():
        em = sum(v[0] for v in row.values()) / len(row)
        recalls = [v[1] for v in row.values() if v[1] is not None]  # FEVER has no recall
        assert em == pytest.approx(TABLE3_AVG[objective][0], abs=0.05), objective
        assert sum(recalls) / len(recalls) == pytest.approx(TABLE3_AVG[objective][1], abs=0.05), objective
    assert FIG2_B[7] == FIG2_T[19] == (45.1, 81.0)  # the shared b = 7, t = 19 point of both panels
    assert (FIG2_T_AT_B, FIG2_B_AT_T) == (7, 19)


def test_objective_ablation_preset_trains_the_three_objectives(tmp_path):
    preset = ReproducePreset.load("objective-ablation")
    shares = {s["label"]: cfg.warmup_share for s, cfg in train_configs(preset, tmp_path, [])}
    assert shares == {"imprag-warmup-only": 1.0, "imprag-distill-only": 0.0, "imprag-both": 0.7}
    assert all(cfg.recipe == "paper" for _, cfg in train_configs(preset, tmp_path, []))
    assert set(preset.analysis["rows"]) == set(shares)


def test_analysis_rows_must_name_systems_of_the_preset():
    preset = ReproducePreset.load("objective-ablation")
    with pytest.raises(UserError, match="analysis needs"):
        ReproducePreset(**{**preset.__dict__, "analysis": {"name": "objective-ablation",
                                                           "rows": {"nobody": "both"}}}).validated()
    with pytest.raises(UserError, match="unknown analysis"):
        ReproducePreset(**{**preset.__dict__, "analysis": {"name": "fig9", "rows": {"imprag-both": "both"}}}
                        ).validated()


def test_table3_csv_puts_ours_beside_the_papers(tmp_path: Path):
    rows = [{"system": "mine", "task": t, "em": em, "em_lo": em - 5, "em_hi": em + 5, "recall": rec}
            for t, em, rec in [("nq", 10.0, 20.0), ("fever", 50.0, float("nan")), ("aida", 30.0, 40.0)]]
    pd.DataFrame(rows).to_csv(tmp_path / "leaderboard.csv", index=False)
    df = pd.read_csv(objective_ablation(tmp_path, {"mine": "warmup-only"}))
    ours = df[df["source"] == "ours"].set_index("task")
    paper = df[df["source"] == PAPER].set_index("task")
    assert ours.loc["nq", "em"] == 10.0 and paper.loc["nq", "em"] == 44.0 and paper.loc["nq", "recall"] == 78.3
    assert ours.loc["avg", "em"] == 30.0 and ours.loc["avg", "recall"] == 30.0  # FEVER's missing recall skipped
    assert paper.loc["avg", "em"] == 50.0 and len(paper) == 9 and len(ours) == 4
    with pytest.raises(UserError, match="no system 'other'"):
        objective_ablation(tmp_path, {"other": "both"})


def test_layer_sweep_preset_and_its_csv_and_figure(tmp_path: Path):
    import json

    from imprag_bench.harness.analyses import layer_sweep
    preset = ReproducePreset.load("layer-sweep")
    points = {s["label"]: (cfg.b, cfg.t) for s, cfg in train_configs(preset, tmp_path, [])}
    assert len({b for b, t in points.values() if t == 20}) >= 4 and len({t for b, t in points.values() if b == 8}) >= 3
    assert preset.run["split"] == "dev" and preset.run["tasks"] == ["nq"]
    systems, board = {}, []
    for i, (label, (b, t)) in enumerate(points.items()):
        ck = tmp_path / "train" / label / "checkpoint"
        ck.mkdir(parents=True)
        (ck / "imprag_config.json").write_text(json.dumps({"b": b, "t": t}))
        (ck / "trainer_state.json").write_text(json.dumps({"step": 24}))
        systems[label] = {"checkpoint": str(ck), "checkpoint_sha256": f"d{i}", "train_config": {"steps": 24}}
        board.append({"system": label, "task": "nq", "n": 200, "em": 10.0 + i, "em_lo": 8.0 + i, "em_hi": 12.0 + i,
                      "recall": 20.0 + i, "recall_lo": 15.0 + i, "recall_hi": 25.0 + i, "distinct_top1": 3})
    pd.DataFrame(board).to_csv(tmp_path / "leaderboard.csv", index=False)
    (tmp_path / "manifest.json").write_text(json.dumps({"systems": systems, "wall_s": {"train:b2-t20": 61.5}}))
    sweep = pd.read_csv(layer_sweep(tmp_path, preset.analysis["rows"])).set_index("system")
    assert sweep.loc["b4-t20", ["b", "t", "em", "recall", "steps"]].tolist() == [4, 20, 11.0, 21.0, 24]
    assert sweep.loc["b2-t20", "train_wall_s"] == 61.5 and sweep.loc["b8-t16", "checkpoint_sha256"] == "d5"
    assert sweep.loc["b8-t20", "panel"] == "both" and (tmp_path / "sweep.png").stat().st_size > 10_000
    (tmp_path / "train" / "b4-t20" / "checkpoint" / "imprag_config.json").unlink()
    with pytest.raises(UserError, match="'b4-t20' needs a trained ImpRAG checkpoint"):
        layer_sweep(tmp_path, preset.analysis["rows"])


def test_learning_curve_preset_spans_30x_and_its_csv(tmp_path: Path):
    import json

    from imprag_bench.harness.analyses import learning_curve
    preset = ReproducePreset.load("learning-curve")
    steps = {}
    for s, cfg in train_configs(preset, tmp_path, []):
        family, key = preset.analysis["rows"][s["label"]]
        steps.setdefault(family, set()).add(cfg[key])
    assert set(steps) == {"imprag", "ra-dit-llama"}
    assert all(len(v) >= 4 and max(v) / min(v) >= 30 for v in steps.values()), steps
    systems = {"a": {"train_config": {"steps": 4, "retriever_steps": 40}},
               "b": {"train_config": {"steps": 24, "retriever_steps": 12}}}
    (tmp_path / "manifest.json").write_text(json.dumps({"systems": systems}))
    board = [{"system": s, "task": t, "n": 200, "em": 1.0, "recall": r, "recall_lo": r - 2, "recall_hi": r + 2}
             for s, r in (("a", 5.0), ("b", 9.0)) for t in ("nq", "trex", "ALL:all")]
    pd.DataFrame(board).to_csv(tmp_path / "leaderboard.csv", index=False)
    curve = pd.read_csv(learning_curve(tmp_path, {"a": ["imprag", "steps"], "b": ["rival", "retriever_steps"]}))
    assert sorted(zip(curve["system"], curve["task"], curve["retrieval_steps"])) == [
        ("a", "nq", 4), ("a", "trex", 4), ("b", "nq", 12), ("b", "trex", 12)]  # ImpRAG: its steps, not 40
    assert (tmp_path / "curve.png").stat().st_size > 10_000


def test_layer_sweep_runs_end_to_end_on_a_tiny_model(tmp_path: Path):
    """The preset through the real command (two points, tiny random Llama, 200 passages): the analysis reads the
    manifest and checkpoints the reproduce stages wrote."""
    from tests.tiny import run_tiny_reproduce
    out = run_tiny_reproduce(tmp_path, "layer-sweep", ["b8-t20", "b8-t16"], ["b=1", "t=2", "steps=2"], ["n=3"])
    sweep = pd.read_csv(out / "sweep.csv")
    assert sorted(sweep["system"]) == ["b8-t16", "b8-t20"] and set(sweep["b"]) == {1} and set(sweep["t"]) == {2}
    assert set(sweep["n"]) == {3} and set(sweep["steps"]) == {2} and sweep["checkpoint_sha256"].notna().all()
    assert (out / "sweep.png").exists()
