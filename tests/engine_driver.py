"""Driver of the distributed-engine tests: trains one objective on tiny random-init models with the shared loop,
in one process or under `torchrun --nproc_per_node 2` (gloo on CPU).

    python tests/engine_driver.py OBJECTIVE OUT STRATEGY MICRO [STOP_AFTER] [CHECKPOINTING] [BF16]

OBJECTIVE: imprag (one FSDP2 unit per decoder layer in lockstep, in-batch negatives gathered across ranks), reader
(RA-IT's J_gen, one unit per decoder layer) or slice (RA-DIT-Llama's retriever stage: a layer-0..b copy against the frozen LM). Steps 4, global
batch 4, the NCE warm-up for the first 2 steps, then self-distillation. Writes OUT/checkpoint (the HF export,
dcp/, trainer_state.json) and OUT/log.jsonl.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imprag_bench.harness.corpus import Corpus  # noqa: E402
from imprag_bench.harness.records import Passage  # noqa: E402
from imprag_bench.harness.training.candidates import Candidates  # noqa: E402
from imprag_bench.harness.training.loop import TrainConfig, train  # noqa: E402
from imprag_bench.harness.training.mix import TrainItem  # noqa: E402
from tests.tiny import byte_tokenizer, tiny_llama  # noqa: E402

STEPS, BATCH = 4, 4
TEXTS = {f"p{i}": f"Title {i}\npassage {i} says a{i % 4}" for i in range(24)}


def items() -> list:
    """8 retrieval items with distinct candidates (so ranks hold different in-batch negatives) and 2 more."""
    its = [TrainItem(f"r{i}", "retrieval", f"Q: q{i}? A:", f"a{i % 4}",
                     Candidates((f"p{2 * i}",), (f"p{2 * i + 1}", f"p{(2 * i + 7) % 24}"))) for i in range(8)]
    return its + [TrainItem("d", "denoise", "x [START] b a [END] A:", "a b"),
                  TrainItem("t", "plain", "", "plain text.")]


def objective(name: str, device: str = "cpu"):
    """The named objective over tiny random-init models (seeded) on `device`."""
    torch.manual_seed(0)
    lm, tok = tiny_llama().to(device), byte_tokenizer()
    if name == "imprag":
        from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
        from imprag_bench.imprag.objective import ImpRAGObjective, ObjectiveConfig

        return ImpRAGObjective(ImpRAGModel(lm, tok, ImpRAGConfig(l_max=24)), lambda ids: [TEXTS[i] for i in ids],
                               ObjectiveConfig(n_read=1, warmup_share=0.5))
    if name == "reader":
        from imprag_bench.baselines.ra_objectives import ReaderObjective

        ctx = {it.id: [Passage(p, "", TEXTS[p]) for p in it.candidates.positives]
               for it in items() if it.candidates is not None}
        return ReaderObjective(lm, tok, ctx, passage_tokens=16)
    from imprag_bench.baselines.ra_objectives import RetrieverObjective, TrainableRetriever
    from imprag_bench.baselines.retrievers.lm_slice import LMSliceEncoder

    corpus = Corpus("tiny", [Passage(i, "", t) for i, t in TEXTS.items()])
    enc = LMSliceEncoder.from_lm(lm, tok, b=1, l_max=24)
    return RetrieverObjective(TrainableRetriever(enc, 0.125), lm, tok, corpus, warmup_steps=2, passage_tokens=16)


def main(argv: list[str]) -> None:
    name, out, strategy, micro = argv[:4]
    stop = int(argv[4]) if len(argv) > 4 and argv[4] != "-" else None
    checkpointing = len(argv) > 5 and argv[5] == "1"
    bf16 = len(argv) > 6 and argv[6] == "1"  # FSDP2's bf16 mixed-precision policy
    its = items() if name != "slice" else [it for it in items() if it.kind == "retrieval"]
    cfg = TrainConfig(out=out, steps=STEPS, batch_size=BATCH, lr=1e-3, ckpt_every=2, stop_after=stop,
                      micro_batch=int(micro), strategy=strategy, checkpointing=checkpointing, fsdp_bf16=bf16)
    train(objective(name), its, cfg)


if __name__ == "__main__":
    main(sys.argv[1:])
