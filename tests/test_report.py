"""Tests for imprag_bench.harness.report and imprag_bench.harness.plots on a tiny record set whose numbers were computed by hand."""
import json
import math

import pandas as pd
import pytest

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.plots import plot_groups, plot_tasks
from imprag_bench.harness.report import leaderboard, merge, read_records, write_csv


def _recs(system, task, group, ems, recalls, f1s=None):
    f1s = f1s or ems
    return [{"system": system, "task": task, "group": group, "id": f"{task}-{i}", "em": e, "f1": f, "recall": r}
            for i, (e, f, r) in enumerate(zip(ems, f1s, recalls))]


# System A, unequal task sizes so pooled and macro EM differ:
#   nq (seen)          em 1,1,1,0  -> 75%   f1 1,1,1,.5 -> 87.5%   recall 1,1,0,0 -> 50%
#   hotpotqa (seen)    em 0        ->  0%                           recall 1       -> 100%
#   simpleqa (uq)      em 0        ->  0%                           recall 1       -> 100%
#   trex (uf)          em 1,1      -> 100%                          recall 1,0     -> 50%
#   fever (uf)         em 1,0      -> 50%                           recall None    -> NaN
# System B: nq em 0,1 -> 50%, recall None (closed-book).
RECORDS = (_recs("A", "nq", "seen", [1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 0.5])
           + _recs("A", "hotpotqa", "seen", [0], [1])
           + _recs("A", "simpleqa", "unseen-qa", [0], [1])
           + _recs("A", "trex", "unseen-format", [1, 1], [1, 0])
           + _recs("A", "fever", "unseen-format", [1, 0], [None, None])
           + _recs("B", "nq", "seen", [0, 1], [None, None]))


@pytest.fixture(scope="module")
def board():
    return leaderboard(RECORDS, n_boot=500, seed=0)


def _row(df, system, task):
    hit = df[(df["system"] == system) & (df["task"] == task)]
    assert len(hit) == 1, (system, task)
    return hit.iloc[0]


def test_per_task_rows(board):
    nq = _row(board, "A", "nq")
    assert (nq["n"], nq["em"], nq["f1"], nq["recall"], nq["recall_n"]) == (4, 75.0, 87.5, 50.0, 4)
    assert _row(board, "A", "hotpotqa")["em"] == 0.0
    assert _row(board, "A", "trex")["recall"] == 50.0
    assert _row(board, "B", "nq")["em"] == 50.0
    assert math.isnan(_row(board, "A", "nq")["macro_em"])


def test_fever_recall_is_nan(board):
    fever = _row(board, "A", "fever")
    assert fever["em"] == 50.0 and fever["recall_n"] == 0
    assert math.isnan(fever["recall"]) and math.isnan(fever["recall_lo"]) and math.isnan(fever["recall_hi"])
    assert math.isnan(_row(board, "B", "ALL:seen")["recall"])


def test_group_rows_pool_examples(board):
    seen = _row(board, "A", "ALL:seen")
    # pooled (3 + 0) / 5 = 60%, macro (75 + 0) / 2 = 37.5%; recall pooled (2 + 1) / 5 = 60%
    assert (seen["n"], seen["em"], seen["macro_em"], seen["recall"]) == (5, 60.0, 37.5, 60.0)
    uf = _row(board, "A", "ALL:unseen-format")
    # em (2 + 1) / 4 = 75%; recall only trex's 2 examples: 1/2 = 50%
    assert (uf["n"], uf["em"], uf["recall"], uf["recall_n"]) == (4, 75.0, 50.0, 2)
    al = _row(board, "A", "ALL:all")
    # em (3+0+0+2+1) / 10 = 60%; macro (75+0+0+100+50) / 5 = 45%; recall (2+1+1+1) / 8 = 62.5%
    assert (al["n"], al["n_tasks"], al["em"], al["macro_em"]) == (10, 5, 60.0, 45.0)
    assert (al["recall"], al["recall_n"]) == (62.5, 8)
    assert al["f1"] == pytest.approx(100 * (3.5 + 0 + 0 + 2 + 1) / 10)


def test_row_order(board):
    a = board[board["system"] == "A"]["task"].tolist()
    assert a == ["nq", "hotpotqa", "simpleqa", "trex", "fever",
                 "ALL:seen", "ALL:unseen-qa", "ALL:unseen-format", "ALL:all"]
    assert board["system"].tolist()[-1] == "B"


def test_bootstrap_contains_point_and_is_deterministic(board):
    for _, r in board.iterrows():
        assert r["em_lo"] <= r["em"] <= r["em_hi"]
        if not math.isnan(r["recall"]):
            assert r["recall_lo"] <= r["recall"] <= r["recall_hi"]
    again = leaderboard(RECORDS, n_boot=500, seed=0)
    pd.testing.assert_frame_equal(board, again)
    nq = _row(board, "A", "nq")
    assert nq["em_lo"] < nq["em_hi"]            # 3 of 4 correct: the interval is not degenerate
    # one system's intervals do not depend on which other systems are in the table
    alone = leaderboard([r for r in RECORDS if r["system"] == "A"], n_boot=500, seed=0)
    pd.testing.assert_frame_equal(alone, board[board["system"] == "A"].reset_index(drop=True))


