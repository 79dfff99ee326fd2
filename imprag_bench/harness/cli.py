"""imprag-bench command line: tasks | systems | run | train | leaderboard | plot | report.

Bad input (unknown names, malformed files, missing fields) prints one clear message and exits with code 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imprag_bench.harness.errors import UserError


def _cmd_tasks(args) -> None:
    from imprag_bench.harness.registry import TASKS
    print(f"{'task':10} {'group':14} {'sources':14} {'recall':6} description")
    for name in TASKS.names():
        t = TASKS.get(name)
        print(f"{name:10} {t.group:14} {','.join(t.loaders):14} {'yes' if t.recall else 'no':6} {t.description}")
        if args.verbose:
            print(f"{'':10} template: {t.template}\n{'':10} queries: {dict(t.queries)}")


def _cmd_systems(args) -> None:
    from imprag_bench.harness.options import RUN_OPTIONS, accepted
    from imprag_bench.harness.registry import SYSTEMS
    for name in SYSTEMS.names():
        doc = (SYSTEMS.get(name).__doc__ or "").strip().split("\n")[0]
        print(f"{name:14} {doc}")
        if args.verbose:
            own = accepted(SYSTEMS.get(name))
            for key, opt in ({} if own is None else own).items():
                if key not in RUN_OPTIONS:
                    print(f"{'':14}   {key}: {opt.describe()}")
    if args.verbose:
        print("every system also accepts the run-wide settings:")
        for key, opt in RUN_OPTIONS.items():
            print(f"{'':14}   {key}: {opt.describe()}")


def _split_specs(text: str) -> list[str]:
    """Whitespace-separated system specs; whitespace inside quotes belongs to a value."""
    import re
    return re.findall(r"(?:[^\s\"']|\"[^\"]*\"?|'[^']*'?)+", text)


def _int_at_least(low: int):
    """An argparse type: an integer >= low, with one message saying so."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors come out as the CLI's other errors: one `imprag-bench: error:` line, exit 2.
    No abbreviations: an option is spelled out, so that what a command line means never depends on which other
    options exist (and the same words mean the same under torchrun)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.print_usage(sys.stderr)
        raise UserError(message)


def _resolve(args) -> dict:
    from imprag_bench.harness.config import load_preset
    cfg = load_preset(args.preset)
    for key in ("tasks", "systems"):
        value = getattr(args, key)
        if value:
            cfg[key] = [v for part in value for v in _split_specs(part)]
    for key in ("n", "k", "fewshot", "model", "out", "source", "corpus", "batch_size", "seed", "cache_dir",
                "max_new_tokens", "corpus_limit", "device", "dtype", "split"):
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    if args.all:
        cfg["n"] = None
    if any(str(t).startswith("local:") for t in cfg.get("tasks") or []):
        cfg["local_n"] = args.n  # a local file is evaluated whole unless --examples is given here
    return cfg


def _cmd_run(args) -> None:
    from imprag_bench.harness.runner import run
    cfg = _resolve(args)
    out = run(cfg)
    lb = out / "leaderboard.csv"
    if lb.exists():
        import pandas as pd
        df = pd.read_csv(lb)
        cols = [c for c in ("system", "task", "n", "em", "recall") if c in df.columns]
        print(df[cols].to_string(index=False))


def _cmd_leaderboard(args) -> None:
    from imprag_bench.harness import report
    files = [p for x in args.runs for p in (sorted(Path(x).glob("preds/*/*.jsonl")) if Path(x).is_dir() else [Path(x)])]
    if not files:
        raise UserError(f"no per-example files found under {', '.join(args.runs)}")
    df = report.merge(files, args.out)
    print(df.to_string(index=False))


def _cmd_plot(args) -> None:
    import pandas as pd
    from imprag_bench.harness import plots
    path = Path(args.csv)
    if not path.is_file():
        raise UserError(f"{path}: no such leaderboard CSV")
    df = pd.read_csv(path)
    out = Path(args.out or path.parent)
    out.mkdir(parents=True, exist_ok=True)
    plots.plot_groups(df, out / "groups.png")
    plots.plot_tasks(df, out / "tasks.png")
    print(f"wrote {out / 'groups.png'} and {out / 'tasks.png'}")


