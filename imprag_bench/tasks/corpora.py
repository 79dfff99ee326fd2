"""Knowledge corpora by name: the offline mini-KILT corpus, the hub's 100-word Wikipedia, or a file."""
from __future__ import annotations

import importlib
import os

from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.registry import CORPORA, LOADERS


@CORPORA.register("minikilt")
def minikilt_corpus(limit: int | None = None) -> Corpus:
    """Wikipedia lead sections + infobox passages rendered from country/city facts (offline)."""
    passages = importlib.import_module("imprag_bench.tasks.minikilt").load_corpus()
    return Corpus("minikilt", passages[:limit] if limit else passages)


@CORPORA.register("hub")
def hub_corpus(limit: int | None = None) -> Corpus:
    """The 100-word-passage Wikipedia from the hub (needs network or IMPRAG_BENCH_HUB_FIXTURES), read memory-mapped
    from its local store (written on first use: imprag_bench/tasks/hub.py load_wiki_corpus)."""
    return Corpus("hub-wiki", importlib.import_module("imprag_bench.tasks.hub").load_wiki_corpus(limit))


@LOADERS.register("corpus-file")
def file_corpus(spec: str, limit: int | None = None) -> Corpus:
    """A {id, title, text} JSONL/Parquet file as a corpus (harness.corpus.load_corpus calls it for a path)."""
    passages = importlib.import_module("imprag_bench.tasks.local").load_corpus_file(spec)
    return Corpus(os.path.basename(spec), passages[:limit] if limit else passages)


def load_corpus(spec: str, limit: int | None = None) -> Corpus:
    """harness.corpus.load_corpus (kept here for the floors above, which read corpora through tasks)."""
    from imprag_bench.harness import corpus

    return corpus.load_corpus(spec, limit)
