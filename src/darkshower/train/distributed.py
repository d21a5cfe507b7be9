"""Distributed data-parallel training with ``torch.distributed`` (``darkshower train ... --nproc N``).

Every rank holds the same training store, fits the same preprocessing and starts from the same
weights (same seed; DistributedDataParallel also broadcasts rank 0's parameters). Each epoch the
seeded batch order is cut into whole rounds of N batches and rank r takes batches r, r+N, ...;
DistributedDataParallel averages the gradients, so every rank takes the same optimizer step.
Validation batches are sharded the same way and the label-free metrics (sums and counts) are
all-reduced, so selection and early stopping decide identically everywhere. Buffers are not
broadcast: an NAE/WNAE keeps its replay buffer per rank. Only rank 0 writes run files; the
checkpoint also holds every rank's RNG state, so ``--resume`` continues each rank's stream.

Backends: gloo on CPU, nccl when every rank has its own GPU. Launch either with ``--nproc N``
(spawns N local processes on 127.0.0.1) or with ``torchrun`` (the RANK / WORLD_SIZE / LOCAL_RANK /
MASTER_ADDR / MASTER_PORT environment it sets is used as is).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class World:
    """This process's place in the job (a single process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = World()


def current_world() -> World:
    """The world of an initialised process group, else a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return SINGLE


def env_world() -> World | None:
    """The world torchrun describes in the environment, or None."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        size = int(os.environ["WORLD_SIZE"])
        rank = int(os.environ["RANK"])
        return World(rank, size, int(os.environ.get("LOCAL_RANK", rank)))
    return None


def backend() -> str:
    import torch

    return "nccl" if torch.cuda.is_available() else "gloo"


def init(world: World) -> None:
    """Join the process group described by ``world`` (MASTER_ADDR/PORT from the environment)."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    b = backend()
    if b == "nccl":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(b, rank=world.rank, world_size=world.size)


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sums(values: dict[str, float]) -> dict[str, float]:
    """Sum each value over the ranks (a collective: every rank calls it; a key missing on a rank counts 0)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return dict(values)
    # a rank may lack a key (e.g. no validation batch of its own): sum over the union, missing = 0
    keys = sorted(set().union(*gather_objects(sorted(values))))
    t = torch.tensor([float(values.get(k, 0.0)) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on at least one (a collective: call it on all ranks)."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (on every rank)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, size: int, port: int, fn, args: tuple, kwargs: dict) -> None:
    import torch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(size),
                      LOCAL_RANK=str(rank))
    # share the cores between the ranks (a run config's `threads` still wins)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // size))
    init(World(rank, size, rank))
    try:
        fn(*args, **kwargs)
    finally:
        shutdown()


def launch(nproc: int, fn, *args, **kwargs) -> None:
    """Run ``fn(*args, **kwargs)`` in ``nproc`` new local processes joined in one process group (on
    127.0.0.1). An exception in any rank is raised here (as torch.multiprocessing reports it)."""
    import torch.multiprocessing as mp

    port = free_port()
    mp.start_processes(_worker, args=(nproc, port, fn, args, kwargs), nprocs=nproc, join=True,
                       start_method="spawn")
