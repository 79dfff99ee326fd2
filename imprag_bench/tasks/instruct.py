"""The paper's retrieval-free instruction-tuning sets (paper 4.6, from RA-DIT), read from the Hugging Face hub.

`load_instruct(name, limit=5000, seed=0)` returns up to `limit` records {id, prompt, target, source} drawn
from the set's TRAIN split in a seeded random order (paper: 5,000 training examples per dataset). Prompts follow
paper Table 1 (the model input ends with "A:" or the instruction; `target` is the text after it):

- dialogue completion, oasst1: "{turn 1} {turn 2} ..." -> the last assistant turn: each English conversation
  (from a root prompter message, the best-ranked reply at every turn), cut after its last assistant turn.
- reading comprehension, CoQA, DROP, NewsQA, PubMedQA, QuAIL, SQuAD v2 (answerable questions only):
  "{context} Q: {question} A:" -> answer. CoQA keeps the conversation so far in the prompt
  ("{story} Q: q1 A: a1 ... Q: qn A:"); PubMedQA's answer is its yes/no/maybe decision; QuAIL's the text
  of the correct option; DROP's its answer span(s) joined by ", " (numbers and dates as written).
- summarisation, CNN/DailyMail (3.0.0): "{article} Summarize this article:" -> highlights.

NewsQA cannot be downloaded from the hub (the CNN stories are not redistributable): build Maluuba's
combined-newsqa-data-v1.json with https://github.com/Maluuba/newsqa (it needs the questions from Microsoft and
the CNN stories from https://cs.nyu.edu/~kcho/DMQA/), then pass its path as `path=` or set IMPRAG_BENCH_NEWSQA.
Its stories of type "train" are used; questions without a consensus answer are skipped.

These are data records only (tasks side); the training mix decides how to weight and batch them. Reads go
through imprag_bench/tasks/hubio.py, so IMPRAG_BENCH_HUB_FIXTURES serves local stand-ins
(`<folder>/<owner>__<name>/<config or default>/train.jsonl`, the hub schema).
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from typing import Callable, Sequence

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.registry import LOADERS
from imprag_bench.tasks import hubio

READING = "{context} Q: {question} A:"
SUMMARY = "{context} Summarize this article:"
NEWSQA_ENV = "IMPRAG_BENCH_NEWSQA"
PAPER_LIMIT = 5000


def _s(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def _rc(rid: str, context: str, question: str, answer: str, source: str) -> dict | None:
    if not (_s(context) and _s(question) and _s(answer)):
        return None
    return {"id": rid, "prompt": READING.format(context=_s(context), question=_s(question)), "target": _s(answer),
            "source": source}


def _oasst_pairs(ds) -> list[dict]:
    """One English conversation per root prompter message, in row order: the best-ranked reply at every turn
    (ties: the first row), cut after its last assistant turn; the turns before it are the prompt (paper Table 1:
    "{turn 1} {turn 2} {turn 3} ..."), the last assistant turn the target."""
    cols = {c: ds[c] for c in ("message_id", "parent_id", "text", "role", "lang", "rank")}
    rows = [dict(zip(cols, vals)) for vals in zip(*cols.values())]
    best: dict[str, tuple] = {}
    for n, r in enumerate(rows):
        if r["parent_id"] is not None and r["lang"] == "en":
            key = (r["rank"] if r["rank"] is not None else float("inf"), n)
            if r["parent_id"] not in best or key < best[r["parent_id"]][0]:
                best[r["parent_id"]] = (key, r)
    out = []
    for root in (r for r in rows if r["role"] == "prompter" and r["parent_id"] is None and r["lang"] == "en"):
        chain = [root]
        while chain[-1]["message_id"] in best and len(chain) < 64:
            chain.append(best[chain[-1]["message_id"]][1])
        while chain and chain[-1]["role"] != "assistant":
            chain.pop()
        if len(chain) >= 2:
            out.append({"id": root["message_id"], "prompt": " ".join(_s(t["text"]) for t in chain[:-1]),
                        "reply": chain[-1]["text"]})
    return out


def _oasst(row: dict, i: int, rng: random.Random) -> dict | None:
    if not (_s(row["prompt"]) and _s(row["reply"])):
        return None
    return {"id": f"oasst1:{row['id']}", "prompt": _s(row["prompt"]), "target": _s(row["reply"]), "source": "oasst1"}


def _coqa(row: dict, i: int, rng: random.Random) -> dict | None:
    """One seeded answerable turn of a CoQA story, with the turns before it as conversation history."""
    questions, answers = row["questions"], row["answers"]["input_text"]
    turns = [t for t in range(min(len(questions), len(answers)))
             if _s(answers[t]) and _s(answers[t]).lower() != "unknown"]
    if not turns:
        return None
    t = rng.choice(turns)
    history = " ".join(f"Q: {_s(questions[j])} A: {_s(answers[j])}" for j in range(t))
    context = f"{_s(row['story'])} {history}".strip()
    return _rc(f"coqa:{i}:{t}", context, questions[t], answers[t], "coqa")


def _drop(row: dict, i: int, rng: random.Random) -> dict | None:
    spans = [_s(a) for a in (row.get("answers_spans") or {}).get("spans") or [] if _s(a)]
    return _rc(f"drop:{row['query_id']}", row["passage"], row["question"], ", ".join(spans), "drop")


def _pubmedqa(row: dict, i: int, rng: random.Random) -> dict | None:
    context = " ".join(_s(c) for c in (row.get("context") or {}).get("contexts") or [])
    return _rc(f"pubmedqa:{row['pubid']}", context, row["question"], row["final_decision"], "pubmedqa")


def _quail(row: dict, i: int, rng: random.Random) -> dict | None:
    k, options = row.get("correct_answer_id"), row.get("answers") or []
    if not isinstance(k, int) or not 0 <= k < len(options):
        return None
    return _rc(f"quail:{row['id']}", row["context"], row["question"], options[k], "quail")


def _squad_v2(row: dict, i: int, rng: random.Random) -> dict | None:
    texts = [_s(a) for a in (row.get("answers") or {}).get("text") or [] if _s(a)]
    if not texts:  # unanswerable: the paper keeps answerable questions only
        return None
    return _rc(f"squad_v2:{row['id']}", row["context"], row["question"], texts[0], "squad_v2")


def _cnn_dm(row: dict, i: int, rng: random.Random) -> dict | None:
    if not (_s(row.get("article")) and _s(row.get("highlights"))):
        return None
    return {"id": f"cnn_dailymail:{row['id']}", "prompt": SUMMARY.format(context=_s(row["article"])),
            "target": _s(row["highlights"]), "source": "cnn_dailymail"}


def _newsqa_units(path: str) -> list[dict]:
    """(story, question) units of the train stories in Maluuba's combined-newsqa-data-v1.json."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)["data"]
    except FileNotFoundError:
        raise UserError(f"NewsQA file {path} does not exist; {NEWSQA_HOWTO}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not Maluuba's combined-newsqa-data-v1.json ({{'data': [...]}}): {e}") from None
    units = []
    for n, story in enumerate(data):
        if not isinstance(story, dict) or not isinstance(story.get("text"), str):
            raise UserError(f"{path}: data[{n}] must be an object with a 'text' string (a NewsQA story)")
        if story.get("type") != "train":
            continue
        for j, q in enumerate(story.get("questions") or []):
            units.append({"storyId": story.get("storyId", str(n)), "text": story["text"], "q": q, "j": j})
    return units


