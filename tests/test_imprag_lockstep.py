"""ImpRAG's lockstep: under FSDP2 per-layer units every rank must call every decoder layer the same number of
times in the same order, whatever its micro-batch holds (a mismatch hangs the all-gathers). With `lockstep` the
sequence of layer calls of a micro-batch depends only on the stage, and the stand-in passes change nothing."""
from __future__ import annotations

import pytest
import torch

from imprag_bench.harness.training import engine
from tests import engine_driver as d

STEPS = 4  # engine_driver: warm-up NCE for steps 0-1, self-distillation for 2-3


def record(obj) -> list:
    calls: list = []
    for i, layer in enumerate(engine.decoder_layers(obj.module())):
        setattr(layer, engine.RUN_ATTR, lambda fn, *a, i=i: (calls.append((i, torch.is_grad_enabled())), fn(*a))[1])
    return calls


def run(batch_ids: list[str], step: int, lockstep: bool, monkeypatch, chunks: int = 2):
    """(layer calls, losses, gradients) of one micro-batch; `chunks`: the other ranks' most teacher chunks."""
    monkeypatch.setattr("imprag_bench.imprag.objective.global_max", lambda n: max(n, chunks))
    obj = d.objective("imprag")
    obj.lockstep = lockstep
    calls = record(obj)
    by_id = {it.id: it for it in d.items()}
    out = obj.losses([by_id[i] for i in batch_ids], step, STEPS)
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in obj.module().named_parameters() if p.grad is not None}
    return calls, {k: float(v.detach()) for k, v in out.items()}, grads


BATCHES = [["t"], ["r0"], ["r1", "d"], ["d", "t"], ["r2", "r3"]]


@pytest.mark.parametrize("step", [0, 3])
def test_lockstep_layer_calls_do_not_depend_on_the_micro_batch(step, monkeypatch):
    seqs = [run(b, step, True, monkeypatch)[0] for b in BATCHES]
    assert seqs[0] and all(s == seqs[0] for s in seqs), [len(s) for s in seqs]
    free = [run(b, step, False, monkeypatch)[0] for b in BATCHES]  # without it they differ (what hung FSDP2)
    assert len({tuple(s) for s in free}) > 1


@pytest.mark.parametrize("step", [0, 3])
@pytest.mark.parametrize("batch", [["t"], ["r1", "d"]])
def test_lockstep_stand_ins_leave_losses_and_gradients_unchanged(step, batch, monkeypatch):
    _, la, ga = run(batch, step, True, monkeypatch)
    _, lb, gb = run(batch, step, False, monkeypatch)
    assert la == lb
    assert ga.keys() == gb.keys() and all(torch.equal(ga[k], gb[k]) for k in ga)
