"""The result tables of docs/results.md are generated from the CSVs: golden cases for both generators."""
import pandas as pd

from imprag_bench.harness.paired import markdown_deltas
from imprag_bench.harness.report import markdown_groups


def test_group_table_cells_are_em_interval_and_recall():
    df = pd.DataFrame([
        {"system": "a", "task": "ALL:seen", "em": 50.0, "em_lo": 40.0, "em_hi": 60.0, "recall": 70.0},
        {"system": "a", "task": "ALL:all", "em": 25.0, "em_lo": 20.0, "em_hi": 30.5, "recall": float("nan")},
        {"system": "b", "task": "ALL:seen", "em": 10.0, "em_lo": 0.0, "em_hi": 20.0, "recall": 5.0},
        {"system": "b", "task": "ALL:all", "em": 12.25, "em_lo": 5.0, "em_hi": 19.0, "recall": 6.0},
        {"system": "b", "task": "nq", "em": 1.0, "em_lo": 0.0, "em_hi": 2.0, "recall": 3.0},
    ])
    assert markdown_groups(df, ["b", "a"]).splitlines() == [
        "| system | seen | all |", "|---|---|---|",
        "| b | 10.0 [0.0, 20.0] (5.0) | 12.2 [5.0, 19.0] (6.0) |",
        "| a | 50.0 [40.0, 60.0] (70.0) | 25.0 [20.0, 30.5] |"]


def test_delta_table_stars_significant_groups():
    df = pd.DataFrame([
        {"baseline": "x", "scope": "ALL:seen", "metric": "em", "delta": 4.0, "lo": 1.0, "hi": 7.0, "significant": True},
        {"baseline": "x", "scope": "ALL:all", "metric": "em", "delta": -1.0, "lo": -3.0, "hi": 1.0,
         "significant": False},
        {"baseline": "x", "scope": "ALL:seen", "metric": "recall", "delta": 9.0, "lo": 8.0, "hi": 10.0,
         "significant": True},
        {"baseline": "x", "scope": "nq", "metric": "em", "delta": 9.0, "lo": 8.0, "hi": 10.0, "significant": True},
    ])
    assert markdown_deltas(df).splitlines() == [
        "| reference − baseline | seen | all |", "|---|---|---|",
        "| x | +4.0* [+1.0, +7.0] | -1.0 [-3.0, +1.0] |"]


def test_delta_table_of_a_paired_csv_with_matched_pairs_names_its_reference():
    import pytest

    from imprag_bench.harness.errors import UserError

    row = {"scope": "ALL:all", "metric": "em", "lo": -1.0, "hi": 3.0, "significant": False}
    df = pd.DataFrame([{**row, "reference": "imprag", "baseline": "rival", "delta": 1.0},
                       {**row, "reference": "imprag-x", "baseline": "rival-x", "delta": 2.0}])
    with pytest.raises(UserError, match="name one"):
        markdown_deltas(df)
    assert markdown_deltas(df, reference="imprag-x").splitlines()[-1] == "| rival-x | +2.0 [-1.0, +3.0] |"
