"""Process group and FSDP2 wiring, in torchtitan's order.

    meta model -> LoRA -> activation checkpointing -> compile -> fully_shard(each block)
    -> fully_shard(root: embeddings + final norm + head) -> allocate shards -> load shards

Memory while loading: a rank allocates only its own shard of every parameter (fp32 master
weights, 1/world of the model) and reads only its own rows of each tensor from the
safetensors files (`get_slice`), so no rank ever holds a full tensor, let alone the model.

Without torchrun (no process group) a world of one is started through a FileStore, so one
process runs the very same FSDP code as many. A group that the caller already started (the
I-SHEEP loop under torchrun) is used as is and left open.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.utils.checkpoint import checkpoint

from engine.checkpoint import CheckpointError, checkpoint_files
from engine.config import ModelConfig
from engine.distributed import close_process_group, init_process_group
from engine.model import CausalLM
from engine.training.config import ConfigError
from engine.training.lora import apply_lora, is_lora_param, lora_initial_value
from engine.training.loss import CausalLMLoss

_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass
class DistContext:
    rank: int
    world_size: int
    device: torch.device
    mesh: DeviceMesh
    owns_group: bool             # we started the process group, so we end it

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        dist.barrier()

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def close(self) -> None:
        if self.owns_group:
            close_process_group()


def init_distributed(device: str = "auto") -> DistContext:
    """Join (or start) the default process group and build the 1-D FSDP device mesh."""
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError("setting 'device' = 'cuda' but CUDA is not available")
    owns = not dist.is_initialized()     # the loop's group (or a caller's) is used as is
    rank, world = init_process_group("cuda" if use_cuda else "cpu", world_of_one=True)
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", rank % torch.cuda.device_count()))
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    mesh = init_device_mesh(dev.type, (world,), mesh_dim_names=("fsdp",))
    return DistContext(rank, world, dev, mesh, owns)


def checkpoint_activations(block: nn.Module) -> None:
    """Recompute the block's activations in backward instead of keeping them. Overrides the
    instance's forward rather than wrapping the module, so parameter names do not change."""
    inner = block.forward

    def forward(*args, **kwargs):
        return checkpoint(inner, *args, use_reentrant=False, **kwargs)

    block.forward = forward


def shard_model(model: CausalLMLoss, mesh: DeviceMesh, compute_dtype: torch.dtype,
                activation_checkpointing: bool = False, compile: bool = False) -> None:
    """Apply AC, compile and FSDP2 to a (meta) CausalLMLoss in place.

    Params stay fp32 (master weights); FSDP casts them to compute_dtype for forward and
    reduces gradients in fp32. Inputs are not cast: the rotary table must stay fp32, and the
    hidden states come out of the embedding in the compute dtype already."""
    mp = MixedPrecisionPolicy(param_dtype=None if compute_dtype == torch.float32 else compute_dtype,
                              reduce_dtype=torch.float32, cast_forward_inputs=False)
    layers = model.lm.model.layers
    for i, layer in enumerate(layers):
        if activation_checkpointing:
            checkpoint_activations(layer)
        if compile:
            layer.compile()
        # the last block is needed first in backward: keeping it gathered saves one all-gather
        fully_shard(layer, mesh=mesh, mp_policy=mp, reshard_after_forward=i < len(layers) - 1)
    # root: embeddings, final norm and lm_head in one group (tied weights must share a group)
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=False)


def build_sharded_model(model_dir: str | Path, ctx: DistContext, compute_dtype: torch.dtype, *,
                        lora: dict | None = None, activation_checkpointing: bool = False,
                        compile: bool = False, seed: int = 0) -> CausalLMLoss:
    """The model ready to train: built on meta, adapted (lora = apply_lora kwargs), sharded,
    then each rank's shard loaded from the checkpoint (adapters initialised from `seed`)."""
    cfg = ModelConfig.from_file(model_dir)
    with torch.device("meta"):
        lm = CausalLM(cfg)
    if lora is not None:
        apply_lora(lm, **lora)
    model = CausalLMLoss(lm)
    shard_model(model, ctx.mesh, compute_dtype, activation_checkpointing, compile)
    model.to_empty(device=ctx.device)
    if cfg.tie_word_embeddings and lm.lm_head.weight is not lm.model.embed_tokens.weight:
        raise RuntimeError("tied lm_head and embeddings came apart during sharding")
    load_sharded_weights(lm, Path(model_dir), seed)
    lm.init_rope()
    return model


def shard_rows(param: torch.Tensor) -> tuple[int, int]:
    """Rows [start, end) of the full tensor held by this rank (FSDP2: Shard(0), torch.chunk)."""
    if not isinstance(param, DTensor):
        return 0, param.shape[0]
    mesh = param.device_mesh
    rank, world = mesh.get_local_rank(), mesh.size()
    rows = param.shape[0]
    chunk = -(-rows // world)
    start = min(rank * chunk, rows)
    return start, min(start + chunk, rows)


@torch.no_grad()
def load_sharded_weights(lm: CausalLM, model_dir: Path, seed: int = 0) -> None:
    """Copy this rank's rows of every checkpoint tensor into the (already allocated) sharded
    parameters; adapters get their initial values (the same full tensor on every rank)."""
    params = dict(lm.named_parameters())      # tied lm_head appears once, as the embedding
    where: dict[str, Path] = {}
    for f in checkpoint_files(model_dir):
        with safe_open(str(f), framework="pt") as fh:
            for name in fh.keys():
                if not name.endswith(_IGNORED_SUFFIXES):
                    where[name] = f
    if lm.config.tie_word_embeddings:
        where.pop("lm_head.weight", None)
    base = {n for n in params if not is_lora_param(n)}
    missing, unexpected = sorted(base - set(where)), sorted(set(where) - base)
    if missing or unexpected:
        raise CheckpointError(f"{model_dir}: checkpoint does not match config.json: "
                              f"missing {missing[:10]}, unexpected {unexpected[:10]}")
    by_file: dict[Path, list[str]] = {}
    for name in sorted(base):
        by_file.setdefault(where[name], []).append(name)
    for f, names in by_file.items():
        with safe_open(str(f), framework="pt") as fh:
            for name in names:
                p = params[name]
                sliced = fh.get_slice(name)
                if tuple(sliced.get_shape()) != tuple(p.shape):
                    raise CheckpointError(f"{f}: tensor {name} has shape {tuple(sliced.get_shape())}, "
                                          f"config.json implies {tuple(p.shape)}")
                start, end = shard_rows(p)
                _copy_local(p, sliced[start:end], name)
    gen = torch.Generator().manual_seed(seed)
    for name in sorted(n for n in params if is_lora_param(n)):
        start, end = shard_rows(params[name])
        _copy_local(params[name], lora_initial_value(name, params[name].shape, gen)[start:end], name)


def _copy_local(param: torch.Tensor, rows: torch.Tensor, name: str) -> None:
    local = param.to_local() if isinstance(param, DTensor) else param.data
    if local.shape != rows.shape:
        raise RuntimeError(f"{name}: local shard has shape {tuple(local.shape)}, expected "
                           f"{tuple(rows.shape)} (FSDP sharding is not the Shard(0) chunking assumed)")
    local.copy_(rows.to(device=local.device, dtype=local.dtype))
