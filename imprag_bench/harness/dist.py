"""Rank, world size and barriers for index building and evaluation under torchrun.

Read from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); a plain `python` run is rank 0 of 1 and
every helper here is then a no-op, so one-process runs never touch torch.distributed. Under torchrun the
coordination (barriers, "does any rank have work") goes through a dedicated gloo group with a long timeout:
it works whatever backend the default group uses (NCCL for training on GPUs) and a rank waiting for rank 0
to train a large FAISS index is not killed by the default 10-30 minute collective timeout. If one rank
fails, torchrun stops the others, so a long timeout does not turn a crash into a hang.

The training loop (harness.training.loop.world) reads rank and world size from here too.
"""
from __future__ import annotations

import datetime
import os

_GROUP = None
TIMEOUT_HOURS = float(os.environ.get("IMPRAG_DIST_TIMEOUT_HOURS", "24"))


def rank_world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank_world()[0] == 0


def rank_device(device: str | None) -> str | None:
    """The one device rule for every trainer, encoder and system: `cuda` is this rank's own GPU
    (`cuda:LOCAL_RANK`, made current), an explicit `cuda:N` is kept in one process, and anything else (cpu,
    None) is kept; the rule is idempotent (this rank's own `cuda:LOCAL_RANK` passes again). Asking for CUDA
    where there is none, or for another `cuda:N` from several torchrun ranks (they would share one GPU), is
    refused with a UserError naming the `device` setting."""
    if device is None or not str(device).startswith("cuda"):
        return device
    import torch

    from imprag_bench.harness.errors import UserError
    if not torch.cuda.is_available():
        raise UserError(f"device: {device!r} was asked for, but this machine has no CUDA device "
                        "(set device=cpu, or install a CUDA build of torch: bash scripts/setup.sh --cuda cu130, "
                        "docs/usage.md)")
    size = rank_world()[1]
    if device != "cuda" and device != f"cuda:{local_rank()}":
        if size > 1:
            raise UserError(f"device: {device!r} under torchrun would put every rank on one GPU; use device=cuda "
                            "(each rank then takes cuda:LOCAL_RANK)")
        return device
    if local_rank() >= torch.cuda.device_count():
        raise UserError(f"device: LOCAL_RANK {local_rank()} has no GPU ({torch.cuda.device_count()} visible)")
    torch.cuda.set_device(local_rank())
    return f"cuda:{local_rank()}"


def start() -> None:
    """Start the default process group (nccl for CUDA tensors, gloo for CPU ones) and the coordination group,
    if nobody has: every rank calls it at the same point (train, run)."""
    _group()


def _group():
    """The gloo group used for coordination (the default group is started here if nobody has)."""
    global _GROUP
    import torch.distributed as dist

    if _GROUP is None:
        timeout = datetime.timedelta(hours=TIMEOUT_HOURS)
        if not dist.is_initialized():
            import torch
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, timeout=timeout)
        _GROUP = dist.new_group(backend="gloo", timeout=timeout)
    return _GROUP


def barrier() -> None:
    """Wait until every rank gets here (no-op in one process)."""
    if rank_world()[1] > 1:
        import torch.distributed as dist
        dist.barrier(group=_group())


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is true on any rank (the flag itself in one process)."""
    return global_max(1 if flag else 0) > 0


def global_max(value: int) -> int:
    """The largest of the ranks' integers (one scalar all-reduce on the coordination group; `value` in one
    process): e.g. how many times every rank runs a pass whose count would otherwise depend on its own data."""
    if rank_world()[1] == 1:
        return int(value)
    import torch
    import torch.distributed as dist
    t = torch.tensor([int(value)], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_group())
    return int(t.item())
