"""Hugging Face hub loaders for the paper's eight tasks and its Wikipedia passage corpus.

Every loader is `(split, limit) -> list[dict]` returning raw records (see imprag_bench/tasks/spec.py), split in
("train", "dev", "test"); "test" is the split the paper reports. Sources (hub schemas checked against the
dataset cards; file layouts are the repos' Parquet conversions):

- KILT (`facebook/kilt_tasks`, files <config>/<split>-*.parquet; configs nq, hotpotqa, trex,
  structured_zeroshot = zsRE, fever, aidayago2). Rows: id, input, meta{...}, output: list of
  {answer, meta{score}, provenance[...]}. KILT's test answers are hidden, so "test" reads the KILT `validation`
  split (the paper's eval set).
- NQ-open (`google-research-datasets/nq_open`, files nq_open/<split>-*.parquet): question, answer (list). Its
  `validation` split (3,610 questions) is the standard NQ-open test set. No id column: ids are
  `nq_open-<hub split>-<row>`.
- SimpleQA (`basicv8vc/SimpleQA`, OpenAI's simple_qa_test_set.csv): metadata (str), problem, answer; one
  `test` split (4,326), read with NA detection off so answers such as "None" or "NA" stay strings. There is
  no train split, hence no dev split either (it is an unseen evaluation task).
- 2WikiMultiHopQA (`RUC-NLPIR/FlashRAG_datasets`, files 2wikimultihopqa/<split>.jsonl): FlashRAG rows id,
  question, golden_answers, metadata; splits train/dev (the original test answers are hidden). test = dev.
- Corpus: DPR's 21,015,324 100-word Wikipedia passages (Dec 2018, `facebook/wiki_dpr`), streamed from its
  Parquet shards data/psgs_w100/multiset/train-*.parquet, columns id/title/text only (the repo's loading
  script is unsupported by datasets>=4), written once into a local memory-mapped store that every rank and
  command then reads by row (load_wiki_corpus; imprag_bench/harness/corpus_store.py). FlashRAG's wiki18_100w ({id, contents} JSONL): --corpus PATH.

Dev split: on the hub the paper evaluates on KILT dev (= our "test"), so "dev" cannot be the hub's dev split
without selecting models on test. Here "dev" is a seeded held-out slice of the hub TRAIN split
(hubio.dev_indices: 1,000 rows, seed hubio.DEV_SEED) and "train" is the rest of the train split, so the two
are disjoint and model selection never reads the test split.

Reading: only the requested split's files are fetched (see imprag_bench/tasks/hubio.py, which also explains
the offline options). Tests and offline users: set IMPRAG_BENCH_HUB_FIXTURES to a folder and every loader reads
`<folder>/<dataset with / -> __>/<config or "default">/<hub split>.{jsonl,parquet,csv}` instead of the hub.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from imprag_bench.harness.assets import cache_root
from imprag_bench.harness.corpus_store import StoredPassages, open_store
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.records import Passage
from imprag_bench.tasks import hubio
from imprag_bench.tasks.hubio import FIXTURES_ENV  # noqa: F401  (re-exported: the documented switch)
from imprag_bench.tasks.local import flashrag_record

KILT = "facebook/kilt_tasks"
NQ_OPEN = "google-research-datasets/nq_open"
SIMPLEQA = "basicv8vc/SimpleQA"
FLASHRAG = "RUC-NLPIR/FlashRAG_datasets"
WIKI_DPR = "facebook/wiki_dpr"
WIKI_DPR_FILES = "data/psgs_w100/multiset/train-*.parquet"
WIKI_DPR_ROWS = 21_015_324  # passages in DPR's psgs_w100 (the progress bar's total)

# Where each split lives in the hub repo (glob relative to the repo root).
PATTERNS = {
    KILT: "{config}/{split}-*.parquet",
    NQ_OPEN: "nq_open/{split}-*.parquet",
    SIMPLEQA: "simple_qa_test_set.csv",
    FLASHRAG: "{config}/{split}.jsonl",
}


def _check_split(split: str) -> str:
    if split not in ("train", "dev", "test"):
        raise UserError(f"unknown split {split!r}; expected train, dev or test")
    return split


def hub_rows(dataset: str, config: str | None, split: str, eval_split: str, limit: int | None
             ) -> Iterator[tuple[str, int, dict]]:
    """(hub split, row number, row) for our `split` of one hub dataset, at most `limit` rows.

    test -> the hub's `eval_split`, in order; dev -> the seeded held-out slice of the hub train split;
    train -> the rest of the hub train split, in order. Only that hub split's files are read.
    """
    hub_split = eval_split if _check_split(split) == "test" else "train"
    ds = hubio.read_split(dataset, config, hub_split, PATTERNS[dataset].format(config=config, split=hub_split))
    rows = range(len(ds)) if split == "test" else hubio.split_indices(len(ds), split)
    if limit is not None:
        rows = rows[:limit]
    for i, row in zip(rows, ds.select(rows)):  # select + iterate reads in batches, not row by row
        yield hub_split, i, row


def _where(dataset: str, config: str | None, split: str, i: int, row: dict) -> str:
    rid = row.get("id")
    return f"{dataset}[{config or 'default'}]/{split} row {i}" + (f" (id {rid!r})" if rid is not None else "")


def _field(row: dict, name: str, where: str) -> object:
    """row[name], or a UserError naming the field when it is absent or null."""
    if row.get(name) is None:
        raise UserError(f"{where}: missing field {name!r}")
    return row[name]


def _text(row: dict, name: str, where: str) -> str:
    value = _field(row, name, where)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
    return value


def _dedup(answers) -> list[str]:
    """Non-empty answers, stripped, deduplicated in first-seen order."""
    out: list[str] = []
    for a in answers:
        a = a.strip() if isinstance(a, str) else ""
        if a and a not in out:
            out.append(a)
    return out


def kilt_answers(output, where: str) -> list[str]:
    """The non-empty `output[*].answer` strings of a KILT row, deduplicated, order kept.

    Accepts the hub's list-of-dicts form and the older datasets Sequence form (a dict of lists).
    """
    if output is None:
        raise UserError(f"{where}: missing field 'output'")
    if isinstance(output, dict):
        answers = output.get("answer") or []
    elif isinstance(output, (list, tuple)):
        answers = [o.get("answer") for o in output if isinstance(o, dict)]
    else:
        raise UserError(f"{where}: field 'output' must be a list of {{answer, provenance}}, got {output!r}")
    out = _dedup(answers)
    if not out:
        raise UserError(f"{where}: no non-empty 'answer' in field 'output'")
    return out


AIDA_WINDOW_WORDS = 64


def _kilt(config: str, split: str, limit: int | None) -> list[tuple[str, dict, list[str]]]:
    out = []
    for hub_split, i, row in hub_rows(KILT, config, split, "validation", limit):
        where = _where(KILT, config, hub_split, i, row)
        out.append((where, row, kilt_answers(_field(row, "output", where), where)))
    return out


def _kilt_qa(config: str, split: str, limit: int | None) -> list[dict]:
    return [{"id": str(_field(row, "id", where)), "question": _text(row, "input", where), "answers": answers}
            for where, row, answers in _kilt(config, split, limit)]


def kilt_nq(split: str, limit: int | None) -> list[dict]:
    """KILT Natural Questions: {id, question, answers} (test = KILT dev)."""
    return _kilt_qa("nq", split, limit)


def kilt_hotpotqa(split: str, limit: int | None) -> list[dict]:
    """KILT HotpotQA: {id, question, answers} (test = KILT dev)."""
    return _kilt_qa("hotpotqa", split, limit)


def _kilt_slot(config: str, split: str, limit: int | None) -> list[dict]:
    out = []
    for where, row, answers in _kilt(config, split, limit):
        entity, sep, relation = _text(row, "input", where).partition("[SEP]")
        if not sep or not entity.strip() or not relation.strip():
            raise UserError(f"{where}: field 'input' must be 'subject [SEP] relation', got {row['input']!r}")
        out.append({"id": str(_field(row, "id", where)), "entity": entity.strip(), "relation": relation.strip(),
                    "answers": answers})
    return out


def kilt_trex(split: str, limit: int | None) -> list[dict]:
    """KILT T-REx slot filling: input 'subject [SEP] relation' -> {id, entity, relation, answers}."""
    return _kilt_slot("trex", split, limit)


def kilt_zsre(split: str, limit: int | None) -> list[dict]:
    """KILT Zero-Shot RE (config structured_zeroshot): {id, entity, relation, answers}."""
    return _kilt_slot("structured_zeroshot", split, limit)


def kilt_fever(split: str, limit: int | None) -> list[dict]:
    """KILT FEVER: the claim as {statement}, answers SUPPORTS/REFUTES (the task maps them to True/False)."""
    return [{"id": str(_field(row, "id", where)), "statement": _text(row, "input", where), "answers": answers}
            for where, row, answers in _kilt("fever", split, limit)]


def mention_window(context: str, words: int = AIDA_WINDOW_WORDS) -> str:
    """At most `words` words on each side of the marked mention: KILT AIDA inputs are whole news
    documents (hundreds of words), too long for a reader's context next to k passages."""
    before, _, rest = context.partition("[START]")
    mention, _, after = rest.partition("[END]")
    left, right = before.split(), after.split()
    return " ".join(left[-words:] + ["[START]", *mention.split(), "[END]"] + right[:words])


