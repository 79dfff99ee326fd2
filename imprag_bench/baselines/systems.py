"""The untrained explicit-query systems: closed-book, BM25 + reader, dense retriever + reader.

Options (from the preset or `name:key=value` on the command line): `k` passages read (default 5),
`query` template (`prompt` = the whole prompt, the paper's protocol; `oracle` = the task's hand-designed
query), `encoder` for the dense retriever (`minilm` offline, `facebook/contriever-msmarco` on the hub), `bf16`
for the dense encoder's autocast (auto = where native, true, false; imprag_bench.harness.hardware).
"""
from __future__ import annotations

from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.costs import unique_params
from imprag_bench.harness.errors import UserError
from imprag_bench.harness.options import BF16, Option, declare
from imprag_bench.harness.records import Example, Prediction
from imprag_bench.harness.registry import SYSTEMS
from imprag_bench.harness.system import RunContext
from imprag_bench.baselines.reader import Reader


class ClosedBook:
    """The LM answers from its parameters alone."""

    def __init__(self, options: dict):
        self.name = "closed-book"

    def prepare(self, corpus: Corpus | None, ctx: RunContext) -> None:
        self.reader = Reader(ctx)

    def predict(self, examples: list[Example]) -> list[Prediction]:
        return [Prediction(ex.id, text) for ex, text in zip(examples, self.reader.answer(examples))]

    def costs(self) -> dict:
        """Sizes for harness.costs: the reader LM only."""
        return {"params_reader": unique_params(self.reader.model)}


class RetrieveRead:
    """Explicit-query RAG: retrieve top-k with the query text, put the passages in the LM's context."""

    def __init__(self, options: dict, make_retriever):
        self.name = options.get("label", "retrieve-read")
        self.make_retriever = make_retriever
        self.k = int(options.get("k", 5))
        self.query = options.get("query", "prompt")

    def prepare(self, corpus: Corpus | None, ctx: RunContext) -> None:
        if corpus is None:
            raise UserError(f"system {self.name} needs a corpus")
        self.corpus = corpus
        self.retriever = self.make_retriever(corpus, ctx)
        self.reader = Reader(ctx)

    def queries(self, examples: list[Example]) -> list[str]:
        missing = [ex.task for ex in examples if self.query not in ex.queries]
        if missing:
            raise UserError(f"task {missing[0]} defines no {self.query!r} query template")
        return [ex.queries[self.query] for ex in examples]

    def costs(self) -> dict:
        """Sizes for harness.costs: the reader LM, the separate retriever's weights and its index."""
        params, index = self.retriever.sizes()
        return {"params_reader": unique_params(self.reader.model), "params_retriever": params, "index_bytes": index}

    def predict(self, examples: list[Example]) -> list[Prediction]:
        queries = self.queries(examples)
        ranked = self.retriever.search(queries, self.k)
        texts = self.reader.answer(examples, [self.corpus.get_many(ids) for ids in ranked])
        return [Prediction(ex.id, t, retrieved=ids, query=q) for ex, t, ids, q in zip(examples, texts, ranked, queries)]


# Options of the shared reader (imprag_bench.baselines.reader.Reader) and of explicit-query retrieval.
READER_LM = Option(str, None, "an LM folder (a trained reader) read instead of `model`", folder=True)
PASSAGE_TOKENS = Option(int, 128, "each passage cut to this many tokens before reading", min=1)
QUERY = Option(str, "prompt", "retrieval query: the whole prompt (paper) or the task's oracle query",
               choices=("prompt", "oracle"))
INDEX = Option(str, "auto", "FAISS index factory string, e.g. IVF65536_HNSW32,PQ64; auto: Flat up to "
                               "1M passages, compressed above (harness.index.auto_factory)")


@SYSTEMS.register("closed-book")
@declare(checkpoint=READER_LM)
def closed_book(options: dict) -> ClosedBook:
    """No retrieval: the LM answers from its parameters (few-shot prompt)."""
    return ClosedBook(options)


@SYSTEMS.register("bm25")
@declare(query=QUERY, passage_tokens=PASSAGE_TOKENS, checkpoint=READER_LM)
def bm25(options: dict) -> RetrieveRead:
    """BM25 (bm25s) top-k with the explicit query, passages in the reader's context."""
    from imprag_bench.baselines.retrievers.bm25 import BM25Retriever

    return RetrieveRead({"label": "bm25", **options}, lambda corpus, ctx: BM25Retriever(corpus))


@SYSTEMS.register("dense")
@declare(query=QUERY, passage_tokens=PASSAGE_TOKENS, checkpoint=READER_LM, index=INDEX, bf16=BF16,
         encoder=Option(str, "minilm", "encoder: minilm (offline), a hub id such as facebook/contriever-msmarco, "
                                       "or a fine-tuned encoder folder"))
def dense(options: dict) -> RetrieveRead:
    """Dense retriever (MiniLM offline, Contriever-MSMARCO on the hub) + FAISS, passages in context."""
    from imprag_bench.harness.dense import DenseRetriever

    def make(corpus, ctx):
        return DenseRetriever(corpus, ctx.cache_dir, encoder=options.get("encoder", "minilm"),
                              factory=options.get("index", "auto"), bf16=options.get("bf16", "auto"),
                              device=options.get("device") or "cpu")
    return RetrieveRead({"label": "dense", **options}, make)
