"""Paired comparison of one reference system (ImpRAG) against every other system on the same examples.

Every system is scored on the same test examples, so the question "is the reference better, and by how
much" is answered per example: d_i = ref_i - other_i. For each baseline, each task and each task group
(the leaderboard's pooled rows "ALL:seen", "ALL:unseen-qa", "ALL:unseen-format", "ALL:all",
imprag_bench.harness.report) this module reports the mean difference on EM and on retrieval recall with a
paired bootstrap 95% interval:

- Only examples present for both systems are paired (matched on (task, id)); examples only one system has
  are counted in `n_ref_only` / `n_other_only` and listed by `mismatch_messages` (or refused with `strict`).
- Recall pairs only the examples where both systems have a recall (FEVER and closed-book have none); a
  (baseline, scope) with no such example gets no recall row.
- Resampling draws example indices with replacement within each task (stratified: each task keeps its
  size in every resample, as report.py's group intervals do) and applies the SAME draw to both systems,
  i.e. it resamples the differences d_i. A group row's resample is the union of its tasks' resamples,
  so task and group rows come from one coherent set of draws. Seeded per (seed, reference, baseline,
  task, metric); B = 2,000 by default; vectorised numpy.
- Percentile interval [lo, hi]; `significant` when it excludes 0; `p_value` two-sided bootstrap
  p = min(1, 2 * min(P*(delta <= 0), P*(delta >= 0))).

Scores are percentages (0-100), like the leaderboard. `required_n` turns a pilot run's differences into the
number of examples per task needed for a target interval half-width.

CLI: python -m imprag_bench.harness.paired --preds RUN/preds --reference imprag --out RUN/paired.csv
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.io import atomic_write
from imprag_bench.harness.report import ALL, GROUP_ORDER, TASK_ORDER, _order, read_records, records_frame

METRICS = ("em", "recall")
COLUMNS = ["reference", "baseline", "scope", "group", "metric", "n", "n_tasks", "ref", "other", "delta",
           "lo", "hi", "half_width", "p_value", "significant", "n_ref_only", "n_other_only"]
Z95 = 1.959963984540054  # two-sided 95% normal quantile


def _rng(seed: int, *names: str) -> np.random.Generator:
    return np.random.default_rng([seed, *(zlib.crc32(n.encode("utf-8")) for n in names)])


def boot_sums(d: np.ndarray, n_boot: int, rng: np.random.Generator, chunk_elems: int = 2_000_000) -> np.ndarray:
    """Sums of `n_boot` resamples (with replacement, size len(d)) of the vector `d`: float array [n_boot].

    Memory is bounded to ~`chunk_elems` indices at a time. An empty `d` gives zeros."""
    sums = np.zeros(n_boot)
    n = len(d)
    if n == 0:
        return sums
    chunk = max(1, chunk_elems // n)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        sums[start:stop] = d[idx].sum(axis=1)
    return sums


def _frame(records: Sequence[dict]) -> pd.DataFrame:
    df = records_frame(records, "compare")
    df["id"] = df["id"].astype(str)
    df["em"] = pd.to_numeric(df["em"], errors="raise").astype(float)
    df["recall"] = pd.to_numeric(df["recall"], errors="coerce")
    dup = df.duplicated(["system", "task", "id"], keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        raise UserError(f"system {r['system']!r} has example {r['task']}/{r['id']} more than once "
                        "(read files with report.read_records, which merges identical duplicates)")
    return df


def _pairs(df: pd.DataFrame, reference: str, baseline: str) -> tuple[pd.DataFrame, dict[str, tuple[int, int]]]:
    """Inner join of the two systems on (task, id), and per task (ref-only, other-only) counts."""
    ref = df[df["system"] == reference]
    oth = df[df["system"] == baseline]
    both = ref.merge(oth, on=["task", "id"], how="outer", suffixes=("_r", "_o"), indicator=True)
    missing = {}
    for task, g in both.groupby("task", sort=False):
        missing[task] = (int((g["_merge"] == "left_only").sum()), int((g["_merge"] == "right_only").sum()))
    paired = both[both["_merge"] == "both"].copy()
    paired["group"] = paired["group_r"]
    paired.attrs["task_group"] = {t: (gr if isinstance(gr, str) else go) for t, gr, go
                                  in zip(both["task"], both["group_r"], both["group_o"])}
    bad = paired[paired["group_r"] != paired["group_o"]]
    if len(bad):
        r = bad.iloc[0]
        raise UserError(f"task {r['task']!r} is in group {r['group_r']!r} for {reference!r} but "
                        f"{r['group_o']!r} for {baseline!r}")
    return paired, missing


def paired_table(records: Sequence[dict], reference: str, baselines: Sequence[str] | None = None,
                 n_boot: int = 2000, seed: int = 0, strict: bool = False) -> pd.DataFrame:
    """Long table of paired differences `reference - baseline`, one row per (baseline, scope, metric).

    Columns (COLUMNS): reference, baseline, scope (a task, or "ALL:<group>" pooling the group's paired
    examples as report.leaderboard's group rows do), group, metric ("em" or "recall"), n (paired
    examples), n_tasks, ref and other (their means over the paired examples, %), delta = ref - other,
    lo / hi (paired bootstrap 95% percentile interval of delta), half_width = (hi - lo) / 2, p_value
    (two-sided bootstrap), significant (interval excludes 0), n_ref_only / n_other_only (examples in the
    scope that only one of the two systems has; they are not paired). `baselines` defaults to every other
    system, sorted. With `strict`, any unpaired example is a UserError instead.
    """
    df = _frame(records)
    systems = sorted(df["system"].unique())
    if reference not in systems:
        raise UserError(f"reference system {reference!r} has no records; systems: {', '.join(systems)}")
    if baselines is None:
        baselines = [s for s in systems if s != reference]
    for b in baselines:
        if b not in systems:
            raise UserError(f"baseline system {b!r} has no records; systems: {', '.join(systems)}")
        if b == reference:
            raise UserError(f"baseline {b!r} is the reference system")
    rows = []
    for b in baselines:
        pairs, missing = _pairs(df, reference, b)
        if strict and any(a or o for a, o in missing.values()):
            raise UserError("\n".join(mismatch_messages(_missing_rows(reference, b, missing))))
        rows.extend(_baseline_rows(pairs, missing, reference, b, n_boot, seed))
    out = pd.DataFrame(rows, columns=COLUMNS)
    return out


def _missing_rows(reference: str, baseline: str, missing: dict[str, tuple[int, int]]) -> pd.DataFrame:
    return pd.DataFrame([{"reference": reference, "baseline": baseline, "scope": t, "metric": "em",
                          "n_ref_only": a, "n_other_only": o} for t, (a, o) in missing.items()])


def _baseline_rows(pairs: pd.DataFrame, missing: dict, reference: str, baseline: str, n_boot: int,
                   seed: int) -> list[dict]:
    task_group = pairs.attrs["task_group"]
    tasks = _order(set(missing), TASK_ORDER)
    groups = _order(task_group.values(), GROUP_ORDER)
    rows = []
    for metric in METRICS:
        per_task = {}  # task -> (ref values, other values, bootstrap sums of d)
        for t in tasks:
            sub = pairs[pairs["task"] == t]
            r, o = sub[f"{metric}_r"].to_numpy(float), sub[f"{metric}_o"].to_numpy(float)
            keep = np.isfinite(r) & np.isfinite(o)
            r, o = r[keep], o[keep]
            per_task[t] = (r, o, boot_sums(r - o, n_boot, _rng(seed, reference, baseline, t, metric)))
        scopes = [(t, task_group.get(t, ""), [t]) for t in tasks]
        scopes += [(f"ALL:{g}", g, [t for t in tasks if task_group.get(t) == g]) for g in groups]
        scopes.append((f"ALL:{ALL}", ALL, [t for t in tasks if t in task_group]))
        for scope, group, members in scopes:
            row = _row(per_task, members, n_boot)
            a = sum(missing[t][0] for t in members)
            o = sum(missing[t][1] for t in members)
            if row is None:  # nothing paired: keep an EM row when examples went unpaired, so it is seen
                if metric != "em" or not (a or o):
                    continue
                row = {"n": 0, "n_tasks": 0, **dict.fromkeys(("ref", "other", "delta", "lo", "hi", "half_width",
                                                               "p_value"), math.nan), "significant": False}
            rows.append({"reference": reference, "baseline": baseline, "scope": scope, "group": group,
                         "metric": metric, **row, "n_ref_only": a, "n_other_only": o})
    return rows


def _row(per_task: dict, members: list[str], n_boot: int) -> dict | None:
    """Pooled paired statistics of the member tasks; None when no example is paired on this metric."""
    ref = np.concatenate([per_task[t][0] for t in members]) if members else np.zeros(0)
    oth = np.concatenate([per_task[t][1] for t in members]) if members else np.zeros(0)
    n = len(ref)
    if n == 0:
        return None
    used = [t for t in members if len(per_task[t][0])]
    delta = 100.0 * (ref.mean() - oth.mean())
    if n_boot > 0:
        boot = 100.0 * sum(per_task[t][2] for t in used) / n
        lo, hi = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
        p = min(1.0, 2.0 * min(float(np.mean(boot <= 0)), float(np.mean(boot >= 0))))
    else:
        lo = hi = p = math.nan
    return {"n": n, "n_tasks": len(used), "ref": 100.0 * ref.mean(), "other": 100.0 * oth.mean(),
            "delta": delta, "lo": lo, "hi": hi, "half_width": (hi - lo) / 2.0, "p_value": p,
            "significant": bool(lo > 0 or hi < 0)}


def mismatch_messages(df: pd.DataFrame) -> list[str]:
    """One line per (baseline, task) whose example sets differ, from a paired table's n_*_only columns."""
    out = []
    sub = df[(df["metric"] == "em") & ~df["scope"].astype(str).str.startswith("ALL:")]
    for _, r in sub.iterrows():
        if r["n_ref_only"] or r["n_other_only"]:
            out.append(f"{r['reference']} vs {r['baseline']}, task {r['scope']}: {int(r['n_ref_only'])} example(s) "
                       f"only in {r['reference']}, {int(r['n_other_only'])} only in {r['baseline']} (not paired)")
    return out


