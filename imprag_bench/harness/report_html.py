"""One self-contained HTML results page per run folder: leaderboard, chart, per-example browser, run facts.

Reads what the runner writes (config.json, preds/<system>/<task>.jsonl, leaderboard.csv) plus, when
present, manifest.json and paired.csv (ImpRAG minus each baseline), and writes one HTML file that opens
from disk with no server and no network: the data is inlined as JSON in <script type="application/json">
(every "<", ">" and "&" escaped as \\u003c..., so no text in the data can close the tag), the CSS and the
vanilla JS come from report_assets/ and are inlined too, and the chart is an inline SVG.

Size: passage texts are included once each, only those some system retrieved, and examples reference
them by index; an explicit query equal to the prompt is stored as 1 instead of a second copy.

Bad or partial folders (missing preds/, a broken JSONL line, no leaderboard, an unloadable corpus) raise
UserError naming the file, before anything is written; the page is written atomically.
"""
from __future__ import annotations

import json
import math
import re
import shlex
from importlib import resources
from pathlib import Path

import pandas as pd

from imprag_bench.harness import report
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.io import atomic_write_text
from imprag_bench.harness.report_svg import group_chart

LEADERBOARD_COLUMNS = ("system", "task", "em", "em_lo", "em_hi", "recall", "recall_lo", "recall_hi")
PAIRED_COLUMNS = ("baseline", "scope", "metric", "delta", "lo", "hi")  # harness.paired's table
PAIRED_SHOWN = ("reference", "baseline", "scope", "metric", "n", "ref", "other", "delta", "lo", "hi", "significant")
SAME_AS_PROMPT = 1  # the stored "query" of an example whose explicit query is its prompt


def _clean(v):
    """JSON-safe scalar: NaN -> None, numpy scalars -> Python."""
    if isinstance(v, float) and math.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict]:
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot read as CSV ({e})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    return [{k: _clean(v) for k, v in row.items()} for row in df.to_dict("records")]


def _check_extras(rec: dict, where: str) -> None:
    """The browser's fields beyond the leaderboard's: prompt, query, retrieved, prediction, golds."""
    def bad(key, want):
        raise UserError(f"{where}: {key!r} must be {want}, got {rec.get(key)!r}")
    for key in ("prompt", "prediction"):
        if not isinstance(rec.get(key), str):
            bad(key, "a string")
    if rec.get("query") is not None and not isinstance(rec["query"], str):
        bad("query", "a string or null")
    for key in ("retrieved", "golds"):
        v = rec.get(key)
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            bad(key, "a list of strings")


def read_predictions(run_dir: Path) -> list[dict]:
    """Every validated per-example record of the run (file:line named on any error)."""
    files = sorted((run_dir / "preds").glob("*/*.jsonl"))
    if not (run_dir / "preds").is_dir():
        raise UserError(f"{run_dir / 'preds'}: no such folder; is {run_dir} a run folder (imprag-bench run --out)?")
    if not files:
        raise UserError(f"{run_dir / 'preds'}: no per-example files (preds/<system>/<task>.jsonl)")
    records = []
    for path in files:
        for rec, where in report._read_one(path):
            _check_extras(rec, where)
            records.append(rec)
    return records


def _system_configs(cfg: dict) -> dict[str, dict]:
    """Per system label: its name and the options it ran with (the run's shared ones, then its own)."""
    from imprag_bench.harness.config import SystemSpec
    base = {k: cfg[k] for k in ("model", "k", "batch_size", "max_new_tokens", "seed", "device", "dtype") if k in cfg}
    out = {}
    for text in cfg.get("systems") or []:
        try:
            spec = SystemSpec.parse(str(text))
        except UserError:
            continue
        out[spec.label] = {"spec": str(text), "system": spec.name, "options": {**base, **spec.options}}
    return out


def command_from_config(cfg: dict) -> str:
    """The `imprag-bench run` command line that resolves to this config (for the run-facts section)."""
    parts = ["imprag-bench", "run"]
    flags = [("preset", "--preset"), ("split", "--split"), ("n", "--n"), ("k", "--k"), ("fewshot", "--fewshot"),
             ("model", "--model"), ("source", "--source"), ("corpus", "--corpus"),
             ("corpus_limit", "--corpus-limit"), ("batch_size", "--batch-size"),
             ("max_new_tokens", "--max-new-tokens"), ("device", "--device"), ("dtype", "--dtype"), ("seed", "--seed"),
             ("out", "--out")]
    for key, lst in (("tasks", "--tasks"), ("systems", "--systems")):
        if cfg.get(key):
            parts += [lst, *map(str, cfg[key])]
    for key, flag in flags:
        if cfg.get(key) is not None:
            parts += [flag, str(cfg[key])]
    if "n" in cfg and cfg["n"] is None:
        parts.append("--all")
    return " ".join(shlex.quote(p) for p in parts)


def _passages(ids: list[str], cfg: dict, corpus, with_text: bool, where: Path) -> list[list]:
    """[[id, title, text], ...] for the referenced ids (just [id] without texts)."""
    if not with_text or not ids:
        return [[pid] for pid in ids]
    if corpus is None:
        name = cfg.get("corpus")
        if not name:
            raise UserError(f"{where}: names no corpus, so passage texts cannot be shown; pass --no-passages")
        from imprag_bench.harness.corpus import load_corpus
        try:
            corpus = load_corpus(name, cfg.get("corpus_limit"))
        except Exception as e:  # noqa: BLE001 - any failure to load becomes one clear message
            raise UserError(f"cannot load corpus {name!r} named in {where} ({e}); "
                            "pass --no-passages to write the report without passage texts") from None
    missing = [pid for pid in ids if pid not in corpus._by_id]
    if missing:
        raise UserError(f"{len(missing)} retrieved passage id(s) are not in corpus {corpus.name!r} "
                        f"(first: {missing[0]!r}); is it the corpus of the run in {where}? "
                        "Pass --no-passages to skip passage texts")
    return [[pid, p.title, p.text] for pid, p in zip(ids, corpus.get_many(ids))]


