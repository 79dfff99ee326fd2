"""Systems x tasks -> one JSONL line per example, resumable; then the leaderboard and plots.

Layout of a run folder:
  config.json                       the resolved configuration (written atomically)
  preds/<system>/<task>.jsonl       one line per example: prompt, query, retrieved ids, prediction, golds, scores
  leaderboard.csv, groups.png, tasks.png, report.html (harness/report_html.py)

Each batch's lines are appended and flushed together; a run killed mid-batch leaves at most one partial
line, which the resume drops. A resumed run skips the examples already written, so finishing an
interrupted run gives the same files as an uninterrupted one (systems are deterministic).

Under torchrun every rank loads and validates the same inputs; each rank answers every world_size-th batch
of a (system, task)'s remaining examples (the same batches a one-process run makes) into its own part file
preds/<system>/<task>.rank<r>.jsonl (resumed like the main file). After a barrier rank 0 merges the parts in
the examples' order into preds/<system>/<task>.jsonl (byte-identical to a one-process run's), removes them
and writes the leaderboard.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from tqdm.auto import tqdm

from imprag_bench.harness import dist, metrics, report
from imprag_bench.harness.assets import cache_root, log
from imprag_bench.harness.config import PREDICTION_KEYS, SystemSpec
from imprag_bench.harness.hardware import weight_dtype
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.locks import folder_lock
from imprag_bench.harness.io import append_durably, atomic_write, atomic_write_text
from imprag_bench.harness.options import validate, validate_run
from imprag_bench.harness.prompting import load_demos
from imprag_bench.harness.records import Example
from imprag_bench.harness.registry import SYSTEMS, TASKS
from imprag_bench.harness.system import RunContext


def select(examples: list[Example], n: int | None, seed: int, task: str) -> list[Example]:
    """A seeded, order-preserving subset of n examples (all when n is None or too large)."""
    if n is None or n >= len(examples):
        return examples
    keep = sorted(random.Random(f"{seed}:{task}").sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def resolve_task(name: str, cfg: dict):
    """(TaskSpec, data source): a registered task on the run's source, or `local:PATH` for a
    FlashRAG-schema {id, question, golden_answers} file."""
    if name.startswith("local:"):
        from imprag_bench.harness.registry import LOADERS
        return LOADERS.get("task-file")(name[len("local:"):]), "local"
    return TASKS.get(name), cfg["source"]


def read_done(path: Path, truncate: bool = True) -> dict[str, dict]:
    """Records already written for one (system, task); a trailing partial line is cut off the file
    (left in place when `truncate` is false: the file belongs to another rank)."""
    done: dict[str, dict] = {}
    if not path.exists():
        return done
    good_bytes = 0
    with open(path, "rb") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                break
            if not line.endswith(b"\n"):
                break
            done[rec["id"]] = rec
            good_bytes += len(line)
    if truncate and good_bytes != path.stat().st_size:
        with open(path, "r+b") as f:
            f.truncate(good_bytes)
    return done


def check_config(out: Path, cfg: dict) -> None:
    """Refuse to resume into a folder whose earlier run used different prediction settings."""
    path = out / "config.json"
    if not path.exists():
        return
    try:
        old = json.loads(path.read_text())
    except ValueError:
        raise UserError(f"{path}: unreadable config of an earlier run; use another --out") from None
    diff = [k for k in PREDICTION_KEYS if old.get(k) != cfg.get(k)]
    if diff:
        raise UserError(f"{out} holds a run with different settings ({', '.join(diff)}); "
                        "use another --out or the same settings to resume")


def run(cfg: dict) -> Path:
    """Evaluate every system on every task of the config; returns the run folder."""
    out = Path(cfg["out"])
    resolved = [resolve_task(t, cfg) for t in cfg["tasks"]]
    specs = [spec for spec, _ in resolved]
    systems = [SystemSpec.from_config(s) for s in cfg["systems"]]
    base_opts = {k: cfg[k] for k in ("model", "k", "batch_size", "max_new_tokens", "seed", "device", "dtype")
                 if k in cfg}
    slugs = [s.slug for s in systems]
    if len(set(slugs)) < len(slugs):
        dup = next(s.label for s in systems if slugs.count(s.slug) > 1)
        raise UserError(f"system {dup!r} is given twice (or two labels share a file name); "
                        "give one of them another label=...")
    # names, options (keys, values, checkpoint folders) and settings are checked before any work
    options_of = {s.label: validate(s.name, {**base_opts, **s.options}, s.label) for s in systems}
    validate_run(cfg)
    # one GPU per torchrun rank; after validation and the weights check, so a missing model is named first
    from imprag_bench.harness.lm import check_weights
    for model in sorted({o["model"] for o in [base_opts, *options_of.values()] if o.get("model")}):
        check_weights(model)
    if "device" in base_opts:
        base_opts["device"] = dist.rank_device(base_opts["device"])
    for opts in options_of.values():
        if "device" in opts:
            opts["device"] = dist.rank_device(opts["device"])
    # the weight dtype as resolved on this machine: recorded in config.json, so a resume elsewhere that would
    # answer in another dtype is refused (check_config)
    cfg["dtype"] = weight_dtype(cfg.get("dtype") or "auto", base_opts.get("device", "cpu"))
    for opts in options_of.values():
        if opts.get("dtype", "auto") == "auto":
            opts["dtype"] = weight_dtype("auto", opts.get("device", "cpu"))
    data = {}
    for spec, source in resolved:
        n = cfg.get("local_n") if source == "local" else cfg.get("n")  # a preset's n: built-in tasks only
        data[spec.name] = (select(spec.load(source, cfg["split"]), n, cfg["seed"], spec.name),
                           load_demos(spec, source, cfg))
    corpus = None
    if any(s.name != "closed-book" for s in systems):
        from imprag_bench.harness.corpus import load_corpus
        corpus = load_corpus(cfg["corpus"], cfg.get("corpus_limit"))
    check_config(out, cfg)  # all input is validated (on every rank) before anything is written
    with folder_lock(out, "run folder"):  # one writer per run folder (harness.locks)
        return _run(cfg, out, systems, specs, data, options_of, corpus)


def _run(cfg: dict, out: Path, systems, specs, data, options_of, corpus) -> Path:
    rank, size = dist.rank_world()
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        atomic_write_text(out / "config.json", json.dumps(cfg, indent=1, sort_keys=True))

    chunk = int(cfg.get("batch_size", 8)) * 4
    for sspec in systems:
        todo = {}
        for spec in specs:
            path = out / "preds" / sspec.slug / f"{spec.name}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            done = _read_all_done(path, rank, size)
            rest = [ex for ex in data[spec.name][0] if ex.id not in done]
            batches = [rest[s:s + chunk] for s in range(0, len(rest), chunk)][rank::size]
            todo[spec.name] = (path if size == 1 else _part(path, rank), batches)
        dist.barrier()  # every rank has read every part file before any rank appends to its own
        if not dist.any_rank(any(b for _, b in todo.values())):
            log(f"{sspec.label}: all tasks already done")
            continue
        options = options_of[sspec.label]
        system = SYSTEMS.get(sspec.name)(options)
        ctx = RunContext(options=options, cache_dir=Path(cfg.get("cache_dir") or cache_root()),
                         demos={name: demos for name, (_, demos) in data.items()}, seed=cfg["seed"])
        system.prepare(corpus, ctx)
        for spec in specs:
            path, batches = todo[spec.name]
            _run_task(system, sspec.label, spec, batches, path, corpus, int(options.get("k", 5)))
    dist.barrier()
    if rank == 0:
        for sspec in systems:
            for spec in specs:
                merge_parts(out / "preds" / sspec.slug / f"{spec.name}.jsonl", data[spec.name][0])
        finish(out, corpus)
    dist.barrier()
    return out


def _part(path: Path, rank: int) -> Path:
    return path.with_name(f"{path.stem}.rank{rank}.jsonl")


def _parts(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.stem}.rank*.jsonl"))


def _read_all_done(path: Path, rank: int, size: int) -> dict[str, dict]:
    """Ids done in the main file or any rank's part file (parts of an earlier run with another world
    size count too). Only a file's writer cuts its partial last line: the main file in one process,
    this rank's part under torchrun."""
    done = read_done(path, truncate=size == 1)
    for p in _parts(path):
        done.update(read_done(p, truncate=size == 1 or p == _part(path, rank)))
    return done