def test_group_bootstrap_is_stratified():
    # nq all right (3), hotpotqa all wrong (1): resampling within each task keeps 3/4 every time,
    # so the interval collapses to the pooled 75%. Unstratified resampling would not.
    recs = _recs("S", "nq", "seen", [1, 1, 1], [1, 1, 1]) + _recs("S", "hotpotqa", "seen", [0], [0])
    seen = _row(leaderboard(recs, n_boot=200, seed=3), "S", "ALL:seen")
    assert seen["em"] == seen["em_lo"] == seen["em_hi"] == 75.0
    assert seen["recall_lo"] == seen["recall_hi"] == 75.0


def _write_jsonl(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def test_merge_and_identical_duplicates(tmp_path):
    a = _write_jsonl(tmp_path / "run1.jsonl", [r for r in RECORDS if r["system"] == "A"])
    b = _write_jsonl(tmp_path / "run2.jsonl", [r for r in RECORDS if r["system"] == "B"] + RECORDS[:2])
    out = tmp_path / "out" / "leaderboard.csv"
    df = merge([a, b], out, n_boot=100)
    assert _row(df, "A", "nq")["n"] == 4                  # the repeated, identical records count once
    back = pd.read_csv(out)
    assert list(back.columns) == list(df.columns) and len(back) == len(df)
    assert _row(back, "A", "ALL:seen")["macro_em"] == 37.5
    assert [p.name for p in out.parent.iterdir()] == ["leaderboard.csv"]  # no temporary left behind


def test_merge_conflict_names_both_files(tmp_path):
    a = _write_jsonl(tmp_path / "first.jsonl", RECORDS[:1])
    changed = dict(RECORDS[0], em=0.0)
    b = _write_jsonl(tmp_path / "second.jsonl", [RECORDS[1], changed])
    with pytest.raises(UserError) as e:
        merge([a, b], tmp_path / "x.csv")
    msg = str(e.value)
    assert "first.jsonl:1" in msg and "second.jsonl:2" in msg and "nq-0" in msg
    assert not (tmp_path / "x.csv").exists()


def test_malformed_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(RECORDS[0]) + "\n\n{not json\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.jsonl:3: malformed JSON"):
        read_records([p])
    rec = {k: v for k, v in RECORDS[0].items() if k != "recall"}
    p.write_text(json.dumps(RECORDS[0]) + "\n" + json.dumps(rec) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.jsonl:2: record is missing key\(s\) recall"):
        read_records(p)
    p.write_text(json.dumps(dict(RECORDS[0], em=1.5)) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad\.jsonl:1: 'em' must be a number in \[0, 1\]"):
        read_records(p)


def test_task_in_two_groups_is_an_error(tmp_path):
    p = _write_jsonl(tmp_path / "g.jsonl", [RECORDS[0], dict(RECORDS[1], group="unseen-qa")])
    with pytest.raises(UserError, match="group"):
        read_records(p)


def test_write_csv_rounds(tmp_path, board):
    out = write_csv(board, tmp_path / "lb.csv")
    back = pd.read_csv(out)
    assert (back["em"].round(2) == back["em"]).all()
    assert back.loc[(back["system"] == "A") & (back["task"] == "fever"), "recall"].isna().all()


def test_plots_written(tmp_path, board):
    for fn, name in ((plot_groups, "groups.png"), (plot_tasks, "tasks.png")):
        out = fn(board, tmp_path / "plots" / name)
        data = out.read_bytes()
        assert out.name == name and len(data) > 10_000 and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["groups.png", "tasks.png"]
    back = pd.read_csv(write_csv(board, tmp_path / "lb.csv"))   # the `plot` command reads the CSV back
    assert plot_groups(back, tmp_path / "csv" / "g.png").stat().st_size > 10_000
    assert plot_tasks(back, tmp_path / "csv" / "t.png").stat().st_size > 10_000


def test_distinct_top1_counts_the_passages_retrieved_first():
    from imprag_bench.harness.report import leaderboard

    recs = [{"system": s, "task": "nq", "group": "seen", "id": str(i), "em": 0.0, "f1": 0.0, "recall": 0.0,
             "retrieved": ([f"p{i % 3}", "x"] if s == "a" else ["hub", f"p{i}"]) if s != "cb" else []}
            for s in ("a", "b", "cb") for i in range(6)]
    board = leaderboard(recs, n_boot=10).set_index(["system", "task"])
    assert board.loc[("a", "nq"), "distinct_top1"] == 3 and board.loc[("b", "nq"), "distinct_top1"] == 1
    assert pd.isna(board.loc[("cb", "nq"), "distinct_top1"])  # closed-book retrieves nothing
