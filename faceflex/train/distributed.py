"""Data-parallel training under ``torchrun``: one process per CPU socket or GPU, one model copy each.

``torchrun --nproc_per_node=N $(which faceflex) train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`start` joins the process group (gloo on the CPU, nccl on CUDA, where each
process takes the GPU ``LOCAL_RANK``). The :class:`~faceflex.train.trainer.Trainer` then wraps its
model in ``DistributedDataParallel`` and splits every batch of the single-process run across the
processes (the batch size stays the global one, so a recipe means the same on any number of
processes); only rank 0 evaluates, writes checkpoints, weights and history. Without ``torchrun``
everything here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """This process's place in the training job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """True when several processes train together."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """The process that evaluates and writes files."""
        return self.rank == 0


def current() -> Ranks:
    """This process's ranks (``Ranks()`` when no process group has been joined)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Ranks()
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def launched() -> bool:
    """Whether ``torchrun`` (or another launcher) started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join the process group when launched by ``torchrun`` (idempotent); the ranks, and the device
    this process trains on (CUDA: the GPU ``LOCAL_RANK``)."""
    if launched() and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    ranks = current()
    if ranks.active and device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    return ranks, device


def wrap(model: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """``model`` in ``DistributedDataParallel`` when several processes train (else ``model`` itself)."""
    if not ranks.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _collective_device() -> torch.device:
    """Where small collective tensors live: nccl needs them on this process's GPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def average_gradients(module: torch.nn.Module) -> None:
    """Average ``module``'s gradients over the processes (for a model trained outside DDP, such as
    the adversarial critic)."""
    ranks = current()
    if not ranks.active:
        return
    for parameter in module.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= ranks.world


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each logged value over the processes."""
    ranks = current()
    if not ranks.active or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(tensor)
    return {k: float(v) / ranks.world for k, v in zip(keys, tensor.tolist())}


def agree(flag: bool) -> bool:
    """Rank 0's ``flag``, on every process (so all stop training at the same epoch)."""
    if not current().active:
        return flag
    tensor = torch.tensor([int(flag)], device=_collective_device())
    dist.broadcast(tensor, 0)
    return bool(tensor.item())


def barrier() -> None:
    """Wait until every process gets here."""
    if current().active:
        dist.barrier()
