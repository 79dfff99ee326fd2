"""The headline experiment as one resumable command (`imprag-bench reproduce --preset cpu`): train every trained
system at one matched budget, evaluate every system on the same examples, and write paired statistics, the
headline figure, costs, a manifest and the HTML report into one folder.

Stages, each resumable (killed anywhere, the same command continues and ends with the same files):
1. train: each trained system's preset at the preset's `budget` (presets/train/shared.yaml: the same data,
   steps, batch, schedule, pseudo-labels, demonstrations, passage length) with its recipe -> <out>/train/<label>;
2. eval: harness.runner.run over every system (trained ones by checkpoint), with `eval_options` given to every
   system that accepts them -> <out>/preds, leaderboard.csv, groups.png, tasks.png;
3. stats: harness.paired, the reference minus every other system per task and group -> paired.csv, headline.png;
   then the preset's `analysis`, if it names one (harness.analyses: Table 3, Figure 2, the learning curve);
4. costs: parameters, index size, examples/s and per-example latency per system at the same settings -> costs.csv.
Then manifest.json (commit, command, each system's resolved config and checkpoint digest, wall time per stage,
machine) and report.html. Presets live in presets/reproduce/*.yaml.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from imprag_bench.harness.assets import log
from imprag_bench.harness.errors import UserError

STAGES = ("train", "eval", "stats", "costs")


@dataclass
class ReproducePreset:
    """A headline experiment: the training budget, the evaluation, and the systems (untrained by `spec`,
    trained by `train` + `recipe`, or another evaluation of a trained one's checkpoint by `checkpoint_of`; a
    trained entry's `options` are its evaluation options, e.g. `{centre: true}`)."""

    name: str
    budget: str
    reference: str
    run: dict
    systems: list[dict]
    eval_options: dict = field(default_factory=dict)
    costs: dict = field(default_factory=dict)
    train_set: list[str] = field(default_factory=list)  # KEY=VALUE given to every trained system (as --train-set)
    pairs: list[list[str]] = field(default_factory=list)  # extra [reference, baseline] comparisons in paired.csv
    additions: list[str] = field(default_factory=list)  # the evaluation's deviations from the paper (ADDITIONS)
    analysis: dict = field(default_factory=dict)  # {name, rows: {label: its role}}: harness.analyses, after stats

    @classmethod
    def load(cls, name: str) -> "ReproducePreset":
        folder = resources.files("imprag_bench.harness.presets").joinpath("reproduce")
        known = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise UserError(f"unknown reproduce preset {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                            + f" (known: {', '.join(known)})")
        data = yaml.safe_load(folder.joinpath(f"{name}.yaml").read_text()) or {}
        allowed = {"budget", "reference", "run", "systems", "eval_options", "costs", "train_set", "pairs", "additions",
                   "analysis"}
        if set(data) - allowed:
            raise UserError(f"presets/reproduce/{name}.yaml: unknown keys {sorted(set(data) - allowed)}")
        return cls(name=name, **data).validated()

    def validated(self) -> "ReproducePreset":
        from imprag_bench.harness.registry import SYSTEMS, TRAINERS

        from imprag_bench.harness.training.config import ADDITIONS

        where = f"reproduce preset {self.name}"
        if set(self.additions) - set(ADDITIONS):
            raise UserError(f"{where}: unknown additions {sorted(set(self.additions) - set(ADDITIONS))}")
        labels = [s.get("label") for s in self.systems]
        if None in labels or len(set(labels)) != len(labels):
            raise UserError(f"{where}: every system needs a unique label (got {labels})")
        trained = {s["label"]: s["train"] for s in self.systems if "train" in s}
        for s in self.systems:
            extra = set(s) - {"label", "spec", "train", "recipe", "set", "checkpoint_of", "options"}
            kinds = sum(k in s for k in ("spec", "train", "checkpoint_of"))
            if extra or kinds != 1 or ("options" in s and "spec" in s):
                raise UserError(f"{where}: system {s['label']!r} needs exactly one of spec / train (+ recipe, "
                                f"set, options) / checkpoint_of (+ options)"
                                f"{'; unknown keys ' + str(sorted(extra)) if extra else ''}")
            if "train" in s:
                TRAINERS.get(s["train"])
                SYSTEMS.get(s["train"])
            if "checkpoint_of" in s and s["checkpoint_of"] not in trained:
                raise UserError(f"{where}: system {s['label']!r}: checkpoint_of {s['checkpoint_of']!r} is not a "
                                f"trained system of this preset ({', '.join(trained) or 'none'})")
            if "options" in s:  # checked now, with a stand-in for the checkpoint training will make
                from imprag_bench.harness.options import validate

                if not isinstance(s["options"], dict) or "checkpoint" in s["options"]:
                    raise UserError(f"{where}: system {s['label']!r}: options must be a mapping of evaluation "
                                    "options (the checkpoint is the trained one)")
                validate(trained.get(s.get("checkpoint_of"), s.get("train")), {"checkpoint": ".", **s["options"]},
                         f"{where}, system {s['label']!r}")
        if self.reference not in labels:
            raise UserError(f"{where}: reference {self.reference!r} is not one of the systems {labels}")
        if self.analysis:
            import imprag_bench.harness.analyses  # noqa: F401  (registers the analyses)
            from imprag_bench.harness.registry import ANALYSES

            ANALYSES.get(self.analysis.get("name", ""))
            rows = self.analysis.get("rows") or {}
            if set(self.analysis) - {"name", "rows"} or not rows or set(rows) - set(labels):
                raise UserError(f"{where}: analysis needs a name and rows {{label: its role}} over the systems "
                                f"{labels} (got {self.analysis})")
        for pair in self.pairs:
            if not (isinstance(pair, list) and len(pair) == 2 and set(pair) <= set(labels) and pair[0] != pair[1]):
                raise UserError(f"{where}: pairs entry {pair!r} must be [reference, baseline], two of {labels}")
        return self

    def select(self, labels: list[str] | None) -> "ReproducePreset":
        """The preset restricted to `labels` (the reference always stays)."""
        if not labels:
            return self
        known = [s["label"] for s in self.systems]
        bad = [x for x in labels if x not in known]
        if bad:
            raise UserError(f"--systems: unknown labels {bad} (this preset has: {', '.join(known)})")
        keep = set(labels) | {self.reference}
        keep |= {s["checkpoint_of"] for s in self.systems if s["label"] in keep and "checkpoint_of" in s}
        rows = {k: v for k, v in self.analysis.get("rows", {}).items() if k in keep}
        return dataclasses.replace(self, systems=[s for s in self.systems if s["label"] in keep],
                                   pairs=[p for p in self.pairs if set(p) <= keep],
                                   analysis={**self.analysis, "rows": rows} if self.analysis else {})


def folder_files(out: Path) -> str:
    """The files a results folder holds, named for the closing message (what was written, not what might be)."""
    return ", ".join(sorted(p.name for p in Path(out).iterdir() if p.is_file()))


def train_configs(preset: ReproducePreset, out: Path, train_set: list[str]) -> list[tuple[dict, object]]:
    """(system entry, resolved training config) of each trained system: the budget, then the preset's
    `train_set`, the system's `set`, then `--train-set`. Every config is checked before anything trains."""
    from imprag_bench.harness.registry import TRAINERS

    trained = [s for s in preset.systems if "train" in s]
    return [(s, TRAINERS.get(s["train"]).config(preset.budget, [*preset.train_set, *s.get("set", []), *train_set],
                                                str(out / "train" / s["label"]), s.get("recipe")))
            for s in trained]


def check_models(run_cfg: dict, train_cfgs: list) -> None:
    """Every model the experiment will load (the evaluation's, each trainer's) can be had: a gated or missing
    one fails here, before hours of training or a corpus read."""
    from imprag_bench.harness.lm import check_weights

    for model in sorted({str(m) for m in [run_cfg.get("model"), *(c.get("model") for c in train_cfgs)] if m}):
        check_weights(model)


def train_all(trained: list[tuple[dict, object]], manifest) -> dict[str, Path]:
    """Stage 1: each trained system (`train_configs`) at the budget (resumes from its checkpoint); label ->
    checkpoint folder."""
    from imprag_bench.harness.manifest import folder_sha256
    from imprag_bench.harness.registry import TRAINERS

    checkpoints = {}
    for s, cfg in trained:
        trainer = TRAINERS.get(s["train"])
        log(f"reproduce: training {s['label']} ({s['train']}, budget {cfg.preset}, recipe {cfg.recipe})")
        with manifest.timed(f"train:{s['label']}"):
            ck = Path(trainer.train(cfg))
        checkpoints[s["label"]] = ck
        manifest.data["systems"][s["label"]] = {"trainer": s["train"], "recipe": cfg.recipe,
                                                "additions": cfg.additions, "train_config": cfg.to_dict(),
                                                "checkpoint": str(ck), "checkpoint_sha256": folder_sha256(ck)}
        manifest.save()
    return checkpoints


def system_entries(preset: ReproducePreset, checkpoints: dict[str, Path], device: str,
                   bf16: bool | None = None) -> list[dict]:
    """The runner's system mappings: each spec (or trained checkpoint) with its label and the eval options the
    system declares (e.g. the same passage budget for every reader); `bf16: auto` becomes `bf16` (default:
    whether `device` computes bf16 natively)."""
    from imprag_bench.harness.config import SystemSpec
    from imprag_bench.harness.hardware import native_bf16
    from imprag_bench.harness.registry import SYSTEMS

    auto = native_bf16(device) if bf16 is None else bf16
    entries = []
    for s in preset.systems:
        if "spec" in s:
            parsed = SystemSpec.parse(s["spec"])
            name, opts = parsed.name, dict(parsed.options)
        else:  # a trained system, or another evaluation of one's checkpoint (checkpoint_of), with its options
            source = s.get("checkpoint_of", s["label"])
            name = next(x["train"] for x in preset.systems if x["label"] == source)
            opts = {"checkpoint": str(checkpoints[source]), **s.get("options", {})}
        declared = getattr(SYSTEMS.get(name), "options", None) or {}
        for key, value in preset.eval_options.items():
            if key in declared and key not in opts:
                opts[key] = auto if (key == "bf16" and value == "auto") else value
        entries.append({"name": name, **opts, "label": s["label"]})
    return entries


def run_config(preset: ReproducePreset, out: Path, entries: list[dict], run_set: list[str]) -> dict:
    """The evaluation's run config: the base run preset, the reproduce preset's settings, then `--run-set`."""
    from imprag_bench.harness.config import load_preset

    settings = dict(preset.run)
    cfg = load_preset(settings.pop("preset", "quick"))
    cfg.update(settings)
    known = sorted({*cfg, "cache_dir"} - {"systems", "out"})  # cache_dir: the runner's index cache (optional)
    for item in run_set:
        key, eq, value = item.partition("=")
        if not eq or key not in known:
            raise UserError(f"--run-set {item!r}: expected key=value with a run setting ({', '.join(known)})")
        cfg[key] = yaml.safe_load(value)
    cfg["systems"], cfg["out"] = entries, str(out)
    return cfg


def dtype_pin(manifest, device: str) -> dict:
    """The dtypes the run keeps over resumes (Manifest.pin_dtypes): {"dtype": LM weights for the evaluation,
    "bf16": autocast for index builds, "train_set": the training override where they differ from `auto` here}."""
    from imprag_bench.harness.hardware import native_bf16, weight_dtype

    here = {"weights": weight_dtype("auto", device), "bf16": native_bf16(device)}
    pin = manifest.pin_dtypes(here)
    same = pin["bf16"] == here["bf16"]
    return {"dtype": pin["weights"], "bf16": pin["bf16"],
            "train_set": [] if same else [f"bf16={'true' if pin['bf16'] else 'false'}"]}


def stats(preset: ReproducePreset, out: Path) -> None:
    """Stage 3: paired.csv (the reference minus every other system, per task and group, then each matched pair
    of `pairs`) and headline.png (the reference's deltas)."""
    import pandas as pd

    from imprag_bench.harness import paired, plots, report

    records = report.read_records(sorted((out / "preds").glob("*/*.jsonl")))
    others = sorted({r["system"] for r in records} - {preset.reference})
    tables = [paired.paired_table(records, reference=preset.reference, baselines=others)]
    tables += [paired.paired_table(records, reference=ref, baselines=[base]) for ref, base in preset.pairs]
    paired.write_csv(pd.concat(tables, ignore_index=True), out / "paired.csv")
    plots.plot_headline(pd.read_csv(out / "leaderboard.csv"), pd.read_csv(out / "paired.csv"), out / "headline.png",
                        reference=preset.reference)


def with_eval_set(preset: ReproducePreset, eval_set: list[str]) -> ReproducePreset:
    """The preset with `--eval-set key=value` overrides of its eval_options (values parsed as YAML)."""
    if not eval_set:
        return preset
    options = dict(preset.eval_options)
    for item in eval_set:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UserError(f"--eval-set {item!r}: expected key=value (a system option, e.g. index=Flat)")
        options[key] = yaml.safe_load(value)
    return dataclasses.replace(preset, eval_options=options)


def reproduce(preset_name: str, out: str | Path, command: str, systems: list[str] | None = None,
              train_set: list[str] | None = None, run_set: list[str] | None = None, costs: bool = True,
              eval_set: list[str] | None = None) -> Path:
    """Run (or continue) the headline experiment into `out`; returns the folder. Under torchrun every rank
    runs every stage that has collectives (training, evaluation, costs); rank 0 alone writes the manifest,
    the statistics, the figure and the report."""
    from imprag_bench.harness.locks import folder_lock

    preset = with_eval_set(ReproducePreset.load(preset_name).select(systems), list(eval_set or []))
    cfg = run_config(preset, Path(out), [], list(run_set or []))  # bad settings: refused before the folder is locked
    with folder_lock(out, "results folder"):  # one writer (harness.locks; the runner re-enters it)
        return _reproduce(preset, Path(out), command, train_set, cfg, costs)


def _reproduce(preset: ReproducePreset, out: Path, command: str, train_set, cfg: dict, costs: bool) -> Path:
    from imprag_bench.harness import dist, report_html, runner
    from imprag_bench.harness.manifest import Manifest

    rank = dist.rank_world()[0]
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out, {"preset": preset.name, "budget": preset.budget, "reference": preset.reference,
                              "eval_additions": preset.additions}, command)
    manifest.save()
    device = str(cfg.get("device") or "cpu")
    pin = dtype_pin(manifest, device)
    if cfg.get("dtype") in (None, "auto"):
        cfg["dtype"] = pin["dtype"]
    trained = train_configs(preset, out, pin["train_set"] + list(train_set or []))
    check_models(cfg, [c for _, c in trained])
    checkpoints = train_all(trained, manifest)
    entries = cfg["systems"] = system_entries(preset, checkpoints, device, pin["bf16"])
    for label, entry in ((e["label"], e) for e in entries):
        manifest.data["systems"].setdefault(label, {})["eval_spec"] = entry
    manifest.data["run_config"] = {k: v for k, v in cfg.items() if k != "systems"}
    with manifest.timed("eval"):
        runner.run(cfg)
    with manifest.timed("stats"):
        if rank == 0:
            stats(preset, out)
            if preset.analysis:
                from imprag_bench.harness.registry import ANALYSES

                ANALYSES.get(preset.analysis["name"])(out, preset.analysis["rows"])
    if costs and preset.costs:
        from imprag_bench.harness.costs import measure_costs

        with manifest.timed("costs"):  # every rank measures (the systems' index loads are collective)
            measure_costs(cfg, entries, out / "costs.csv", **preset.costs, reference=preset.reference)
    if rank == 0:
        report_html.write_report(out)
    dist.barrier()
    log(f"reproduce: {out} ({folder_files(out)})")
    return out