def required_n(records: Sequence[dict], reference: str, baseline: str, metric: str = "em",
               target: float = 4.0, available: int | None = None) -> pd.DataFrame:
    """Examples per task needed so the paired interval's half-width is at most `target` points, per scope.

    From a pilot run's per-example differences d (in %), with the normal approximation
    half_width ~= 1.96 * sd(d) / sqrt(n). A group of T tasks sampled stratified with m examples each has
    Var(mean d) = mean_t(var_t) / (T m), so m = ceil((1.96 / target)^2 * mean_t(var_t) / T), where var_t is
    the within-task variance of d (ddof=1; 0 for a task with one pilot example). For one task T = 1.
    Columns: scope, n_tasks, n_pilot, sd (pooled sd over the scope, %), half_width_pilot (the formula at
    the pilot sizes), per_task (m), total (m * T), reachable (m <= `available` when given, else None).
    """
    if target <= 0:
        raise UserError(f"target half-width must be > 0, got {target}")
    if metric not in METRICS:
        raise UserError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    df = _frame(records)
    for s in (reference, baseline):
        if s not in set(df["system"]):
            raise UserError(f"system {s!r} has no records")
    pairs, _ = _pairs(df, reference, baseline)
    d = 100.0 * (pairs[f"{metric}_r"].astype(float) - pairs[f"{metric}_o"].astype(float))
    pairs = pairs.assign(d=d)[np.isfinite(d)]
    var_t = {t: (float(g["d"].var(ddof=1)) if len(g) > 1 else 0.0, len(g)) for t, g in pairs.groupby("task")}
    task_group = dict(zip(pairs["task"], pairs["group"]))
    tasks = _order(var_t, TASK_ORDER)
    scopes = [(t, [t]) for t in tasks]
    scopes += [(f"ALL:{g}", [t for t in tasks if task_group[t] == g]) for g in _order(task_group.values(), GROUP_ORDER)]
    scopes.append((f"ALL:{ALL}", tasks))
    rows = []
    for scope, members in scopes:
        T = len(members)
        n_pilot = sum(var_t[t][1] for t in members)
        mean_var = float(np.mean([var_t[t][0] for t in members]))
        # the formula at the pilot's own (possibly unequal) task sizes: Var = sum n_t var_t / N^2
        var_pilot = sum(var_t[t][1] * var_t[t][0] for t in members) / n_pilot ** 2
        m = max(1, math.ceil((Z95 / target) ** 2 * mean_var / T))
        dd = pairs[pairs["task"].isin(members)]["d"]
        rows.append({"scope": scope, "n_tasks": T, "n_pilot": n_pilot,
                     "sd": float(dd.std(ddof=1)) if len(dd) > 1 else 0.0,
                     "half_width_pilot": Z95 * math.sqrt(var_pilot), "per_task": m, "total": m * T,
                     "reachable": None if available is None else bool(m <= available)})
    return pd.DataFrame(rows)


