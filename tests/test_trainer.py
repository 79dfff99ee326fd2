"""The shared training loop with the ImpRAG objective on a tiny model: an interrupted run (stop_after, and a
real killed process) resumes and ends with weights identical to an uninterrupted run; two-process data
parallelism with torchrun (gloo) runs, and gather_candidates gives every rank the full candidate set."""
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]

SETUP = textwrap.dedent('''
    import torch
    from imprag_bench.harness.training.candidates import Candidates
    from imprag_bench.imprag.model import ImpRAGConfig, ImpRAGModel
    from imprag_bench.imprag.objective import ImpRAGObjective, ObjectiveConfig
    from tests.tiny import byte_tokenizer, tiny_llama
    from imprag_bench.harness.training.mix import TrainItem

    TEXTS = {f"p{i}": f"Title {i}\\npassage {i} says a{i % 4}" for i in range(16)}

    def make_objective(**kw):
        torch.manual_seed(0)
        model = ImpRAGModel(tiny_llama(), byte_tokenizer(), ImpRAGConfig(l_max=24))
        return ImpRAGObjective(model, lambda ids: [TEXTS[i] for i in ids],
                               ObjectiveConfig(n_read=1, warmup_share=0.5, **kw), negative_pool=list(TEXTS))

    def make_items():
        its = [TrainItem(f"r{i}", "retrieval", f"Q: q{i}? A:", f"a{i % 4}",
                         Candidates((f"p{i}", f"p{i + 1}"), (f"p{i + 5}",))) for i in range(8)]
        its += [TrainItem("d", "denoise", "x [START] b a [END] A:", "a b"), TrainItem("t", "plain", "", "plain text.")]
        return its
''')
exec(SETUP)  # the same definitions in this process and in the subprocesses


def weights(folder: Path) -> dict:
    return load_file(folder / "model.safetensors")


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def run_train(out: Path, stop_after=None, steps=6, **kw):
    from imprag_bench.harness.training.loop import TrainConfig, train
    cfg = TrainConfig(out=str(out), steps=steps, batch_size=4, lr=1e-3, ckpt_every=2, stop_after=stop_after)
    return train(make_objective(**kw), make_items(), cfg)


