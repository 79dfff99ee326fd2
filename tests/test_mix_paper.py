"""The paper's training mix: phrase denoising and sentence generation, `synthetic_each` of each (5,000 in the
paper), no reading items built from the seen tasks; the CPU mix (reading first, then both kinds filling
`n_instruct`) is unchanged."""
from imprag_bench.harness.corpus import Corpus
from imprag_bench.harness.records import Example, Passage
from imprag_bench.harness.training.candidates import Candidates
from imprag_bench.harness.training.mix import build_mix

CORPUS = Corpus("t", [Passage(f"p{i}", f"T{i}", f"Alpha {i} went home today. Then beta {i} came back later. "
                                                f"Gamma {i} left.") for i in range(200)])
EXAMPLES = [Example(f"q{i}", "nq", f"Q: who is {i}? A:", f"Alpha {i}", [f"Alpha {i}"]) for i in range(10)]
CANDS = [Candidates((f"p{i}",), (f"p{i + 50}",)) for i in range(10)]


def kinds(mix) -> dict:
    out: dict = {}
    for it in mix:
        out[it.kind] = out.get(it.kind, 0) + 1
    return out


def test_synthetic_each_gives_both_kinds_that_many_and_no_reading_items():
    k = kinds(build_mix(EXAMPLES, CANDS, CORPUS, seed=0, synthetic_each=7))
    assert k["denoise"] == k["sentgen"] == 7 and "reading" not in k and k["retrieval"] == 10


def test_the_cpu_mix_fills_n_instruct_with_reading_first():
    k = kinds(build_mix(EXAMPLES, CANDS, CORPUS, seed=0, n_instruct=14))
    assert k["reading"] + k.get("denoise", 0) + k.get("sentgen", 0) == 14 and k["reading"] > 0
