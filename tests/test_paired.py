"""Tests for imprag_bench.harness.paired: hand-computed paired deltas, bootstrap properties, required_n."""
import math

import numpy as np
import pandas as pd
import pytest

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.paired import (Z95, boot_sums, main, mismatch_messages, paired_table, required_n,
                                         write_csv)


def _recs(system, task, group, ems, recalls, ids=None):
    ids = ids or [f"{task}-{i}" for i in range(len(ems))]
    return [{"system": system, "task": task, "group": group, "id": i, "em": e, "f1": e, "recall": r}
            for i, e, r in zip(ids, ems, recalls)]


# Reference I vs baseline B (hand-computed):
#   nq (seen)        I em 1,1,1,0  B em 0,1,0,0  d = 1,0,1,0   -> delta +50 (75 vs 25)
#                    I rc 1,1,0,0  B rc 1,0,0,0  d = 0,1,0,0   -> recall delta +25
#   hotpotqa (seen)  I em 0,1      B em 0,0      -> +50 (50 vs 0);  I rc 1,0  B rc 1,1 -> -50
#   fever (u-format) I em 1,0      B em 1,1      -> -50 (50 vs 100); no recall
#   ALL:seen  em: I 4/6, B 1/6 -> +50;  recall: (1 - 1)/6 -> 0 (50 vs 50)
#   ALL:all   em: I 5/8, B 3/8 -> +25;  recall as ALL:seen (FEVER has none)
RECS = (_recs("I", "nq", "seen", [1, 1, 1, 0], [1, 1, 0, 0]) + _recs("B", "nq", "seen", [0, 1, 0, 0], [1, 0, 0, 0])
        + _recs("I", "hotpotqa", "seen", [0, 1], [1, 0]) + _recs("B", "hotpotqa", "seen", [0, 0], [1, 1])
        + _recs("I", "fever", "unseen-format", [1, 0], [None, None])
        + _recs("B", "fever", "unseen-format", [1, 1], [None, None]))


def _get(df, scope, metric, baseline="B"):
    hit = df[(df["scope"] == scope) & (df["metric"] == metric) & (df["baseline"] == baseline)]
    assert len(hit) == 1, (scope, metric, baseline)
    return hit.iloc[0]


@pytest.fixture(scope="module")
def table():
    return paired_table(RECS, "I", n_boot=500, seed=0)


@pytest.mark.parametrize("scope,metric,n,ref,other,delta", [
    ("nq", "em", 4, 75.0, 25.0, 50.0), ("hotpotqa", "em", 2, 50.0, 0.0, 50.0),
    ("fever", "em", 2, 50.0, 100.0, -50.0), ("ALL:seen", "em", 6, 400 / 6, 100 / 6, 50.0),
    ("ALL:unseen-format", "em", 2, 50.0, 100.0, -50.0), ("ALL:all", "em", 8, 62.5, 37.5, 25.0),
    ("nq", "recall", 4, 50.0, 25.0, 25.0), ("hotpotqa", "recall", 2, 50.0, 100.0, -50.0),
    ("ALL:seen", "recall", 6, 50.0, 50.0, 0.0), ("ALL:all", "recall", 6, 50.0, 50.0, 0.0)])
def test_hand_computed_deltas(table, scope, metric, n, ref, other, delta):
    r = _get(table, scope, metric)
    assert r["n"] == n
    assert r["ref"] == pytest.approx(ref) and r["other"] == pytest.approx(other)
    assert r["delta"] == pytest.approx(delta)
    assert r["lo"] <= r["delta"] <= r["hi"]
    assert r["half_width"] == pytest.approx((r["hi"] - r["lo"]) / 2)
    assert r["significant"] == (r["lo"] > 0 or r["hi"] < 0)