def _cmd_report(args) -> None:
    from imprag_bench.harness.report_html import write_report
    path = write_report(args.run_dir, args.out, passages=not args.no_passages)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def _cmd_train(args) -> None:
    from imprag_bench.harness.registry import TRAINERS
    trainer = TRAINERS.get(args.system)
    cfg = trainer.config(args.preset, args.set, args.out, args.recipe)
    print(f"{args.system}: budget {cfg.preset}, recipe {cfg.recipe}; additions to the paper's recipe: "
          f"{', '.join(cfg.additions) or 'none'}")
    ck = trainer.train(cfg)
    from imprag_bench.harness.config import format_value
    import shlex
    spec = shlex.quote(f"{args.system}:checkpoint={format_value(str(ck))}")
    print(f"checkpoint: {ck}\nevaluate it with: imprag-bench run --systems {spec}")


POSITIVE, NON_NEGATIVE = _int_at_least(1), _int_at_least(0)

SYSTEMS_HELP = """system specs (--systems, or a preset's systems list):
  name                       e.g. bm25
  name:key=value,key=value   e.g. dense:query=oracle,k=10
  A comma starts a new option only where key= follows it, so values keep their commas:
    dense:encoder=facebook/contriever-msmarco,index=IVF65536_HNSW32,PQ64
  Quote a value that itself contains ',key=' or spaces (quote the whole spec for the shell):
    'imprag:checkpoint="runs/a b",label=imprag-1'
  label=NAME sets the leaderboard's system column (default: the spec text).
  Unknown keys and bad values are refused before the run starts; `imprag-bench systems -v` lists each
  system's options. In a preset a system may also be a mapping: {name: dense, index: "IVF65536_HNSW32,PQ64"}.
"""


def _cmd_reproduce(args) -> None:
    import shlex

    from imprag_bench.harness.reproduce import folder_files, reproduce
    out = args.out or f"runs/reproduce-{args.preset}"
    command = "imprag-bench " + " ".join(shlex.quote(a) for a in (args.argv or []))
    done = reproduce(args.preset, out, command, args.systems, args.train_set, args.run_set, costs=not args.no_costs,
                     eval_set=args.eval_set)
    print(f"wrote {done}: {folder_files(done)}")


