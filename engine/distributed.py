"""The one process-group setup for the loop, training and generation.

Under torchrun (WORLD_SIZE > 1) the default group is started once with gloo for CPU tensors
and, when CUDA is used, NCCL for CUDA tensors ("cpu:gloo,cuda:nccl"), so object collectives
(gloo) and tensor collectives (NCCL) both work whoever calls them. Without torchrun nothing
is started and everything runs as a world of one.
"""
from __future__ import annotations

import os
import shutil
import tempfile

import torch
import torch.distributed as dist


def backend_for(use_cuda: bool) -> str:
    return "cpu:gloo,cuda:nccl" if use_cuda else "gloo"


def init_process_group(device: str = "auto", world_of_one: bool = False) -> tuple[int, int]:
    """(rank, world size). Joins the torchrun group when there is one (WORLD_SIZE > 1) and
    none is started yet. With world_of_one, a process outside torchrun starts a group of one
    through a FileStore (the trainer runs the same FSDP code for one process as for many);
    its store directory is returned by store_dir()."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if dist.is_initialized():
        return rank_and_world()
    under_torchrun = "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ
    if under_torchrun and (int(os.environ["WORLD_SIZE"]) > 1 or world_of_one):
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend_for(use_cuda))
    elif world_of_one:
        _store["dir"] = tempfile.mkdtemp(prefix="sheep-pg-")
        store = dist.FileStore(os.path.join(_store["dir"], "store"), 1)
        dist.init_process_group(backend_for(use_cuda), store=store, rank=0, world_size=1)
    return rank_and_world()


_store: dict[str, str | None] = {"dir": None}


def close_process_group() -> None:
    """End the default group and remove a world-of-one's store."""
    if dist.is_initialized():
        dist.destroy_process_group()
    if _store["dir"]:
        shutil.rmtree(_store["dir"], ignore_errors=True)
        _store["dir"] = None


def rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
