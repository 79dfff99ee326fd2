"""The explicit-query baselines: retrievers find the passage a query is about; the reader reads it."""
import pytest

from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.records import Passage
from imprag_bench.harness.system import RunContext
from imprag_bench.harness.registry import SYSTEMS, TASKS
from imprag_bench.baselines.retrievers.bm25 import BM25Retriever

PASSAGES = [
    Passage("p0", "Lima", "Lima is the capital and largest city of Peru."),
    Passage("p1", "Havana", "Havana is the capital of Cuba and its largest city."),
    Passage("p2", "Mount Everest", "Mount Everest is Earth's highest mountain above sea level."),
    Passage("p3", "Photosynthesis", "Photosynthesis is the process plants use to convert light into energy."),
]


def test_bm25_ranks_the_matching_passage_first_for_each_query():
    r = BM25Retriever(Corpus("t", PASSAGES))
    got = r.search(["capital of Peru", "highest mountain", "plants convert light"], k=2)
    assert [g[0] for g in got] == ["p0", "p2", "p3"]
    assert all(len(g) == 2 for g in got)


@pytest.mark.integration
def test_dense_minilm_retrieves_paraphrased_queries(tmp_path):
    from imprag_bench.harness.dense import DenseRetriever
    r = DenseRetriever(Corpus("t", PASSAGES), tmp_path)
    got = r.search(["Which city is Peru's capital?", "tallest peak in the world", "how do plants make energy from sunlight"], k=1)
    assert got == [["p0"], ["p2"], ["p3"]]
    again = DenseRetriever(Corpus("t", PASSAGES), tmp_path)  # the cached index is reused and agrees
    assert again.search(["tallest peak in the world"], k=4) == r.search(["tallest peak in the world"], k=4)


@pytest.mark.integration
def test_bm25_reader_answers_from_the_retrieved_passage_and_logs_its_query(tmp_path):
    corpus = Corpus("t", PASSAGES)
    ex = TASKS.get("nq").build({"id": "q1", "question": "What is the capital of Peru?", "answers": ["Lima"]})
    demo = TASKS.get("nq").build({"id": "d", "question": "What is the capital of Cuba?", "answers": ["Havana"]})
    ctx = RunContext(options={"k": 1, "max_new_tokens": 8}, cache_dir=tmp_path, demos={"nq": [demo]})
    for spec, want_query in (({"k": 1}, ex.prompt), ({"k": 1, "query": "oracle"}, "What is the capital of Peru?")):
        system = SYSTEMS.get("bm25")(spec)
        system.prepare(corpus, ctx)
        (pred,) = system.predict([ex])
        assert pred.retrieved == ["p0"] and pred.query == want_query
        assert pred.text == "Lima"
    cb = SYSTEMS.get("closed-book")({})
    cb.prepare(None, ctx)
    (pred,) = cb.predict([ex])
    assert pred.retrieved == [] and pred.query is None and "\n" not in pred.text


def test_unknown_dtype_is_a_user_error():
    from imprag_bench.harness.errors import UserError
    from imprag_bench.harness.lm import load_lm
    with pytest.raises(UserError, match="unknown dtype 'float33'"):
        load_lm("smollm2-135m", dtype="float33")
