"""Local files in the FlashRAG schema: evaluation sets and retrieval corpora.

Evaluation set: JSONL (one object per line) or Parquet rows `{id, question, golden_answers, metadata?}`,
the format of `RUC-NLPIR/FlashRAG_datasets`. Corpus: JSONL or Parquet rows `{id, title, text}`, or
FlashRAG's `{id, contents}` with contents = "title\\ntext" (FlashRAG quotes the title: `"Aaron"\\nAaron is ...`).

Every problem is a UserError naming the file, the line (JSONL, 1-based) or row (Parquet, 1-based) and the
field, so a user can fix their file without reading this code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.io import iter_jsonl
from imprag_bench.harness.records import Passage
from imprag_bench.harness.registry import LOADERS
from imprag_bench.tasks.spec import TaskSpec

PARQUET_SUFFIXES = (".parquet", ".pq")


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    return p


def _iter_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    """Yield (location, row) for each Parquet row; location is 'file row N' (1-based)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a damaged or non-Parquet file
        raise UserError(f"{path}: not a readable Parquet file ({e})") from None
    for i, row in enumerate(table.to_pylist(), start=1):
        yield f"{path} row {i}", row


def _iter_rows(path: str | Path) -> Iterator[tuple[str, dict]]:
    p = _check_file(path)
    return _iter_parquet(p) if p.suffix.lower() in PARQUET_SUFFIXES else iter_jsonl(p)


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSONL file into a list of objects, skipping blank lines.

    Malformed JSON or a line that is not an object is a UserError naming the file and the 1-based line,
    so a hand-edited data file points straight at the broken line.
    """
    return [obj for _, obj in iter_jsonl(_check_file(path))]


def _string_field(row: dict, name: str, where: str) -> str:
    value = row.get(name)
    if value is None:
        raise UserError(f"{where}: missing field {name!r}")
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise UserError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
    return str(value)


def flashrag_record(row: dict, where: str, keep_metadata: bool = True) -> dict:
    """Turn one FlashRAG row into a raw QA record `{id, question, answers[, metadata]}`.

    Shared by the local adapter and the hub loader for FlashRAG-hosted datasets (2WikiMultiHopQA), so both
    validate the same way: `golden_answers` must be a non-empty list of strings.
    """
    rid = _string_field(row, "id", where)
    question = _string_field(row, "question", where)
    golds = row.get("golden_answers")
    if golds is None:
        raise UserError(f"{where}: missing field 'golden_answers'")
    if (not isinstance(golds, (list, tuple)) or not all(isinstance(a, str) for a in golds)
            or not [a for a in golds if a.strip()]):
        raise UserError(f"{where}: field 'golden_answers' must be a non-empty list of strings, got {golds!r}")
    rec = {"id": rid, "question": question, "answers": [a for a in golds if a.strip()]}
    if keep_metadata and row.get("metadata") is not None:
        rec["metadata"] = row["metadata"]
    return rec


def local_records(path: str | Path, limit: int | None = None) -> list[dict]:
    """Read a FlashRAG-schema JSONL/Parquet evaluation file as raw QA records (golden_answers -> answers).

    Reads at most `limit` records; duplicate ids are an error because predictions are keyed by id.
    """
    out: list[dict] = []
    seen: dict[str, str] = {}
    for where, row in _iter_rows(path):
        if limit is not None and len(out) >= limit:
            break
        rec = flashrag_record(row, where)
        if rec["id"] in seen:
            raise UserError(f"{where}: duplicate id {rec['id']!r} (first at {seen[rec['id']]})")
        seen[rec["id"]] = where
        out.append(rec)
    if not out and limit != 0:
        raise UserError(f"{path}: no records found (expected JSONL/Parquet rows with id, question, golden_answers)")
    return out


def local_task(path: str | Path, name: str | None = None, template: str = "Q: {question} A:",
               group: str = "unseen-qa") -> TaskSpec:
    """A TaskSpec evaluating the FlashRAG-schema file at `path`.

    Its single data source "local" serves every split from the file (the harness evaluates "test"), and it
    has an oracle query "{question}" like the paper's QA tasks. `name` defaults to the file name stem.
    """
    p = _check_file(path)

    def load(split: str, limit: int | None) -> list[dict]:
        return local_records(p, limit)

    return TaskSpec(name=name or p.stem, group=group, template=template, loaders={"local": load},
                    queries={"oracle": "{question}"}, description=f"local FlashRAG-schema file {p}")


def _split_contents(contents: str) -> tuple[str, str]:
    """FlashRAG `contents` -> (title, text): the first line is the title, possibly wrapped in quotes."""
    title, sep, text = contents.partition("\n")
    if not sep:
        return "", contents
    title = title.strip()
    if len(title) >= 2 and title[0] == title[-1] == '"':
        title = title[1:-1]
    return title, text


def load_corpus_file(path: str | Path) -> list[Passage]:
    """Read a JSONL/Parquet corpus of `{id, title, text}` (or FlashRAG `{id, contents}`) as Passages.

    `title` may be missing (empty title). Bad rows and duplicate ids are UserErrors naming file and line,
    because a duplicate id would make retrieval results ambiguous.
    """
    passages: list[Passage] = []
    seen: dict[str, str] = {}
    for where, row in _iter_rows(path):
        pid = _string_field(row, "id", where)
        if row.get("text") is not None:
            text = row["text"]
            title = row.get("title") or ""
            if not isinstance(text, str) or not isinstance(title, str):
                raise UserError(f"{where}: fields 'title' and 'text' must be strings")
        elif row.get("contents") is not None:
            if not isinstance(row["contents"], str):
                raise UserError(f"{where}: field 'contents' must be a string, got {row['contents']!r}")
            title, text = _split_contents(row["contents"])
        else:
            raise UserError(f"{where}: missing field 'text' (or FlashRAG 'contents')")
        if not text.strip():
            raise UserError(f"{where}: passage {pid!r} has empty text")
        if pid in seen:
            raise UserError(f"{where}: duplicate passage id {pid!r} (first at {seen[pid]})")
        seen[pid] = where
        passages.append(Passage(id=pid, title=title, text=text))
    if not passages:
        raise UserError(f"{path}: empty corpus (expected rows with id, title, text)")
    return passages


LOADERS.add("task-file", local_task)  # `--tasks local:PATH` (harness.runner.resolve_task)
