"""Hugging Face hub loaders for the paper's eight tasks and its Wikipedia passage corpus.

Every loader is `(split, limit) -> list[dict]` returning raw records (see imprag_bench/tasks/spec.py), split in
("train", "dev", "test"); "test" is the split the paper reports. Sources (hub schemas checked against the
dataset cards):

- KILT (`facebook/kilt_tasks`, Parquet; configs nq, hotpotqa, trex, structured_zeroshot = zsRE, fever,
  aidayago2). Rows: id, input, meta{...}, output: list of {answer, meta{score}, provenance[...]}.
  KILT's test answers are hidden, so dev and test both read the KILT `validation` split (the paper's eval set).
- NQ-open (`google-research-datasets/nq_open`, config nq_open): question, answer (list). Its `validation`
  split (3,610 questions) is the standard NQ-open test set; dev and test both read it. No id column: ids are
  `nq_open-<split>-<row>`.
- SimpleQA (`basicv8vc/SimpleQA`, OpenAI's simple_qa_test_set.csv): metadata (str), problem, answer; one
  `test` split (4,326). dev and test read it; there is no train split.
- 2WikiMultiHopQA (`RUC-NLPIR/FlashRAG_datasets`, config 2wikimultihopqa): FlashRAG rows id, question,
  golden_answers, metadata; splits train/dev (the original test answers are hidden). dev and test read dev.
- Corpus: DPR's 21M 100-word Wikipedia passages (Dec 2018, `facebook/wiki_dpr`), streamed from its Parquet
  shards data/psgs_w100/multiset/train-*.parquet, columns id/title/text only (the repo's loading script is
  unsupported by datasets>=4). FlashRAG's wiki18_100w.zip ({id, contents} JSONL): use imprag_bench.tasks.local.

Tests and offline users: set IMPRAG_BENCH_HUB_FIXTURES to a folder and every loader reads
`<folder>/<dataset with / -> __>/<config or "default">/<hub split>.{jsonl,parquet,csv}` instead of the hub.
"""
from __future__ import annotations

import ast
import itertools
import os
from pathlib import Path

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.records import Passage
from imprag_bench.tasks.local import flashrag_record

FIXTURES_ENV = "IMPRAG_BENCH_HUB_FIXTURES"
KILT = "facebook/kilt_tasks"
NQ_OPEN = "google-research-datasets/nq_open"
SIMPLEQA = "basicv8vc/SimpleQA"
FLASHRAG = "RUC-NLPIR/FlashRAG_datasets"
WIKI_DPR = "facebook/wiki_dpr"
WIKI_DPR_FILES = "data/psgs_w100/multiset/train-*.parquet"
_FORMATS = {".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def _fixture_file(folder: str, dataset: str, config: str | None, split: str) -> tuple[str, Path]:
    base = Path(folder) / dataset.replace("/", "__") / (config or "default")
    for suffix, fmt in _FORMATS.items():
        if (base / f"{split}{suffix}").is_file():
            return fmt, base / f"{split}{suffix}"
    raise UserError(f"{FIXTURES_ENV}={folder}: no local file for {dataset} ({config or 'default'}/{split}); "
                    f"expected {base / split}.jsonl, .parquet or .csv")


def _unreachable(dataset: str, config: str | None, split: str, err: Exception) -> UserError:
    layout, why = f"<folder>/{dataset.replace('/', '__')}/{config or 'default'}/{split}.jsonl", str(err).rstrip(".")
    return UserError(
        f"cannot reach the Hugging Face hub to load {dataset} ({config or 'default'}/{split}): {why}. "
        f"Run once where the hub is reachable (datasets caches it; HF_HUB_OFFLINE=1 then reuses the cache), "
        f"or use local files: set {FIXTURES_ENV} to a folder holding {layout} (or .parquet) in the hub schema, "
        f"or evaluate a FlashRAG-style JSONL with the 'local' task source (imprag_bench/tasks/local.py).")


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the hub could not be reached" (offline mode, DNS, timeouts, missing cache)."""
    import importlib

    from huggingface_hub.errors import LocalEntryNotFoundError
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, LocalEntryNotFoundError]
    for name in ("httpx2", "httpx"):  # the HTTP client huggingface_hub uses, by version
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def hub_rows(dataset: str, config: str | None, split: str, limit: int | None = None, *,
             data_files: str | None = None, columns: list[str] | None = None) -> list[dict]:
    """Rows of one hub dataset split (at most `limit`): the one door every loader goes through.

    With IMPRAG_BENCH_HUB_FIXTURES set, reads the local file standing in for the split (same schema) via
    `load_dataset("json"/"parquet"/"csv", data_files=...)`; otherwise `load_dataset(dataset, config)`, or
    the generic Parquet builder over `hf://datasets/<dataset>/<data_files>` when given. Limited reads stream
    so a few rows of a large split do not download it all. Network failures become a UserError.
    """
    try:
        import datasets
    except ImportError as e:
        raise UserError(f"the 'datasets' package is needed for hub data ({e}); pip install 'datasets>=4'") from None
    datasets.logging.set_verbosity_error()
    folder = os.environ.get(FIXTURES_ENV)
    try:
        if folder:
            fmt, path = _fixture_file(folder, dataset, config, split)
            ds = datasets.load_dataset(fmt, data_files={split: str(path)}, split=split)
        elif data_files:
            ds = datasets.load_dataset("parquet", data_files={split: f"hf://datasets/{dataset}/{data_files}"},
                                       split=split, streaming=True, columns=columns)
        else:
            ds = datasets.load_dataset(dataset, config, split=split, streaming=limit is not None)
        if isinstance(ds, datasets.Dataset):
            if limit is not None:
                ds = ds.select(range(min(limit, len(ds))))
            return list(ds)
        return list(itertools.islice(ds, limit))  # streaming: errors surface while iterating
    except _network_errors() as e:
        raise _unreachable(dataset, config, split, e) from None
    except datasets.exceptions.DatasetNotFoundError as e:
        raise UserError(f"hub dataset {dataset} is not available ({e}); check the name and your access") from None


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


