"""Several processes under torchrun (PyTorch's own launcher and rendezvous), one per device.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them every function here is the single
process it always was (rank 0 of 1, no process group). Training wraps the VAE and the PatchGAN in
DistributedDataParallel; folder jobs split their file list by rank. Rank 0 alone writes shared
files (checkpoints, the model, reports).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that writes shared files and speaks to the user."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ValueError(f"${name} is {value!r}, not a whole number; start several processes with torchrun") from None


def world() -> World:
    """This process's place: from the process group when there is one, else from torchrun's
    environment, else rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
    size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"$RANK {rank} and $WORLD_SIZE {size} do not fit together; start the processes with torchrun")
    return World(rank, size, _env_int("LOCAL_RANK", 0))


def init(device: torch.device) -> tuple[World, bool]:
    """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA), once per process.
    On CUDA each process takes the GPU of its local rank. Returns the world and whether this
    call made the group (then the caller ends it with `finish`)."""
    w = world()
    if not w.distributed or dist.is_initialized():
        return w, False
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; run a single process")
    if device.type == "cuda":
        torch.cuda.set_device(w.local_rank)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return world(), True


def finish(owned: bool) -> None:
    """Leave the process group if `init` made it, so a later job in this process starts clean.
    All processes meet first: one that closed its connections while another still used them
    would make gloo abort that one. Only on the way out of a job that went well: after an error
    torchrun stops the other processes."""
    if owned and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def local_device(device: torch.device, w: World) -> torch.device:
    """The device this process trains on: under torchrun on CUDA, the GPU of its local rank."""
    if w.distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", w.local_rank)
    return device


def shard(items: Sequence[T], w: World | None = None) -> list[T]:
    """This rank's share of a list: every size-th item from its rank on, so the shares are
    disjoint, cover the list, and depend on the list's order only."""
    w = w or world()
    return list(items[w.rank :: w.size])


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _tensor_device() -> torch.device:
    """NCCL reduces CUDA tensors only; gloo CPU ones."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def mean(values: dict[str, float]) -> dict[str, float]:
    """The mean of each logged figure over the ranks (every rank logs the same keys)."""
    if not _active() or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=_tensor_device())
    dist.all_reduce(t)
    return dict(zip(keys, (t / dist.get_world_size()).tolist()))


def mean_tensor(t: torch.Tensor) -> torch.Tensor:
    """A detached tensor averaged over the ranks (e.g. the adaptive GAN weight, so every rank
    scales its loss alike)."""
    if not _active():
        return t
    out = t.detach().clone().to(_tensor_device())
    dist.all_reduce(out)
    return (out / dist.get_world_size()).to(t.device)


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on one (a stop, a time limit): ranks stop together."""
    if not _active():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=_tensor_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def average_gradients(params: Sequence[torch.nn.Parameter]) -> None:
    """Average the gradients of small modules outside DDP (the latent critic, the style
    classifier) in one all-reduce."""
    if not _active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads]).to(_tensor_device())
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank ([obj] in a single process)."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if _active():
        dist.barrier()