def kilt_aida(split: str, limit: int | None) -> list[dict]:
    """KILT AIDA-CoNLL entity linking: {id, context, mention, answers=[page title]}.

    KILT marks the mention as [START_ENT] ... [END_ENT]; the paper's template says [START] ... [END], so the
    markers are rewritten and the marked text becomes `mention` (the oracle query).
    """
    out = []
    for where, row, answers in _kilt("aidayago2", split, limit):
        text = _text(row, "input", where)
        start, end = text.find("[START_ENT]"), text.find("[END_ENT]")
        if start < 0 or end < start:
            raise UserError(f"{where}: field 'input' has no [START_ENT] ... [END_ENT] mention")
        mention = text[start + len("[START_ENT]"):end].strip()
        if not mention:
            raise UserError(f"{where}: field 'input' has an empty [START_ENT] [END_ENT] mention")
        context = mention_window(text.replace("[START_ENT]", "[START]").replace("[END_ENT]", "[END]"))
        out.append({"id": str(_field(row, "id", where)), "context": context, "mention": mention,
                    "answers": answers})
    return out


def nq_open(split: str, limit: int | None) -> list[dict]:
    """NQ-open: {id, question, answers}; test = the hub `validation` split, the NQ-open test set."""
    out = []
    for hub_split, i, row in hub_rows(NQ_OPEN, "nq_open", split, "validation", limit):
        where = _where(NQ_OPEN, "nq_open", hub_split, i, row)
        answers = _dedup(_field(row, "answer", where))
        if not answers:
            raise UserError(f"{where}: field 'answer' has no non-empty answer")
        out.append({"id": f"nq_open-{hub_split}-{i}", "question": _text(row, "question", where), "answers": answers})
    return out


