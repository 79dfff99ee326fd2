"""Registry lookups and TaskSpec validation: the errors a user sees for bad names and bad records."""
import pytest

from imprag_bench.harness.errors import UserError
from imprag_bench.harness.registry import SYSTEMS, TASKS, Registry
from imprag_bench.tasks.spec import TaskSpec


def test_unknown_name_suggests_close_match():
    with pytest.raises(UserError, match=r"unknown system 'bm52'.*did you mean 'bm25'"):
        SYSTEMS.get("bm52")


def test_registry_refuses_duplicates():
    r = Registry("thing")
    r.add("a", 1)
    with pytest.raises(ValueError):
        r.add("a", 2)


def test_eight_paper_tasks_in_paper_order_with_groups():
    names = [n for n in TASKS.names() if n != "toy"]
    assert names == ["nq", "hotpotqa", "simpleqa", "2wiki", "trex", "zsre", "fever", "aida"]
    groups = {n: TASKS.get(n).group for n in names}
    assert groups == {"nq": "seen", "hotpotqa": "seen", "simpleqa": "unseen-qa", "2wiki": "unseen-qa",
                      "trex": "unseen-format", "zsre": "unseen-format", "fever": "unseen-format",
                      "aida": "unseen-format"}
    assert not TASKS.get("fever").recall


def test_build_fills_templates_and_maps_fever_answers():
    ex = TASKS.get("fever").build({"id": "f1", "statement": "Paris is in France.", "answers": ["SUPPORTS"]})
    assert ex.prompt == "Is this statement true? Paris is in France. A:"
    assert ex.golds == ["True"] and ex.target == "True"
    assert ex.queries == {"prompt": ex.prompt, "oracle": "Paris is in France."}
    ex = TASKS.get("trex").build({"id": "t", "entity": "Peru", "relation": "capital", "answers": ["Lima"]})
    assert ex.prompt.startswith("Peru [SEP] capital Provide the answer") and ex.prompt.endswith(" A:")
    assert ex.queries["oracle"] == "Peru capital"


@pytest.mark.parametrize("record, message", [
    ({"question": "q", "answers": ["a"]}, "without an 'id'"),
    ({"id": "x", "question": "q", "answers": []}, "'answers' must be a non-empty list"),
    ({"id": "x", "question": "q", "answers": ["", " "]}, "'answers' must be a non-empty list"),
    ({"id": "x", "answers": ["a"]}, "missing field 'question'"),
])
def test_build_rejects_bad_records(record, message):
    spec = TaskSpec("t", "seen", "Q: {question} A:", {})
    with pytest.raises(UserError, match=message):
        spec.build(record, where="file.jsonl:3")


def test_fever_rejects_unknown_label():
    with pytest.raises(UserError, match="answer 'MAYBE' not in"):
        TASKS.get("fever").build({"id": "f", "statement": "s", "answers": ["MAYBE"]})


def test_system_spec_parses_options_and_label():
    from imprag_bench.harness.config import SystemSpec
    s = SystemSpec.parse("dense:query=oracle,k=10")
    assert (s.name, s.options, s.label, s.slug) == ("dense", {"query": "oracle", "k": 10}, "dense:query=oracle,k=10",
                                                    "dense_query_oracle_k_10")
    assert SystemSpec.parse("imprag:checkpoint=a/b,label=imprag-quick").label == "imprag-quick"
