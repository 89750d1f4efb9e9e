"""Data parallelism under ``torchrun``: process group set-up, in-batch negatives gathered across ranks with
gradients, and gradient averaging.

Gradients are averaged explicitly after the last micro-batch of a step instead of through DDP's hooks: the
model runs twice per micro-batch (queries, then passages) and several micro-batches per step, which DDP
supports only with ``no_sync`` bookkeeping, while the trainable parameters (a LoRA adapter) are small enough
that one flat all-reduce per step costs nothing measurable.

With each rank's loss the mean over its own queries against *all* gathered passages, and :func:`gather_with_grad`
summing the passage gradients of every rank's loss back to the rank that computed them, averaging the
parameter gradients over ranks gives exactly the gradient of the global mean loss: two GPUs with batch B train
like one GPU with batch 2B.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: Optional[str] = None) -> DistInfo:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` etc.); a plain run stays single-process."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    use_cuda = torch.cuda.is_available() and not str(device or "").startswith("cpu")
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.rank, ctx.world = dist.get_rank(), dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(ctx.world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on this rank's rows: sum their gradients
        return grad.chunk(ctx.world)[ctx.rank]


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' rows of ``x`` (equal shapes), differentiable, and the offset of this rank's rows."""
    if not (dist.is_available() and dist.is_initialized()):
        return x, 0
    return _GatherWithGrad.apply(x), dist.get_rank() * x.shape[0]


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Mean of each gradient over ranks, one flat all-reduce per dtype."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    by_dtype: dict = {}
    for p in parameters:
        if p.grad is not None:
            by_dtype.setdefault(p.grad.dtype, []).append(p.grad)
    for grads in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def all_gather_objects(obj) -> list:
    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
