"""Reading Hugging Face hub datasets: one split at a time, from the hub cache or from local stand-in files.

Two ways in, both naming only the requested split's files in `data_files`:

- `read_split` (task data, instruction sets): downloads ONLY the files of the requested split with
  `huggingface_hub.snapshot_download(allow_patterns=...)` into the hub cache (HF_HOME), then builds a
  memory-mapped Arrow table from that folder. A later run with HF_HUB_OFFLINE=1 reuses the cached files
  (snapshot_download answers from the cache and refuses an incomplete snapshot).
  Reading KILT T-REx dev therefore fetches trex/validation-*.parquet, never the 1.75 GiB train split.
- `stream_split` (the 21M-passage corpus): `load_dataset("parquet", data_files={split: "hf://datasets/..."},
  streaming=True, columns=...)` streams the split's Parquet shards row by row, reading only the requested
  columns. Streamed rows are never cached, so HF_HUB_OFFLINE cannot help there: offline users pass a local
  corpus file instead.

Local stand-ins: with IMPRAG_BENCH_HUB_FIXTURES=<folder> both read
`<folder>/<owner>__<name>/<config or "default">/<hub split>.{jsonl,parquet,csv}` (same schema as the hub) through
the same `load_dataset` call as the hub read; only the folder (read_split) or the file location (stream_split)
differs. CSV is read with pandas' NA detection off, so answers such as "None", "NA" or "null" stay strings.

Dev splits: `split_indices` carves a seeded held-out slice out of a train split (see hub.py).
"""
from __future__ import annotations

import glob
import importlib
import os
import random
from pathlib import Path
from typing import Iterator

from imprag_bench.harness.errors import UserError

FIXTURES_ENV = "IMPRAG_BENCH_HUB_FIXTURES"
_FORMATS = (".jsonl", ".parquet", ".csv")
# pandas' read_csv turns "None", "NA", "N/A", "null", "NaN", "" ... into missing values by default.
CSV_KEEP_STRINGS = {"keep_default_na": False, "na_filter": False}

DEV_SIZE = 1000  # rows held out of a train split as "dev" (fewer on tiny splits, see split_indices)
DEV_SEED = 12345


def _datasets():
    try:
        import datasets
    except ImportError as e:
        raise UserError(f"the 'datasets' package is needed for hub data ({e}); pip install 'datasets>=4'") from None
    datasets.logging.set_verbosity_error()
    return datasets


def fixture_layout(dataset: str, config: str | None, split: str) -> str:
    return f"{dataset.replace('/', '__')}/{config or 'default'}/{split}.jsonl"


def _fixture(folder: str, dataset: str, config: str | None, split: str) -> tuple[Path, str]:
    """(root folder, file relative to it) of the local file standing in for one hub split."""
    root = Path(folder) / dataset.replace("/", "__")
    for suffix in _FORMATS:
        rel = f"{config or 'default'}/{split}{suffix}"
        if (root / rel).is_file():
            return root, rel
    raise UserError(f"{FIXTURES_ENV}={folder}: no local file for {dataset} ({config or 'default'}/{split}); "
                    f"expected {root / (config or 'default') / split}.jsonl, .parquet or .csv")


def unreachable(dataset: str, config: str | None, split: str, err: BaseException, *, streamed: bool = False,
                tasks: bool = True) -> UserError:
    """The message for "the hub could not be reached", with advice that fits how the split is read."""
    why = str(err).strip().splitlines()[0].rstrip(".") if str(err).strip() else type(err).__name__
    head = f"cannot reach the Hugging Face hub to load {dataset} ({config or 'default'}/{split}): {why}. "
    if streamed:
        return UserError(
            head + "This corpus is streamed and never cached, so HF_HUB_OFFLINE=1 cannot help. Offline, pass a "
            "local corpus file instead: --corpus PATH with {id, title, text} JSONL/Parquet rows or FlashRAG's "
            "wiki18_100w JSONL ({id, contents}); or, for tests, set "
            f"{FIXTURES_ENV} to a folder holding {fixture_layout(dataset, config, split)} in the hub schema.")
    local = ("--tasks local:PATH for a FlashRAG-schema JSONL {id, question, golden_answers}, or set "
             if tasks else "set ")
    return UserError(
        head + "Downloaded splits are cached under HF_HOME: run once where the hub is reachable, then "
        "HF_HUB_OFFLINE=1 reads them from that cache (only with a populated cache). Or use local files: "
        f"{local}{FIXTURES_ENV} to a folder holding {fixture_layout(dataset, config, split)} (or .parquet/.csv) "
        "in the hub schema.")


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the hub could not be reached" (offline mode, DNS, timeouts, missing cache)."""
    from huggingface_hub import errors as hf_errors
    out: list[type[BaseException]] = [ConnectionError, TimeoutError, hf_errors.LocalEntryNotFoundError,
                                      hf_errors.OfflineModeIsEnabled]
    if hasattr(hf_errors, "IncompleteSnapshotError"):
        out.append(hf_errors.IncompleteSnapshotError)
    for name in ("httpx2", "httpx"):  # the HTTP client huggingface_hub uses, by version
        try:
            out.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(out)


