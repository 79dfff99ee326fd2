"""How a trainable model is laid out over ranks: FSDP2, DDP or one process; activation checkpointing; the
full and the sharded state dicts for exports and resumable checkpoints (torch.distributed.checkpoint).

Every optimiser step is a sequence of micro-batch steps; each runs the objective's loss function as the
forward of a root module (`StepModule`), so FSDP2's root hooks (gather what the root unit holds: embeddings,
final norm, LM head) and DDP's reducer see one forward and one backward per micro-batch on every rank.

Units (`fully_shard`): `fsdp_units = "layer"` (the RA readers, ImpRAG) shards one unit per decoder layer,
gathered one layer at a time. FSDP2 issues collectives per call of a unit, so an objective with layer units
must call every layer the same number of times in the same order on every rank: one HF forward does (the
readers); ImpRAG makes its passes data-independent (`imprag.objective`, lockstep). `"model"` (the retrievers'
copies, which run their candidate passes a data-dependent number of times) is one unit: it still shards the fp32
master weights, gradients and AdamW states, but the bf16 working weights are whole during a step.

Activation checkpointing wraps each decoder layer (non-reentrant `torch.utils.checkpoint`): HF-called layers
through their `forward`, and the layers ImpRAG's runner drives piece by piece through `run_in`.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed
from torch import nn
from torch.utils.checkpoint import checkpoint

from imprag_bench.harness.errors import UserError

STRATEGIES = ("auto", "fsdp", "ddp", "none")
RUN_ATTR = "_engine_run"


@dataclass(frozen=True)
class EngineConfig:
    """`strategy`: auto (fsdp under torchrun, none in one process), fsdp, ddp or none; `bf16`: the FSDP2
    mixed-precision policy (bf16 compute, fp32 gradient reduction) or DDP/one-process autocast by the objective;
    `checkpointing`: activation checkpointing of decoder layers."""

    strategy: str = "auto"
    bf16: bool = False
    checkpointing: bool = False

    def resolved(self, world: int) -> str:
        if self.strategy not in STRATEGIES:
            raise UserError(f"strategy: expected one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.strategy == "auto":
            return "fsdp" if world > 1 else "none"
        if self.strategy in ("fsdp", "ddp") and world == 1:
            return "none"  # one process: nothing to shard or reduce
        if self.strategy == "none" and world > 1:
            raise UserError("strategy: 'none' under torchrun would train one model per rank; use fsdp or ddp")
        return self.strategy


class StepModule(nn.Module):
    """The root every micro-batch step runs through: `forward(fn, *args)` is `fn(*args)` (the objective's
    loss), so that the distributed wrappers see the step as the model's forward. With `touch_all` every
    trainable parameter enters the loss (times 0): one FSDP2 unit then reduce-scatters the same gradients on
    every rank even when a rank's micro-batch leaves some weights unused."""

    def __init__(self, module: nn.Module, touch_all: bool = False):
        super().__init__()
        self.module = module
        self.touch_all = touch_all

    def forward(self, fn: Callable, *args):
        out = fn(*args)
        if self.touch_all:
            zero = sum(p.sum() for p in self.module.parameters() if p.requires_grad) * 0.0
            out = {**out, "loss": out["loss"] + zero}
        return out


def run_in(unit: nn.Module, fn: Callable, *args):
    """`fn(*args)` as `unit`'s forward: with checkpointing its activations are recomputed in backward; under
    FSDP2 (layer units) its parameters are gathered first. A plain call for a module the engine did not wrap."""
    run = getattr(unit, RUN_ATTR, None)
    return fn(*args) if run is None else run(fn, *args)