def merge_parts(path: Path, examples: list[Example]) -> None:
    """Fold the part files into `path`: every complete line of the main file and the parts, in the
    examples' order, then remove the parts. No parts: the file is left untouched."""
    parts = _parts(path)
    if not parts:
        return
    lines: dict[str, bytes] = {}
    for p in [path, *parts]:
        if not p.exists():
            continue
        with open(p, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    lines.setdefault(json.loads(line)["id"], line)
                except ValueError:
                    break
    order = [ex.id for ex in examples if ex.id in lines]
    missing = len(examples) - len(order)
    if missing:
        log(f"{path}: {missing} examples not answered yet; merged what the parts hold")
    atomic_write(path, lambda f: f.write(b"".join(lines[i] for i in order)), binary=True)
    for p in parts:
        p.unlink()


def _run_task(system, label, spec, batches, path, corpus, k):
    bar = tqdm(total=sum(len(b) for b in batches), desc=f"{label} / {spec.name}", unit="ex", dynamic_ncols=True)
    with open(path, "a") as f:
        for batch in batches:
            preds = system.predict(batch)
            if [p.id for p in preds] != [ex.id for ex in batch]:
                raise RuntimeError(f"system {label} returned predictions out of order or incomplete")
            lines = []
            for ex, p in zip(batch, preds):
                top = p.retrieved[:k]
                texts = [q.as_text() for q in corpus.get_many(top)] if (corpus is not None and p.retrieved) else None
                scores = metrics.score_example(p.text, ex.golds, texts, k, spec.recall)
                lines.append(json.dumps({
                    "system": label, "task": spec.name, "group": spec.group, "id": ex.id, "prompt": ex.prompt,
                    "query": p.query, "retrieved": top, "prediction": p.text, "golds": ex.golds, **scores,
                }, ensure_ascii=False) + "\n")
            append_durably(f, path, "".join(lines))
            bar.update(len(batch))
    bar.close()


def finish(out: Path, corpus=None) -> None:
    """Leaderboard CSV, plots and report.html from every per-example file of the run.

    The HTML page is a by-product: if it cannot be written (e.g. a passage id missing from `corpus`),
    the run still succeeds and the reason is logged."""
    files = sorted((out / "preds").glob("*/*.jsonl"))
    records = report.read_records(files)
    if not records:
        return
    df = report.leaderboard(records)
    report.write_csv(df, out / "leaderboard.csv")
    from imprag_bench.harness import plots
    plots.plot_groups(df, out / "groups.png")
    plots.plot_tasks(df, out / "tasks.png")
    log(f"leaderboard: {out / 'leaderboard.csv'}")
    from imprag_bench.harness.report_html import write_report
    try:
        log(f"report: {write_report(out, corpus=corpus)}")
    except UserError as e:
        log(f"report.html not written: {e}")