def test_scopes_and_no_recall_rows(table):
    assert list(table[table["metric"] == "em"]["scope"]) == [
        "nq", "hotpotqa", "fever", "ALL:seen", "ALL:unseen-format", "ALL:all"]
    assert "fever" not in set(table[table["metric"] == "recall"]["scope"])  # no pair has recall
    assert set(table["reference"]) == {"I"} and set(table["baseline"]) == {"B"}
    assert (table["n_ref_only"] == 0).all() and (table["n_other_only"] == 0).all()


def test_identical_systems_interval_is_zero():
    clone = [dict(r, system="C") for r in RECS if r["system"] == "I"]
    df = paired_table(RECS + clone, "I", ["C"], n_boot=300)
    assert (df["delta"] == 0).all() and (df["lo"] == 0).all() and (df["hi"] == 0).all()
    assert (df["p_value"] == 1.0).all() and not df["significant"].any()


def test_stratification_keeps_task_sizes():
    # d = +1 on both examples of task a, 0 on the 3 of task b: a stratified resample always holds 2 of a and
    # 3 of b, so the pooled delta is 2/5 = 40 in every resample; an unstratified one would vary.
    recs = (_recs("I", "a", "g", [1, 1], [None] * 2) + _recs("B", "a", "g", [0, 0], [None] * 2)
            + _recs("I", "b", "g", [1, 0, 1], [None] * 3) + _recs("B", "b", "g", [1, 0, 1], [None] * 3))
    r = _get(paired_table(recs, "I", n_boot=1000, seed=3), "ALL:g", "em")
    assert (r["delta"], r["lo"], r["hi"]) == (pytest.approx(40.0), pytest.approx(40.0), pytest.approx(40.0))
    assert r["significant"] and r["p_value"] == 0.0


def test_boot_sums_resamples_with_replacement():
    d = np.array([0.0, 1.0])
    s = boot_sums(d, 4000, np.random.default_rng(0))
    assert set(np.unique(s)) == {0.0, 1.0, 2.0}  # both-equal draws happen: with replacement
    assert np.mean(s == 1.0) == pytest.approx(0.5, abs=0.03)
    assert (boot_sums(np.zeros(0), 5, np.random.default_rng(0)) == 0).all()
    small = boot_sums(np.arange(7.0), 50, np.random.default_rng(1), chunk_elems=10)  # chunked path
    assert small.shape == (50,) and ((small >= 0) & (small <= 42)).all()


def test_interval_matches_normal_approximation():
    # 300 paired examples, d in {-1, 0, 1}: the percentile interval's half-width ~ 1.96 sd / sqrt(n).
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    recs = _recs("I", "nq", "seen", a.tolist(), [None] * 300) + _recs("B", "nq", "seen", b.tolist(), [None] * 300)
    r = _get(paired_table(recs, "I", n_boot=4000), "nq", "em")
    d = 100.0 * (a - b)
    assert r["half_width"] == pytest.approx(Z95 * d.std(ddof=1) / math.sqrt(300), rel=0.1)


def test_seed_determinism(table):
    again = paired_table(RECS, "I", n_boot=500, seed=0)
    pd.testing.assert_frame_equal(table, again)
    other = paired_table(RECS, "I", n_boot=500, seed=1)
    assert not np.allclose(table["lo"].to_numpy(), other["lo"].to_numpy(), equal_nan=True) or \
        not np.allclose(table["hi"].to_numpy(), other["hi"].to_numpy(), equal_nan=True)
    assert (table["delta"] == other["delta"]).all()


def test_mismatched_examples_are_reported_not_paired():
    recs = RECS + _recs("B", "nq", "seen", [1], [1], ids=["nq-extra"]) + _recs("I", "trex", "unseen-format", [1], [1])
    df = paired_table(recs, "I", n_boot=100)
    nq = _get(df, "nq", "em")
    assert (nq["n"], nq["n_other_only"], nq["delta"]) == (4, 1, 50.0)  # the extra example is left out
    trex = _get(df, "trex", "em")
    assert trex["n"] == 0 and trex["n_ref_only"] == 1 and math.isnan(trex["delta"])
    assert _get(df, "ALL:all", "em")["n_ref_only"] == 1 and _get(df, "ALL:all", "em")["n_other_only"] == 1
    msgs = mismatch_messages(df)
    assert len(msgs) == 2 and "task nq: 0 example(s) only in I, 1 only in B" in msgs[0]
    with pytest.raises(UserError, match="task trex: 1 example"):
        paired_table(recs, "I", n_boot=100, strict=True)


