"""Data-parallel plumbing for ``torchrun --nproc_per_node=N`` (DDP; gloo on CPU, NCCL on GPU).

torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in each worker's environment
(https://pytorch.org/docs/stable/elastic/run.html). Reading them is detection of *how the process
was launched*, not configuration of what gets built: a single process sees none and runs alone.
Every rank computes the same global batch indices from (seed, step) and takes its own contiguous
slice, so N ranks see exactly the data one rank would see with the same global batch.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "init_distributed", "lone_process", "shutdown_distributed"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"
    local_world: int = 1  # ranks on this machine (they share its cores)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def shard(self, n: int) -> slice:
        """This rank's contiguous slice of ``n`` global rows (``n`` must divide evenly)."""
        if n % self.world:
            raise ValueError(
                f"batch_size={n} must be divisible by the number of ranks ({self.world})"
            )
        k = n // self.world
        return slice(self.rank * k, (self.rank + 1) * k)

    def all_reduce(self, t: torch.Tensor, op: str = "mean") -> torch.Tensor:
        """Reduce ``t`` over ranks in place (``mean``, ``sum`` or ``max``); a no-op alone."""
        if not self.enabled:
            return t
        red = {"mean": dist.ReduceOp.SUM, "sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
        dist.all_reduce(t, op=red)
        if op == "mean":
            t /= self.world
        return t

    def all_gather_cat(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``t`` along dim 0 in rank order (same shape on every rank)."""
        if not self.enabled:
            return t
        parts = [torch.empty_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t.contiguous())
        return torch.cat(parts, dim=0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def _pick_device(requested: str, local_rank: int) -> str:
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            from archlab.errors import ArchlabError

            raise ArchlabError(
                "--device cuda: this torch has no usable CUDA device "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})"
            )
        return f"cuda:{local_rank}"
    return requested


def lone_process(device: str = "auto") -> DistInfo:
    """A process that trains alone on ``device`` (auto: CUDA if available); joins nothing."""
    return DistInfo(device=_pick_device(device, 0))


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun set up, or describe a lone process.

    Backend: NCCL when every rank owns a GPU, gloo otherwise (CPU DDP). Idempotent.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    dev = _pick_device(device, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.startswith("cuda") else "gloo"
        if dev.startswith("cuda"):
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        log.info("rank %d/%d joined the %s process group", rank, world, backend)
    return DistInfo(rank, world, local_rank, dev, local_world)


def shutdown_distributed(sync: bool = True) -> None:
    """Leave the process group. ``sync``: wait for every rank first (after a successful run), so
    no rank tears its gloo pairs down while another still talks to it — without it a rank that
    finishes first can exit under a peer's in-flight traffic, which aborted the peer ("terminate
    called without an active exception", SIGABRT) on a loaded machine. Skip it after an error: a
    barrier a failed peer never reaches would hang until the timeout."""
    if dist.is_available() and dist.is_initialized():
        if sync:
            dist.barrier()
        dist.destroy_process_group()