def build_parser() -> argparse.ArgumentParser:
    plugins = argparse.ArgumentParser(add_help=False)
    plugins.add_argument("--include", action="append", default=[], metavar="FILE_OR_MODULE",
                         help="import a .py file or module that registers tasks or systems (repeatable)")
    p = _Parser(prog="imprag-bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    _add = sub.add_parser
    sub.add_parser = lambda *a, **k: _add(*a, parents=[plugins], **k)  # every command takes --include
    t = sub.add_parser("tasks", help="list the registered tasks")
    t.add_argument("-v", "--verbose", action="store_true", help="show templates and query templates")
    t.set_defaults(fn=_cmd_tasks)
    sy = sub.add_parser("systems", help="list the registered systems")
    sy.add_argument("-v", "--verbose", action="store_true", help="show each system's options")
    sy.set_defaults(fn=_cmd_systems)

    r = sub.add_parser("run", help="evaluate systems x tasks, write per-example JSONL, leaderboard and plots",
                       epilog=SYSTEMS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--preset", default="quick", help="quick (default) | full | paper")
    r.add_argument("--tasks", nargs="+", help="task names (default: the preset's)")
    r.add_argument("--systems", nargs="+", help="system specs: name or name:key=value,... (see below)")
    r.add_argument("--split", choices=("train", "dev", "test"), help="evaluation split (default: the preset's)")
    r.add_argument("--examples", "-n", "--n", type=POSITIVE, dest="n",
                   help="examples per task (under torchrun write --examples or -n: torchrun's own parser reads --n "
                        "as an abbreviation of its options and stops)")
    r.add_argument("--all", action="store_true", help="every example of the split")
    r.add_argument("--k", type=POSITIVE, help="passages retrieved and read")
    r.add_argument("--fewshot", type=NON_NEGATIVE, help="demonstrations from the train split")
    r.add_argument("--model", help="offline alias (smollm2-135m), local folder or hub id")
    r.add_argument("--source", help="task data: minikilt | hub | local")
    r.add_argument("--corpus", help="corpus name (minikilt | hub) or a {id,title,text} JSONL/Parquet file")
    r.add_argument("--corpus-limit", type=POSITIVE, dest="corpus_limit", help="use only the first N passages")
    r.add_argument("--batch-size", type=POSITIVE, dest="batch_size")
    r.add_argument("--max-new-tokens", type=POSITIVE, dest="max_new_tokens")
    r.add_argument("--device", help="cpu | cuda")
    r.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"),
                   help="LM weight dtype (default auto: bfloat16 where the device computes it natively)")
    r.add_argument("--seed", type=int)
    r.add_argument("--out", help="run folder (resumes if it exists)")
    r.add_argument("--cache-dir", dest="cache_dir", help="index cache (default: the user cache)")
    r.set_defaults(fn=_cmd_run)

    tr = sub.add_parser("train", help="train a system (imprag, ra-it, ra-dit, ra-dit-llama); resumable")
    tr.add_argument("system")
    tr.add_argument("--preset", default="quick", help="the training budget: quick (default) | full | paper")
    tr.add_argument("--recipe", help="paper | cpu-additions (default: the budget's first for the system)")
    tr.add_argument("--out", help="training folder (resumes from its checkpoint)")
    tr.add_argument("--set", nargs="+", metavar="KEY=VALUE", help="override preset settings")
    tr.set_defaults(fn=_cmd_train)

    rp = sub.add_parser("reproduce", help="the headline experiment: train every system at one budget, evaluate, "
                                          "paired statistics, figure, costs, manifest; resumable")
    rp.add_argument("--preset", default="cpu",
                    help="presets/reproduce/<name>.yaml: cpu (default, the headline) | smoke | paper | paper-8b "
                         "(GPUs) | the analyses layer-sweep | objective-ablation | learning-curve | pooling")
    rp.add_argument("--out", help="results folder (default runs/reproduce-<preset>; the same command resumes it)")
    rp.add_argument("--systems", nargs="+", metavar="LABEL", help="only these systems (the reference stays)")
    rp.add_argument("--train-set", nargs="+", default=[], metavar="KEY=VALUE", dest="train_set",
                    help="override training settings of every trained system (e.g. steps=2)")
    rp.add_argument("--run-set", nargs="+", default=[], metavar="KEY=VALUE", dest="run_set",
                    help="override evaluation settings (e.g. n=12 'tasks=[nq,aida]')")
    rp.add_argument("--eval-set", nargs="+", default=[], metavar="KEY=VALUE", dest="eval_set",
                    help="override the preset's eval_options, given to every system that accepts them "
                         "(e.g. index=Flat encoder=minilm)")
    rp.add_argument("--no-costs", action="store_true", dest="no_costs", help="skip the cost measurement")
    rp.set_defaults(fn=_cmd_reproduce)

    lb = sub.add_parser("leaderboard", help="merge run folders / JSONL files into one leaderboard CSV")
    lb.add_argument("runs", nargs="+")
    lb.add_argument("--out", required=True, help="CSV to write")
    lb.set_defaults(fn=_cmd_leaderboard)

    pl = sub.add_parser("plot", help="plot a leaderboard CSV (groups.png, tasks.png)")
    pl.add_argument("csv")
    pl.add_argument("--out", help="folder (default: beside the CSV)")
    pl.set_defaults(fn=_cmd_plot)

    rp = sub.add_parser("report", help="write one self-contained HTML page for a run folder")
    rp.add_argument("run_dir", help="run folder (config.json, preds/, leaderboard.csv)")
    rp.add_argument("--out", help="HTML file to write (default: RUN_DIR/report.html)")
    rp.add_argument("--no-passages", action="store_true", dest="no_passages",
                    help="do not load the corpus; show retrieved passage ids without their texts")
    rp.set_defaults(fn=_cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)
        from imprag_bench.harness.registry import include
        for spec in args.include:
            include(spec)
        args.fn(args)
    except UserError as e:
        print(f"imprag-bench: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the environment (a full disk, no permission), not the input: exit 1
        from imprag_bench.harness.io import WRITE_ERRNOS
        if e.errno not in WRITE_ERRNOS:
            raise
        print(f"imprag-bench: error: cannot write {e.filename or 'a file'}: {e.strerror} (it needs "
              f"{WRITE_ERRNOS[e.errno]}); completed files are kept, and the same command resumes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