def test_bad_input():
    with pytest.raises(UserError, match="reference system 'X' has no records; systems: B, I"):
        paired_table(RECS, "X")
    with pytest.raises(UserError, match="baseline system 'Z'"):
        paired_table(RECS, "I", ["Z"])
    with pytest.raises(UserError, match="more than once"):
        paired_table(RECS + RECS[:1], "I")
    with pytest.raises(UserError, match="no records"):
        paired_table([], "I")


def test_required_n_hand_computed():
    # nq: d = 100, 0, 100, 0 (%): var = 4 * 50^2 / 3 = 3333.3; m = ceil((1.96/4)^2 * 3333.3) = 801.
    # hotpotqa: d = 0, 100: var = 5000.   ALL:seen (T=2): m = ceil(0.2401 * (3333.3 + 5000) / 2 / 2) = 501.
    # fever: d = 0, -100: var 5000 -> m = ceil(0.2401 * 5000) = 1201.
    df = required_n(RECS, "I", "B", target=4.0, available=300).set_index("scope")
    z2 = (Z95 / 4.0) ** 2
    assert df.loc["nq", "per_task"] == math.ceil(z2 * 10000 / 3) == 801
    assert df.loc["ALL:seen", "per_task"] == math.ceil(z2 * (10000 / 3 + 5000) / 4) == 501
    assert df.loc["ALL:seen", "total"] == 1002 and df.loc["ALL:seen", "n_tasks"] == 2
    assert df.loc["fever", "per_task"] == 1201 and not df.loc["fever", "reachable"]
    # the pilot's own half-width: nq alone, 1.96 * sd / sqrt(4)
    assert df.loc["nq", "half_width_pilot"] == pytest.approx(Z95 * math.sqrt(10000 / 3) / 2)
    assert df.loc["nq", "sd"] == pytest.approx(math.sqrt(10000 / 3))
    # with m per task, the formula's half-width is at most the target, and m - 1 would not be enough
    for scope in ("nq", "ALL:seen", "ALL:all"):
        m, T = df.loc[scope, "per_task"], df.loc[scope, "n_tasks"]
        mv = {"nq": 10000 / 3, "ALL:seen": (10000 / 3 + 5000) / 2, "ALL:all": (10000 / 3 + 5000 + 5000) / 3}[scope]
        assert Z95 * math.sqrt(mv / (T * m)) <= 4.0 < Z95 * math.sqrt(mv / (T * (m - 1)))
    assert required_n(RECS, "I", "B", target=200.0).set_index("scope").loc["nq", "reachable"] is None
    with pytest.raises(UserError, match="target"):
        required_n(RECS, "I", "B", target=0)


def test_cli_writes_csv_and_exit_2(tmp_path, capsys):
    import json
    preds = tmp_path / "preds"
    for sysname in ("I", "B"):
        for task in ("nq", "hotpotqa", "fever"):
            rows = [r for r in RECS if r["system"] == sysname and r["task"] == task]
            (preds / sysname).mkdir(parents=True, exist_ok=True)
            (preds / sysname / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "paired.csv"
    assert main(["--preds", str(preds), "--reference", "I", "--n-boot", "200", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns)[:6] == ["reference", "baseline", "scope", "group", "metric", "n"]
    assert _get(df, "ALL:all", "em")["delta"] == 25.0
    bad = tmp_path / "bad.csv"
    assert main(["--preds", str(preds), "--reference", "nope", "--out", str(bad)]) == 2
    assert "reference system 'nope'" in capsys.readouterr().err and not bad.exists()
    write_csv(df, out)