def _newsqa(unit: dict, i: int, rng: random.Random) -> dict | None:
    q, text = unit["q"], unit["text"]
    cons = q.get("consensus") or {}
    s, e = cons.get("s"), cons.get("e")
    if cons.get("badQuestion") or cons.get("noAnswer") or not isinstance(s, int) or not isinstance(e, int):
        return None
    return _rc(f"newsqa:{unit['storyId']}:{unit['j']}", text, q.get("q"), text[s:e], "newsqa")


NEWSQA_HOWTO = ("NewsQA needs a manual download: build combined-newsqa-data-v1.json with "
                "https://github.com/Maluuba/newsqa (questions from Microsoft, CNN stories from "
                "https://cs.nyu.edu/~kcho/DMQA/), then pass its path (path=... or "
                f"{NEWSQA_ENV}=/path/to/combined-newsqa-data-v1.json)")


@dataclass(frozen=True)
class InstructSet:
    """One instruction-tuning set: where its train split lives and how a row becomes a record.

    convert(unit, row number, rng) -> {id, prompt, target, source} or None (skipped: unanswerable, wrong
    language, ...). units(split) turns the split into the units convert reads (default: its rows).
    hub None = manual download (see NEWSQA_HOWTO).
    """

    hub: str | None
    config: str | None
    split: str
    convert: Callable[[dict, int, random.Random], dict | None]
    units: Callable[[object], Sequence[dict]] | None = None


