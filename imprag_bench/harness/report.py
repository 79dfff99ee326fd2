"""Per-example score records (the runner's JSONL) -> one leaderboard with bootstrap confidence intervals.

A record is a dict with the keys in REQUIRED: system, task, group, id, em, f1 (numbers in [0, 1]) and
recall (a number in [0, 1], or None where recall does not apply, e.g. FEVER or closed-book). Other keys
are carried along and ignored.

Scores in the leaderboard are percentages (0-100). Group rows ("ALL:seen", "ALL:unseen-qa",
"ALL:unseen-format", "ALL:all") pool the per-example scores of the group's tasks, i.e. they weight tasks
by size; `macro_em` on those rows is the unweighted mean of the per-task EMs (the paper's "avg" column).
"""
from __future__ import annotations

import math
import os
import zlib
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.io import atomic_write, iter_jsonl

REQUIRED = ("system", "task", "group", "id", "em", "f1", "recall")
GROUP_ORDER = ("seen", "unseen-qa", "unseen-format")
TASK_ORDER = ("nq", "hotpotqa", "simpleqa", "2wiki", "trex", "zsre", "fever", "aida")
ALL = "all"
COLUMNS = ["system", "task", "group", "n", "n_tasks", "em", "em_lo", "em_hi", "f1", "recall",
           "recall_lo", "recall_hi", "recall_n", "macro_em", "distinct_top1"]


def _num(value, key: str, where: str, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0.0 <= value <= 1.0):
        want = "a number in [0, 1]" + (" or null" if allow_none else "")
        raise UserError(f"{where}: {key!r} must be {want}, got {value!r}")
    return float(value)


def _read_one(path: Path) -> list[tuple[dict, str]]:
    """Validated records of one JSONL file, each with its "file:line" location."""
    out = []
    for where, rec in iter_jsonl(path):
        missing = [k for k in REQUIRED if k not in rec]
        if missing:
            raise UserError(f"{where}: record is missing key(s) {', '.join(missing)}")
        for k in ("system", "task", "group"):
            if not isinstance(rec[k], str) or not rec[k]:
                raise UserError(f"{where}: {k!r} must be a non-empty string, got {rec[k]!r}")
        rec = dict(rec, id=str(rec["id"]), em=_num(rec["em"], "em", where, False),
                   f1=_num(rec["f1"], "f1", where, False), recall=_num(rec["recall"], "recall", where, True))
        out.append((rec, where))
    return out


