"""BM25 over the corpus with bm25s (English stopwords, Snowball stemming)."""
from __future__ import annotations

import tempfile
from pathlib import Path

import bm25s
import Stemmer

from imprag_bench.harness.corpus import Corpus


class BM25Retriever:
    """Lexical retriever; indexing ~10k passages takes about a second, so it is rebuilt per run."""

    name = "bm25"

    def __init__(self, corpus: Corpus):
        self.corpus = corpus
        self.stemmer = Stemmer.Stemmer("english")
        tokens = bm25s.tokenize(corpus.texts, stopwords="en", stemmer=self.stemmer, show_progress=False)
        self.bm25 = bm25s.BM25()
        self.bm25.index(tokens, show_progress=False)

    def sizes(self) -> tuple[int, int]:
        """(parameters, index bytes as bm25s saves it)."""
        with tempfile.TemporaryDirectory() as d:
            self.bm25.save(d)
            return 0, sum(f.stat().st_size for f in Path(d).rglob("*") if f.is_file())

    def search(self, queries: list[str], k: int) -> list[list[str]]:
        # Queries as token strings (not ids) so bm25s maps them through the corpus vocabulary.
        qtok = bm25s.tokenize(queries, stopwords="en", stemmer=self.stemmer, return_ids=False,
                              show_progress=False)
        k = min(k, len(self.corpus))
        docs, _ = self.bm25.retrieve(qtok, k=k, show_progress=False, n_threads=1)
        ids = self.corpus.ids
        return [[ids[j] for j in row] for row in docs.tolist()]
