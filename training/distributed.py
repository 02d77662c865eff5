"""Data-parallel rounds over several processes (DDP-style), with no change to the round code's callers.

    python -m training --processes 2                     # the runner starts torchrun: CPU (gloo) or GPUs
    accelerate launch --multi_gpu --num_processes 2 -m training.child --round-dir runs/.round_003.tmp

Under a launcher (RANK / WORLD_SIZE / LOCAL_RANK set) each process trains on its share of every optimizer
step's pairs and the LoRA gradients are summed across processes before the step, so the update equals a
single process's on the whole step. Every rank reads the round's folder; rank 0 alone writes to it (the
database is the app's).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """This process's place; joins the process group on first use when a launcher started several."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    return World(dist.get_rank(), dist.get_world_size(), local_rank)


def share(obj, w: World):
    """Rank 0's `obj` on every rank (pickled)."""
    if w.size == 1:
        return obj
    box = [obj if w.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(items: list, w: World) -> list:
    """Every rank's list, concatenated in rank order."""
    if w.size == 1:
        return items
    boxes: list = [None] * w.size
    dist.all_gather_object(boxes, items)
    return [x for box in boxes for x in box]


def sum_gradients(params: list[torch.nn.Parameter], w: World) -> None:
    """All-reduce (sum) the gradients; a rank that saw no data this step contributes zeros."""
    if w.size == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


def barrier(w: World) -> None:
    if w.size > 1:
        dist.barrier()