def _access_errors() -> tuple[type[BaseException], ...]:
    from huggingface_hub import errors as hf_errors
    return hf_errors.GatedRepoError, hf_errors.RepositoryNotFoundError


def _snapshot(dataset: str, pattern: str) -> Path:
    """The hub-cache folder holding `dataset`'s files that match `pattern` (downloading only those)."""
    from huggingface_hub import snapshot_download
    root = Path(snapshot_download(repo_id=dataset, repo_type="dataset", allow_patterns=[pattern]))
    if not glob.glob(str(root / pattern)):
        raise UserError(f"hub dataset {dataset} has no file matching {pattern!r} (has its layout changed?)")
    return root


def read_split(dataset: str, config: str | None, split: str, pattern: str, *, hub_config: bool = False,
               tasks: bool = True):
    """One hub split as a `datasets.Dataset` (memory-mapped), reading only that split's files.

    pattern: the split's files inside the hub repo (glob), e.g. "nq/validation-*.parquet".
    hub_config: instead of a pattern, let `datasets` resolve the repo's own config layout
      (`load_dataset(dataset, config, split=split)`, cached under HF_HOME; downloads the whole config). For
      sets whose other splits are small and whose file layout is not pinned here (instruct.py).
    tasks: whether the data is an evaluation task (the offline advice then mentions --tasks local:PATH).
    """
    datasets = _datasets()
    folder = os.environ.get(FIXTURES_ENV)
    try:
        if folder:
            root, files = _fixture(folder, dataset, config, split)
            return _load(datasets, str(root), files, split)
        if hub_config:
            return datasets.load_dataset(dataset, config, split=split)
        return _load(datasets, str(_snapshot(dataset, pattern)), pattern, split)
    except _network_errors() as e:
        raise unreachable(dataset, config, split, e, tasks=tasks) from None
    except _access_errors() as e:
        raise UserError(f"hub dataset {dataset} is not available ({str(e).splitlines()[0]}); check the name, "
                        "and for gated sets log in (`hf auth login`) with an account that has access") from None
    except datasets.exceptions.DatasetNotFoundError as e:
        raise UserError(f"hub dataset {dataset} is not available ({e}); check the name and your access") from None
    except RuntimeError as e:
        if "scripts are no longer supported" not in str(e):
            raise
        raise UserError(f"hub dataset {dataset} still ships a loading script, which datasets>=4 cannot run "
                        f"({e}); use an older revision with Parquet files or local files ({FIXTURES_ENV})") from None


def _load(datasets, root: str, files: str, split: str):
    kwargs = CSV_KEEP_STRINGS if files.endswith(".csv") else {}
    return datasets.load_dataset(root, data_files={split: files}, split=split, **kwargs)


def stream_split(dataset: str, config: str | None, split: str, pattern: str, columns: list[str] | None = None
                 ) -> Iterator[dict]:
    """Rows of one hub split, streamed one at a time (nothing is materialised or cached)."""
    datasets = _datasets()
    folder = os.environ.get(FIXTURES_ENV)
    if folder:
        root, files = _fixture(folder, dataset, config, split)
        location = str(root / files)
    else:  # the generic builder over hf:// paths: repos that still ship a loading script (wiki_dpr) work too
        location = f"hf://datasets/{dataset}/{pattern}"
    builder = {".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}[Path(location).suffix]
    kwargs = {"columns": columns} if builder == "parquet" and columns else {}
    try:
        ds = datasets.load_dataset(builder, data_files={split: location}, split=split, streaming=True, **kwargs)
        yield from ds  # network errors surface while iterating
    except _network_errors() as e:
        raise unreachable(dataset, config, split, e, streamed=True) from None
    except _access_errors() as e:
        raise UserError(f"hub dataset {dataset} is not available ({str(e).splitlines()[0]})") from None
    except datasets.exceptions.DatasetNotFoundError as e:
        raise UserError(f"hub dataset {dataset} is not available ({e}); check the name and your access") from None


def dev_indices(n: int, size: int | None = None, seed: int = DEV_SEED) -> list[int]:
    """Sorted row numbers of the seeded dev slice of an n-row train split: min(size, n // 2) rows
    (DEV_SIZE = 1,000 on real data; half of a tiny fixture)."""
    k = min(DEV_SIZE if size is None else size, n // 2)
    return sorted(random.Random(seed).sample(range(n), k))


def split_indices(n: int, part: str) -> list[int]:
    """Row numbers of `part` ("dev" or "train") of an n-row train split: dev = the seeded held-out slice,
    train = every other row, in order. The two are disjoint and together cover all n rows."""
    dev = dev_indices(n)
    if part == "dev":
        return dev
    held = set(dev)
    return [i for i in range(n) if i not in held]