def simpleqa(split: str, limit: int | None) -> list[dict]:
    """SimpleQA: {id, question, answers=[answer], topic, answer_type} from the single `test` split.

    Answers are kept verbatim as strings ("None", "NA", "null" and "N/A" are real answers, not missing values).
    """
    if _check_split(split) != "test":
        raise UserError(f"SimpleQA has no {split} split: it has only its test split (an unseen evaluation task, "
                        "never trained or selected on); use test, and select models on a seen task's dev split")
    out = []
    for _, i, row in hub_rows(SIMPLEQA, None, split, "test", limit):
        where = _where(SIMPLEQA, None, "test", i, row)
        rec = {"id": f"simpleqa-{i}", "question": _text(row, "problem", where),
               "answers": [_text(row, "answer", where).strip()]}
        try:  # metadata is a Python-literal dict string: {'topic': ..., 'answer_type': ..., 'urls': [...]}
            meta = ast.literal_eval(row.get("metadata") or "")
            rec.update({k: meta[k] for k in ("topic", "answer_type") if isinstance(meta, dict) and k in meta})
        except (ValueError, SyntaxError):
            pass
        out.append(rec)
    return out


def twowiki(split: str, limit: int | None) -> list[dict]:
    """2WikiMultiHopQA from FlashRAG: {id, question, answers[, type]}; test = FlashRAG's dev split."""
    out = []
    for hub_split, i, row in hub_rows(FLASHRAG, "2wikimultihopqa", split, "dev", limit):
        rec = flashrag_record(row, _where(FLASHRAG, "2wikimultihopqa", hub_split, i, row), keep_metadata=False)
        meta = row.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("type"), str):
            rec["type"] = meta["type"]  # comparison / compositional / inference / bridge_comparison
        out.append(rec)
    return out