SETS = {
    "oasst1": InstructSet("OpenAssistant/oasst1", None, "train", _oasst, _oasst_pairs),
    "coqa": InstructSet("stanfordnlp/coqa", None, "train", _coqa),
    "drop": InstructSet("ucinlp/drop", None, "train", _drop),
    "newsqa": InstructSet(None, None, "train", _newsqa),
    "pubmedqa": InstructSet("qiaojin/PubMedQA", "pqa_artificial", "train", _pubmedqa),
    "quail": InstructSet("textmachinelab/quail", None, "train", _quail),
    "squad_v2": InstructSet("rajpurkar/squad_v2", None, "train", _squad_v2),
    "cnn_dailymail": InstructSet("abisee/cnn_dailymail", "3.0.0", "train", _cnn_dm),
}
INSTRUCT_SETS = tuple(SETS)


def load_instruct(name: str, limit: int | None = PAPER_LIMIT, seed: int = 0, path: str | None = None
                  ) -> list[dict]:
    """Up to `limit` records {id, prompt, target, source} of instruction set `name` (one of INSTRUCT_SETS),
    drawn from its train split in a seeded random order (the same seed gives the same records).

    path: NewsQA only, the manually built combined-newsqa-data-v1.json (default: $IMPRAG_BENCH_NEWSQA).
    """
    if name not in SETS:
        raise UserError(f"unknown instruction set {name!r}; expected one of {', '.join(INSTRUCT_SETS)}")
    spec = SETS[name]
    if spec.hub is None:
        path = path or os.environ.get(NEWSQA_ENV)
        if not path:
            raise UserError(f"{NEWSQA_HOWTO}.")
        units: Sequence[dict] = _newsqa_units(path)
    else:
        ds = hubio.read_split(spec.hub, spec.config, spec.split, "", hub_config=True, tasks=False)
        units = spec.units(ds) if spec.units else ds
    rng = random.Random(f"{name}:{seed}")
    order = list(range(len(units)))
    rng.shuffle(order)
    out: list[dict] = []
    for i in order:
        if limit is not None and len(out) >= limit:
            break
        try:
            rec = spec.convert(units[i], i, rng)
        except (KeyError, TypeError, AttributeError) as e:
            where = f"{spec.hub or path}[{spec.config or 'default'}]/{spec.split} row {i}"
            raise UserError(f"{where}: unexpected {name} row ({type(e).__name__}: {e}); "
                            "expected the hub schema documented in imprag_bench/tasks/instruct.py") from None
        if rec is not None:
            out.append(rec)
    return out


LOADERS.add("instruct-set", load_instruct)  # the training mix's hub sets (harness.training.data)