def _check_split(split: str) -> str:
    if split not in ("train", "dev", "test"):
        raise UserError(f"unknown split {split!r}; expected train, dev or test")
    return split


AIDA_WINDOW_WORDS = 64


def _kilt(config: str, split: str, limit: int | None) -> list[tuple[str, dict, list[str]]]:
    hub_split = {"train": "train", "dev": "validation", "test": "validation"}[_check_split(split)]
    out = []
    for i, row in enumerate(hub_rows(KILT, config, hub_split, limit)):
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
    """NQ-open: {id, question, answers}; test (and dev) = the hub `validation` split, the NQ-open test set."""
    hub_split = {"train": "train", "dev": "validation", "test": "validation"}[_check_split(split)]
    out = []
    for i, row in enumerate(hub_rows(NQ_OPEN, "nq_open", hub_split, limit)):
        where = _where(NQ_OPEN, "nq_open", hub_split, i, row)
        answers = _dedup(_field(row, "answer", where))
        if not answers:
            raise UserError(f"{where}: field 'answer' has no non-empty answer")
        out.append({"id": f"nq_open-{hub_split}-{i}", "question": _text(row, "question", where), "answers": answers})
    return out


def simpleqa(split: str, limit: int | None) -> list[dict]:
    """SimpleQA: {id, question, answers=[answer], topic, answer_type} from the single `test` split."""
    if _check_split(split) == "train":
        raise UserError("SimpleQA has no train split (it is an unseen evaluation task); use dev or test")
    out = []
    for i, row in enumerate(hub_rows(SIMPLEQA, None, "test", limit)):
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
    """2WikiMultiHopQA from FlashRAG: {id, question, answers[, type]}; test (and dev) = the dev split."""
    hub_split = {"train": "train", "dev": "dev", "test": "dev"}[_check_split(split)]
    out = []
    for i, row in enumerate(hub_rows(FLASHRAG, "2wikimultihopqa", hub_split, limit)):
        rec = flashrag_record(row, _where(FLASHRAG, "2wikimultihopqa", hub_split, i, row), keep_metadata=False)
        meta = row.get("metadata")
        if isinstance(meta, dict) and isinstance(meta.get("type"), str):
            rec["type"] = meta["type"]  # comparison / compositional / inference / bridge_comparison
        out.append(rec)
    return out


def load_wiki_corpus(limit: int | None = None) -> list[Passage]:
    """DPR's 100-word Wikipedia passages (facebook/wiki_dpr, psgs_w100) as Passages, at most `limit`.

    The full corpus is 21M passages; pass `limit` for a quick run. Streams only the id/title/text columns.
    """
    out = []
    for i, row in enumerate(hub_rows(WIKI_DPR, "psgs_w100", "train", limit, data_files=WIKI_DPR_FILES,
                                     columns=["id", "title", "text"])):
        where = _where(WIKI_DPR, "psgs_w100", "train", i, row)
        out.append(Passage(id=str(_field(row, "id", where)), title=str(row.get("title") or ""),
                           text=_text(row, "text", where)))
    return out


# The paper's task name -> its hub loader (what imprag_bench/tasks/paper_tasks.py wires as the "hub" source).
HUB_LOADERS = {"nq": nq_open, "hotpotqa": kilt_hotpotqa, "simpleqa": simpleqa, "2wiki": twowiki,
               "trex": kilt_trex, "zsre": kilt_zsre, "fever": kilt_fever, "aida": kilt_aida}