def decoder_layers(module: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a model: the entries of its outermost ModuleLists (`model.layers` of a Llama,
    `encoder.layer` of a BERT)."""
    found, inside = [], set()
    for name, m in module.named_modules():
        if any(name.startswith(p + ".") for p in inside):
            continue
        if isinstance(m, nn.ModuleList) and len(m) and any(True for _ in m.parameters()):
            found += list(m)
            inside.add(name)
    return found


def _checkpointed(fn: Callable) -> Callable:
    def run(*args, **kwargs):
        if torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False, **kwargs)
        return fn(*args, **kwargs)
    return run


def prepare_layers(layers: list[nn.Module], checkpointing: bool) -> None:
    """Activation checkpointing of every layer on or off: its HF `forward` and the `run_in` steps ImpRAG's
    runner makes (calling it again with another setting replaces the first)."""
    for layer in layers:
        layer.__dict__.pop("forward", None)  # the class's own forward again
        if checkpointing:
            layer.forward = _checkpointed(layer.forward)
        setattr(layer, RUN_ATTR, _checkpointed(lambda fn, *a: fn(*a)) if checkpointing else (lambda fn, *a: fn(*a)))


def wrap(module: nn.Module, cfg: EngineConfig, units: str = "model",
         device: str | None = None) -> tuple[nn.Module, str]:
    """(root, strategy): `module` inside a StepModule, sharded (FSDP2), replicated (DDP) or as it is."""
    from imprag_bench.harness import dist as dist_env

    world = dist_env.rank_world()[1]
    strategy = cfg.resolved(world)
    layers = decoder_layers(module)
    prepare_layers(layers, cfg.checkpointing)
    root = StepModule(module, touch_all=strategy == "fsdp" and units == "model")
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if cfg.bf16 else None, reduce_dtype=torch.float32)
        if units == "layer":
            for layer in layers:
                fully_shard(layer, mp_policy=mp)
                register_fsdp_forward_method(layer, RUN_ATTR)
        fully_shard(root, mp_policy=mp)
    elif strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        dev = torch.device(device or "cpu")
        root = DistributedDataParallel(root, device_ids=[dev.index] if dev.type == "cuda" else None,
                                       find_unused_parameters=True)
    return root, strategy


def inner(root: nn.Module) -> nn.Module:
    """The objective's module inside the root (DDP adds one more level)."""
    step = root.module if isinstance(root, nn.parallel.DistributedDataParallel) else root
    return step.module


def _options(full: bool):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=full, cpu_offload=full)


def full_state(root: nn.Module, strategy: str) -> dict[str, torch.Tensor]:
    """The whole model's state dict with the objective module's own names (a collective under FSDP2: every
    rank calls it; the values are complete on rank 0, on the CPU), for the HF export that evaluation loads."""
    if strategy != "fsdp":
        return inner(root).state_dict()
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(inner(root), options=_options(full=True))


def no_sync(root: nn.Module, strategy: str, last: bool):
    """A context for one micro-batch: DDP skips its all-reduce on all but the last one of a step (FSDP2
    reduce-scatters every micro-batch into the sharded gradients, which is what keeps its memory flat)."""
    import contextlib

    if strategy == "ddp" and not last:
        return root.no_sync()
    return contextlib.nullcontext()


def save_sharded(root: nn.Module, opt: torch.optim.Optimizer, folder) -> None:
    """Every rank writes its shards of model and optimiser state (torch.distributed.checkpoint) to `folder`."""
    import torch.distributed.checkpoint as dcp

    dcp.save(sharded_state(root, opt), checkpoint_id=str(folder), no_dist=not torch.distributed.is_initialized())


def sharded_state(root: nn.Module, opt: torch.optim.Optimizer) -> dict:
    """Model and optimiser state as torch.distributed.checkpoint saves them (each rank its shards; the names
    do not depend on the world size, so a checkpoint resumes on another one)."""
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model, optim = get_state_dict(inner(root), opt)
    return {"model": model, "optim": optim}


def load_sharded(root: nn.Module, opt: torch.optim.Optimizer, folder) -> None:
    """Load what `sharded_state` saved (dcp) into the wrapped model and its optimiser, in place."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    from torch.distributed.checkpoint import DefaultLoadPlanner

    state = sharded_state(root, opt)
    # partial: weights that never had a gradient (a retriever copy's unused last-layer MLP) have no optimiser
    # state in the checkpoint; the model itself was matched by `fingerprint` before
    dcp.load(state, checkpoint_id=str(folder), planner=DefaultLoadPlanner(allow_partial_load=True),
             no_dist=not torch.distributed.is_initialized())
    set_state_dict(inner(root), opt, model_state_dict=state["model"], optim_state_dict=state["optim"])


def fingerprint(module: nn.Module) -> str:
    """A digest of the parameter names and shapes: a checkpoint of another model is refused with it."""
    h = hashlib.sha256()
    for name, p in module.named_parameters():
        h.update(f"{name}:{tuple(p.shape)};".encode())
    return h.hexdigest()[:16]