def read_records(paths: Iterable[str | os.PathLike] | str | os.PathLike) -> list[dict]:
    """Read and validate one or more per-example JSONL files into one list of records.

    Errors (UserError) name the file and line: malformed JSON, missing keys, out-of-range scores. The same
    (system, task, id) seen twice is kept once if the two records agree on every REQUIRED key, and is a
    UserError naming both places otherwise, so overlapping runs are never double-counted or mixed.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    seen: dict[tuple[str, str, str], tuple[dict, str]] = {}
    task_group: dict[str, tuple[str, str]] = {}
    records = []
    for p in paths:
        for rec, where in _read_one(Path(p)):
            key = (rec["system"], rec["task"], rec["id"])
            if key in seen:
                first, first_where = seen[key]
                if any(first[k] != rec[k] for k in REQUIRED):
                    raise UserError(f"conflicting records for system {key[0]!r}, task {key[1]!r}, id {key[2]!r}: "
                                    f"{first_where} and {where} differ")
                continue
            g = task_group.setdefault(rec["task"], (rec["group"], where))
            if g[0] != rec["group"]:
                raise UserError(f"task {rec['task']!r} is in group {g[0]!r} at {g[1]} but {rec['group']!r} at {where}")
            seen[key] = (rec, where)
            records.append(rec)
    return records


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A generator per (seed, system, row, metric): one row's interval never depends on the other rows."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode("utf-8")) for n in names)])


def _boot_ci(strata: Sequence[np.ndarray], n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile interval of the pooled mean, resampling examples within each stratum (task)."""
    total = sum(len(s) for s in strata)
    if n_boot <= 0 or total == 0:
        return math.nan, math.nan
    sums = np.zeros(n_boot)
    for s in strata:
        if len(s) == 0:
            continue
        chunk = max(1, 2_000_000 // len(s))  # bound memory at ~16 MB of indices
        for start in range(0, n_boot, chunk):
            stop = min(n_boot, start + chunk)
            idx = rng.integers(0, len(s), size=(stop - start, len(s)))
            sums[start:stop] += s[idx].sum(axis=1)
    lo, hi = np.percentile(sums / total, [2.5, 97.5])
    return float(lo), float(hi)


def _row(system: str, task: str, group: str, by_task: dict[str, pd.DataFrame], n_boot: int, seed: int) -> dict:
    em = [d["em"].to_numpy(float) for d in by_task.values()]
    rc = [d["recall"].dropna().to_numpy(float) for d in by_task.values()]
    n, rn = sum(len(x) for x in em), sum(len(x) for x in rc)
    top1 = pd.concat([d["top1"] for d in by_task.values()]).dropna()  # a collapsed retriever shows here
    em_lo, em_hi = _boot_ci(em, n_boot, _rng(seed, system, task, "em"))
    r_lo, r_hi = _boot_ci(rc, n_boot, _rng(seed, system, task, "recall"))
    pct = lambda v: 100.0 * v  # noqa: E731
    return {
        "system": system, "task": task, "group": group, "n": n, "n_tasks": len(by_task),
        "em": pct(np.concatenate(em).mean()), "em_lo": pct(em_lo), "em_hi": pct(em_hi),
        "f1": pct(pd.concat(list(by_task.values()))["f1"].mean()),
        "recall": pct(np.concatenate(rc).mean()) if rn else math.nan,
        "recall_lo": pct(r_lo), "recall_hi": pct(r_hi), "recall_n": rn,
        "macro_em": pct(np.mean([x.mean() for x in em])) if task.startswith("ALL:") else math.nan,
        "distinct_top1": int(top1.nunique()) if len(top1) else math.nan,
    }


def _order(values: Iterable[str], canonical: Sequence[str]) -> list[str]:
    vals = set(values)
    return [v for v in canonical if v in vals] + sorted(vals - set(canonical))


def records_frame(records: Sequence[dict], what: str) -> pd.DataFrame:
    """The REQUIRED fields of per-example records as a frame; a record missing one is a UserError naming it."""
    if not records:
        raise UserError(f"no records to {what}")
    for i, r in enumerate(records):
        missing = [k for k in REQUIRED if k not in r]
        if missing:
            raise UserError(f"record {i} ({r.get('system')!r}, {r.get('task')!r}, {r.get('id')!r}) "
                            f"is missing key(s) {', '.join(missing)}")
    return pd.DataFrame([{**{k: r[k] for k in REQUIRED}, "top1": (r.get("retrieved") or [None])[0]}
                         for r in records])


def leaderboard(records: Sequence[dict], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Long-format leaderboard: one row per (system, task), then per (system, group) and "ALL:all".

    Columns: system, task, group, n, n_tasks, em, em_lo, em_hi, f1, recall, recall_lo, recall_hi,
    recall_n, macro_em, distinct_top1 (how many different passages the row's examples retrieve first: a
    retriever that returns one passage for every question shows as 1; NaN without retrieval). Scores are
    percentages. Group rows pool per-example scores (never averages of
    averages); `macro_em` (group rows only) is the mean of the per-task EMs, the paper's "avg".
    Recall ignores None entries; it and its interval are NaN when no example has recall; recall_n counts
    the examples that have it. Intervals: 95% percentile bootstrap over examples with `n_boot`
    resamples, stratified by task on group rows (task sizes stay fixed); deterministic for a given seed,
    and each row's interval depends only on its own examples. Systems are sorted, tasks in paper order.
    """
    df = records_frame(records, "report")
    df["recall"] = pd.to_numeric(df["recall"], errors="coerce")
    tasks = _order(df["task"], TASK_ORDER)
    groups = _order(df["group"], GROUP_ORDER)
    rows = []
    for system in sorted(df["system"].unique()):
        sdf = df[df["system"] == system]
        parts = {t: d for t, d in sdf.groupby("task", sort=False)}
        present = [t for t in tasks if t in parts]
        for t in present:
            rows.append(_row(system, t, parts[t]["group"].iloc[0], {t: parts[t]}, n_boot, seed))
        for g in groups:
            members = {t: parts[t] for t in present if parts[t]["group"].iloc[0] == g}
            if members:
                rows.append(_row(system, f"ALL:{g}", g, members, n_boot, seed))
        rows.append(_row(system, f"ALL:{ALL}", ALL, {t: parts[t] for t in present}, n_boot, seed))
    board = pd.DataFrame(rows, columns=COLUMNS)
    board["distinct_top1"] = board["distinct_top1"].astype("Int64")  # a count (empty where nothing is retrieved)
    return board


def write_csv(df: pd.DataFrame, path: str | os.PathLike, decimals: int = 2) -> Path:
    """Write the leaderboard atomically (temporary file in the same folder, then os.replace).

    Floats are rounded to `decimals` places (percentages: 0.01 points is plenty); NaN is written empty.
    Why atomic: a crash or a concurrent reader never sees half a leaderboard.
    """
    out = df.copy()
    floats = out.select_dtypes("float").columns
    out[floats] = out[floats].round(decimals)
    return atomic_write(path, lambda f: out.to_csv(f, index=False))


def merge(paths: Sequence[str | os.PathLike], out_csv: str | os.PathLike, n_boot: int = 1000,
          seed: int = 0) -> pd.DataFrame:
    """Merge the per-example files of several runs into one leaderboard CSV and return the table.

    The same (system, task, id) in two runs is kept once if identical, else a UserError names both files.
    """
    df = leaderboard(read_records(paths), n_boot=n_boot, seed=seed)
    write_csv(df, out_csv)
    return df


def markdown_groups(df: pd.DataFrame, systems: Sequence[str] | None = None) -> str:
    """A results table (docs/results.md) from a leaderboard: one row per system, one column per group, cells
    "EM [lo, hi] (recall)" in %, so that a docs table can be regenerated from (and checked against) the CSV."""
    groups = [g for g in (*GROUP_ORDER, ALL) if f"ALL:{g}" in set(df["task"])]
    rows = df[df["task"].isin([f"ALL:{g}" for g in groups])].set_index(["system", "task"])
    order = list(systems) if systems else sorted({s for s, _ in rows.index})
    lines = ["| system | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]
    for s in order:
        cells = []
        for g in groups:
            r = rows.loc[(s, f"ALL:{g}")]
            cell = f"{r['em']:.1f} [{r['em_lo']:.1f}, {r['em_hi']:.1f}]"
            cells.append(cell + (f" ({r['recall']:.1f})" if pd.notna(r["recall"]) else ""))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