def test_resume_after_stop_ends_with_identical_weights(tmp_path):
    full = run_train(tmp_path / "full")
    run_train(tmp_path / "cut", stop_after=3)  # checkpoint at step 3 (the last step of this process)
    assert json.loads((tmp_path / "cut/checkpoint/trainer_state.json").read_text())["step"] == 3
    cut = run_train(tmp_path / "cut")  # crosses the warmup -> self-distillation boundary (step 3)
    assert_same(weights(full), weights(cut))
    assert not torch.equal(weights(full)["model.layers.0.mlp.up_proj.weight"], make_objective().model.lm.state_dict()[
        "model.layers.0.mlp.up_proj.weight"])  # it did train
    logs = [json.loads(x) for x in (tmp_path / "cut/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == list(range(1, 7))
    assert [r["distill"] for r in logs] == [0, 0, 0, 1, 1, 1]
    assert {"gen", "ret", "loss"} <= set(logs[0])


def test_resume_with_random_negatives_ends_with_identical_weights(tmp_path):
    kw = dict(random_negatives=3, distill_over="all", teacher_over="own")
    full = run_train(tmp_path / "full", **kw)
    run_train(tmp_path / "cut", stop_after=3, **kw)
    cut = run_train(tmp_path / "cut", **kw)
    assert_same(weights(full), weights(cut))
    plain = run_train(tmp_path / "plain")
    assert not torch.equal(weights(full)["model.layers.0.self_attn.q_proj.weight"],
                           weights(plain)["model.layers.0.self_attn.q_proj.weight"])  # the extras changed training


def test_retriever_lr_scale_applies_to_the_retriever_weights_only(tmp_path):
    start = make_objective()
    b = start.model.b
    before = {k: v.detach().clone() for k, v in start.model.lm.state_dict().items()}
    after = weights(run_train(tmp_path / "frozen", steps=2, retriever_lr_scale=0.0))
    retriever = [f"layers.{i}." for i in range(b)] + [f"layers.{b}.input_layernorm", f"layers.{b}.self_attn.q_proj",
                                                       f"layers.{b}.self_attn.k_proj"]
    mine = lambda k: any(r in k for r in retriever)  # noqa: E731
    key = lambda k: next(s for s in before if s.endswith(k) or k.endswith(s))  # noqa: E731
    assert sum(map(mine, after)) >= 4 * b  # the layers below b, and layer b's norm and q/k
    for k, v in after.items():  # frozen (lr 0) exactly where the retriever is; the rest trains
        assert torch.equal(v, before[key(k)]) == mine(k), k
    full = run_train(tmp_path / "half", retriever_lr_scale=0.5)  # the groups survive a resume
    run_train(tmp_path / "cut", stop_after=3, retriever_lr_scale=0.5)
    assert_same(weights(full), weights(run_train(tmp_path / "cut", retriever_lr_scale=0.5)))


def test_staged_training_saves_the_warmup_checkpoint_and_matches(tmp_path):
    from imprag_bench.imprag.train import train_in_stages
    from imprag_bench.harness.training.loop import TrainConfig
    cfg = TrainConfig(out=str(tmp_path / "staged"), steps=6, batch_size=4, lr=1e-3, ckpt_every=2)
    ck = train_in_stages(make_objective(), make_items(), cfg, 0.5, True)
    warm = tmp_path / "staged/checkpoint-warmup"
    assert json.loads((warm / "trainer_state.json").read_text())["step"] == 3
    assert (warm / "imprag_config.json").exists()
    assert_same(weights(ck), weights(run_train(tmp_path / "plain")))
    assert_same(weights(warm), weights(run_train(tmp_path / "three", steps=6, stop_after=3)))


KILL_SCRIPT = SETUP + textwrap.dedent('''
    import sys, time
    from imprag_bench.harness.training.loop import TrainConfig, train
    obj = make_objective()
    slow = obj.losses
    def losses(*a):
        time.sleep(float(sys.argv[2]))
        return slow(*a)
    obj.losses = losses
    train(obj, make_items(), TrainConfig(out=sys.argv[1], steps=6, batch_size=4, lr=1e-3, ckpt_every=1))
''')


@pytest.mark.integration
def test_killed_process_resumes_to_identical_weights(tmp_path):
    script = tmp_path / "train_tiny.py"
    script.write_text(KILL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(out), "0.5"], cwd=ROOT, env=env)
    state = out / "checkpoint/trainer_state.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (state.exists() and json.loads(state.read_text())["step"] >= 2):
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    step = json.loads(state.read_text())["step"]
    assert 2 <= step < 6
    subprocess.run([sys.executable, str(script), str(out), "0"], cwd=ROOT, env=env, check=True)
    # The reference run uses the same process settings (threads change float reduction order).
    subprocess.run([sys.executable, str(script), str(tmp_path / "full"), "0"], cwd=ROOT, env=env, check=True)
    assert_same(weights(out / "checkpoint"), weights(tmp_path / "full" / "checkpoint"))


DDP_SCRIPT = SETUP + textwrap.dedent('''
    import json, sys
    from pathlib import Path
    from imprag_bench.harness.training.loop import TrainConfig, gather_candidates, train, world
    rank, size = world()
    # uneven candidate counts per rank; the gather is differentiable: every rank's loss reaches every row
    e = torch.full((rank + 1, 3), float(rank), requires_grad=True)
    ids, g = gather_candidates([f"c{rank}.{i}" for i in range(rank + 1)], e)
    (g * torch.arange(1, g.shape[0] + 1.0)[:, None]).sum().backward()
    ck = train(make_objective(), make_items(), TrainConfig(out=sys.argv[1], steps=2, batch_size=4, lr=1e-3))
    Path(sys.argv[1], f"rank{rank}.json").write_text(json.dumps(
        {"ids": ids, "rows": g.tolist(), "grad": e.grad.tolist(), "size": size}))
''')


@pytest.mark.integration
def test_two_process_data_parallel(tmp_path):
    script = tmp_path / "ddp_tiny.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).parent / "torchrun"
    out = tmp_path / "ddp"
    subprocess.run([str(torchrun), "--nproc_per_node", "2", "--master_port", "29517", str(script), str(out)],
                   cwd=ROOT, env=env, check=True, timeout=300)
    r0, r1 = (json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["size"] == 2
    assert r0["ids"] == r1["ids"] == ["c0.0", "c1.0", "c1.1"]
    assert r0["rows"] == r1["rows"] == [[0.0] * 3, [1.0] * 3, [1.0] * 3]
    # each rank's loss weighs row i by i + 1; a row's gradient sums both ranks' losses (FSDP2 then averages)
    assert r0["grad"] == [[2.0] * 3] and r1["grad"] == [[4.0] * 3, [6.0] * 3]
    assert (out / "checkpoint/model.safetensors").exists()
    assert json.loads((out / "checkpoint/trainer_state.json").read_text())["step"] == 2