def write_csv(df: pd.DataFrame, path: str | os.PathLike, decimals: int = 2) -> Path:
    """Write the paired table atomically; floats rounded to `decimals` (p_value to 4), NaN empty."""
    out = df.copy()
    for c in out.select_dtypes("float").columns:
        out[c] = out[c].round(4 if c == "p_value" else decimals)
    return atomic_write(path, lambda f: out.to_csv(f, index=False))


def records_from_preds(preds_dir: str | os.PathLike) -> list[dict]:
    """All per-example records under a run's preds/<system>/<task>.jsonl (validated by report.read_records)."""
    files = sorted(Path(preds_dir).glob("*/*.jsonl"))
    if not files:
        raise UserError(f"{preds_dir}: no preds/<system>/<task>.jsonl files")
    return read_records(files)


def main(argv: Iterable[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m imprag_bench.harness.paired", description=__doc__.split("\n")[0])
    ap.add_argument("--preds", required=True, help="a run's preds/ folder (preds/<system>/<task>.jsonl)")
    ap.add_argument("--reference", required=True, help="label of the reference system (e.g. imprag)")
    ap.add_argument("--baselines", nargs="*", help="labels to compare against (default: every other system)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strict", action="store_true", help="refuse example sets that differ between systems")
    ap.add_argument("--out", required=True, help="CSV to write (e.g. RUN/paired.csv)")
    a = ap.parse_args(list(argv) if argv is not None else None)
    try:
        df = paired_table(records_from_preds(a.preds), a.reference, a.baselines, a.n_boot, a.seed, a.strict)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in mismatch_messages(df):
        print(f"warning: {line}", file=sys.stderr)
    write_csv(df, a.out)
    print(f"wrote {a.out} ({len(df)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())


def markdown_deltas(df: pd.DataFrame, metric: str = "em", baselines: Sequence[str] | None = None,
                    reference: str | None = None) -> str:
    """A paired table (docs/results.md) from paired.csv: one row per baseline, one column per group, cells
    "delta [lo, hi]" (reference minus baseline, %), starred where the interval excludes 0. A table with
    several references (a reproduce preset's matched `pairs`) needs `reference`."""
    refs = list(dict.fromkeys(df["reference"])) if "reference" in df else []
    if reference is None and len(refs) > 1:
        raise UserError(f"paired table has references {', '.join(map(str, refs))}: name one")
    if reference is not None:
        df = df[df["reference"] == reference]
    rows = df[(df["metric"] == metric) & df["scope"].astype(str).str.startswith("ALL:")]
    groups = [g for g in (*GROUP_ORDER, ALL) if f"ALL:{g}" in set(rows["scope"])]
    order = list(baselines) if baselines else sorted(set(rows["baseline"]))
    table = rows.set_index(["baseline", "scope"])
    lines = ["| reference − baseline | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
    for b in order:
        cells = []
        for g in groups:
            key = (b, f"ALL:{g}")
            if key not in table.index:
                cells.append("–")
                continue
            r = table.loc[key]
            star = "*" if str(r["significant"]).lower() == "true" else ""
            cells.append(f"{r['delta']:+.1f}{star} [{r['lo']:+.1f}, {r['hi']:+.1f}]")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
