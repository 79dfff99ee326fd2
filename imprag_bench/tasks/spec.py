"""The TaskSpec a task adapter declares, and how raw records become Examples.

A raw record is a flat dict: `id`, `answers` (list of accepted answer strings) and the fields the task's
template names (e.g. `question`, or `entity` + `relation`). Loaders return raw records; `TaskSpec.build`
validates them and fills in the templates, so every source (mini-KILT, hub, local files) shares one path.
"""
from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.records import Example

GROUPS = ("seen", "unseen-qa", "unseen-format")
SPLITS = ("train", "dev", "test")

# loader(split, limit) -> raw records. `split` is one of SPLITS; "test" means the split the paper reports
# (e.g. KILT dev where KILT's test answers are hidden).
Loader = Callable[[str, "int | None"], Iterable[dict]]


def template_fields(template: str) -> list[str]:
    """The `{field}` names a format string uses."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


@dataclass(frozen=True)
class TaskSpec:
    """A task: its name, group, the paper's prompt template, answer handling and data loaders.

    template: the model input, up to and including "A:" (paper Table 1).
    queries: explicit query templates by name besides `prompt` (which is always the filled template),
      e.g. {"oracle": "{mention}"}: the hand-designed query of paper Table 4.
    answer_map: maps raw answers to the strings the model must produce (FEVER: SUPPORTS -> True).
    recall: whether answer-substring retrieval recall is meaningful (not for FEVER's True/False).
    loaders: data source name ("minikilt", "hub", ...) -> loader.
    """

    name: str
    group: str
    template: str
    loaders: Mapping[str, Loader]
    queries: Mapping[str, str] = field(default_factory=dict)
    answer_map: Mapping[str, str] | None = None
    metric: str = "em"
    recall: bool = True
    description: str = ""

    def __post_init__(self):
        if self.group not in GROUPS:
            raise ValueError(f"task {self.name}: group must be one of {GROUPS}, got {self.group!r}")

    def build(self, record: dict, where: str = "") -> Example:
        """Validate one raw record and turn it into an Example. `where` names the source for errors."""
        loc = f"{where}: " if where else ""
        rid = record.get("id")
        if rid is None or str(rid) == "":
            raise UserError(f"{loc}record without an 'id' field (task {self.name})")
        answers = record.get("answers")
        if not isinstance(answers, (list, tuple)) or not [a for a in answers if str(a).strip()]:
            raise UserError(f"{loc}record {rid!r}: 'answers' must be a non-empty list of strings, got {answers!r}")
        fields = {}
        for f in set(template_fields(self.template)).union(*[template_fields(q) for q in self.queries.values()]):
            if f not in record or record[f] is None:
                raise UserError(f"{loc}record {rid!r}: missing field {f!r} required by task {self.name}")
            fields[f] = str(record[f])
        golds = [str(a).strip() for a in answers if str(a).strip()]
        if self.answer_map is not None:
            try:
                golds = [self.answer_map[g] for g in golds]
            except KeyError as e:
                raise UserError(f"{loc}record {rid!r}: answer {e.args[0]!r} not in {sorted(self.answer_map)}") from None
        prompt = self.template.format(**fields)
        queries = {"prompt": prompt, **{n: q.format(**fields) for n, q in self.queries.items()}}
        meta = {k: v for k, v in record.items() if k not in ("id", "answers")}
        return Example(id=str(rid), task=self.name, prompt=prompt, target=golds[0], golds=golds,
                       queries=queries, meta=meta)

    def load(self, source: str, split: str, limit: int | None = None) -> list[Example]:
        """Load `split` from `source` as validated Examples (at most `limit`)."""
        if split not in SPLITS:
            raise UserError(f"task {self.name}: unknown split {split!r}; expected one of {SPLITS}")
        if source not in self.loaders:
            raise UserError(f"task {self.name} has no data source {source!r} (has: {', '.join(self.loaders)})")
        out = []
        for rec in self.loaders[source](split, limit):
            out.append(self.build(rec, where=f"{self.name}/{source}/{split}"))
            if limit is not None and len(out) >= limit:
                break
        return out