def iter_wiki_passages(limit: int | None = None) -> Iterator[Passage]:
    """DPR's 100-word Wikipedia passages (facebook/wiki_dpr, psgs_w100) as Passages, one at a time.

    Rows are streamed (only the id/title/text columns of the Parquet shards) and each becomes a Passage as
    it arrives, so no list of row dicts is ever built.
    """
    rows = hubio.stream_split(WIKI_DPR, "psgs_w100", "train", WIKI_DPR_FILES, columns=["id", "title", "text"])
    for i, row in enumerate(rows):
        if limit is not None and i >= limit:
            return
        where = _where(WIKI_DPR, "psgs_w100", "train", i, row)
        yield Passage(id=str(_field(row, "id", where)), title=str(row.get("title") or ""),
                      text=_text(row, "text", where))


def wiki_store_folder(limit: int | None = None) -> tuple[Path, dict]:
    """(folder, source) of the corpus store holding the hub corpus (or its first `limit` passages).

    cache_root()/corpus/wiki_dpr[-<limit>]; with IMPRAG_BENCH_HUB_FIXTURES, wiki_dpr-fixture-<hash>[-<limit>],
    the hash over the stand-in file's path, inode, size and mtime, so an edited or another fixture gets its own.
    """
    name, source = "wiki_dpr", {"dataset": WIKI_DPR, "config": "psgs_w100", "files": WIKI_DPR_FILES}
    folder = os.environ.get(FIXTURES_ENV)
    if folder:
        root, rel = hubio._fixture(folder, WIKI_DPR, "psgs_w100", "train")
        path = (root / rel).resolve()
        st = path.stat()
        source = {"fixture": str(path), "inode": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
        name += "-fixture-" + hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:12]
    if limit is not None:
        name += f"-{limit}"
        source["limit"] = limit
    return cache_root() / "corpus" / name, source


def load_wiki_corpus(limit: int | None = None) -> StoredPassages:
    """At most `limit` passages of the hub corpus (all 21,015,324 without one), memory-mapped from its store.

    The first call streams the hub rows (with a progress bar) into the store (imprag_bench/harness/corpus_store.py,
    one per `limit`); later calls, in any command or rank, open the store without reading the hub.
    """
    total = WIKI_DPR_ROWS if limit is None else min(limit, WIKI_DPR_ROWS)
    folder, source = wiki_store_folder(limit)

    def passages():
        return tqdm(iter_wiki_passages(limit), total=total, desc="wiki_dpr passages", unit="psg", mininterval=2.0,
                    unit_scale=True)
    return open_store(folder, passages, "hub-wiki", source)


# The paper's task name -> its hub loader (what imprag_bench/tasks/paper_tasks.py wires as the "hub" source).
HUB_LOADERS = {"nq": nq_open, "hotpotqa": kilt_hotpotqa, "simpleqa": simpleqa, "2wiki": twowiki,
               "trex": kilt_trex, "zsre": kilt_zsre, "fever": kilt_fever, "aida": kilt_aida}
