"""The one process-group setup for the loop, training and generation.

Under torchrun (WORLD_SIZE > 1) the default group is started once with gloo for CPU tensors
and, when CUDA is used, NCCL for CUDA tensors ("cpu:gloo,cuda:nccl"), so object collectives
(gloo) and tensor collectives (NCCL) both work whoever calls them. Without torchrun nothing
is started and everything runs as a world of one.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def backend_for(use_cuda: bool) -> str:
    return "cpu:gloo,cuda:nccl" if use_cuda else "gloo"


def init_process_group(device: str = "auto") -> tuple[int, int]:
    """(rank, world size); joins the torchrun group when there is one and none is started."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend_for(use_cuda))
    return rank_and_world()


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