def collect(run_dir: str | Path, passages: bool = True, corpus=None) -> dict:
    """Everything the page shows, as one JSON-able dict (see report.js for how it is read)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir}: no such run folder")
    cfg_path = run_dir / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{cfg_path}: missing; is {run_dir} a run folder (imprag-bench run --out)?")
    cfg = _read_json(cfg_path)
    if not isinstance(cfg, dict):
        raise UserError(f"{cfg_path}: expected a JSON object")
    records = read_predictions(run_dir)
    lb_path = run_dir / "leaderboard.csv"
    if not lb_path.is_file():
        raise UserError(f"{lb_path}: missing; write it with `imprag-bench leaderboard {run_dir} --out {lb_path}`")
    leaderboard = _read_csv(lb_path, LEADERBOARD_COLUMNS)
    paired = _read_csv(run_dir / "paired.csv", PAIRED_COLUMNS) if (run_dir / "paired.csv").is_file() else None
    if paired is not None:
        paired = [{k: row[k] for k in PAIRED_SHOWN if k in row} for row in paired]
    manifest = _read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").is_file() else None

    systems = sorted({r["system"] for r in records} | {r["system"] for r in leaderboard})
    task_group = {r["task"]: r["group"] for r in records}
    tasks = report._order(task_group, report.TASK_ORDER)
    lb_tasks = {r["task"] for r in leaderboard}
    groups = [f"ALL:{g}" for g in (*report.GROUP_ORDER, report.ALL)] + sorted(
        t for t in lb_tasks if t.startswith("ALL:") and t[4:] not in (*report.GROUP_ORDER, report.ALL))
    groups = [g for g in groups if g in lb_tasks]

    pid_index: dict[str, int] = {}
    examples: dict[str, dict] = {}
    for t in tasks:
        examples[t] = {"ids": [], "prompt": [], "golds": [], "sys": {}}
    row_of: dict[tuple[str, str], int] = {}
    for r in records:
        ex = examples[r["task"]]
        key = (r["task"], r["id"])
        if key not in row_of:
            row_of[key] = len(ex["ids"])
            ex["ids"].append(r["id"])
            ex["prompt"].append(r["prompt"])
            ex["golds"].append(r["golds"])
        i = row_of[key]
        q = r["query"]
        if q is not None and q == ex["prompt"][i]:
            q = SAME_AS_PROMPT
        retrieved = [pid_index.setdefault(pid, len(pid_index)) for pid in r["retrieved"]]
        col = ex["sys"].setdefault(r["system"], [])
        col.extend([None] * (i + 1 - len(col)))
        col[i] = [q, retrieved, r["prediction"], r["em"], r["recall"]]
    for ex in examples.values():
        for col in ex["sys"].values():
            col.extend([None] * (len(ex["ids"]) - len(col)))

    return {
        "title": run_dir.resolve().name,
        "systems": systems,
        "tasks": [{"name": t, "group": task_group[t], "n": len(examples[t]["ids"])} for t in tasks],
        "groups": groups,
        "leaderboard": leaderboard,
        "paired": paired,
        "config": cfg,
        "system_configs": _system_configs(cfg),
        "manifest": manifest,
        "command": (manifest or {}).get("command") if isinstance(manifest, dict) and manifest.get("command")
        else command_from_config(cfg),
        "command_source": "manifest.json" if isinstance(manifest, dict) and manifest.get("command") else "config.json",
        "passages": _passages(list(pid_index), cfg, corpus, passages, cfg_path),
        "passage_texts": bool(passages and pid_index),
        "examples": examples,
    }


def _asset(name: str) -> str:
    return resources.files("imprag_bench.harness").joinpath("report_assets", name).read_text(encoding="utf-8")


def json_for_script(data) -> str:
    """JSON safe inside <script type="application/json">: no "<", ">" or "&" survives literally."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def render(data: dict) -> str:
    """The page: template with CSS, JS, chart SVG and data filled in (in one pass, so no value is re-scanned)."""
    from html import escape
    em_rows = data["leaderboard"]
    fills = {
        "TITLE": escape(f"imprag-bench · {data['title']}"),
        "CSS": _asset("report.css"),
        "JS": _asset("report.js"),
        "CHART": group_chart(em_rows, data["systems"], data["groups"], "em") if data["groups"] else
        "<p class='muted'>No group rows in leaderboard.csv.</p>",
        "DATA": json_for_script(data),
    }
    return re.sub(r"@@(TITLE|CSS|JS|CHART|DATA)@@", lambda m: fills[m.group(1)], _asset("template.html"))


def write_report(run_dir: str | Path, out: str | Path | None = None, passages: bool = True, corpus=None) -> Path:
    """Collect, render and atomically write the page (default RUN_DIR/report.html); returns its path."""
    run_dir = Path(run_dir)
    html = render(collect(run_dir, passages=passages, corpus=corpus))
    return atomic_write_text(Path(out) if out else run_dir / "report.html", html)
