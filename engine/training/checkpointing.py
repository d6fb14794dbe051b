"""Training checkpoints (torch.distributed.checkpoint) and the final Hugging Face export.

    output/checkpoints/step_N/   DCP shards of model + optimizer (every rank writes its own),
                                 trainer_state.json (step, losses, data position),
                                 rng_rank{r}.pt (each rank's torch / CUDA generator states)

A checkpoint is written to step_N.tmp and renamed once every rank has finished, so a
step_N directory is always complete; only the newest `keep` are kept. All ranks must see the
same filesystem. With LoRA only the trainable tensors are saved: the frozen base is read
again from the source model on resume.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     get_optimizer_state_dict, set_model_state_dict,
                                                     set_optimizer_state_dict)
from torch.distributed.tensor import DTensor

from engine.checkpoint import save_state_dict
from engine.files import replace_dir
from engine.config import ModelConfig
from engine.tokenizer import Tokenizer
from engine.training.lora import LoRALinear, is_lora_param, merge_lora_weight
from engine.training.parallel import DistContext

_STEP_DIR = re.compile(r"^step_(\d+)$")
_OPTIONS = StateDictOptions(ignore_frozen_params=True)
# frozen (LoRA base) tensors are not in the checkpoint; dcp.load still fails on any missing
# trainable tensor, so setting the loaded dict without strict checking hides nothing
_LOAD_OPTIONS = StateDictOptions(ignore_frozen_params=True, strict=False)


def save_checkpoint(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    trainer_state: dict, ctx: DistContext, keep: int) -> Path:
    """Write step_N under root (all ranks call this); returns its path."""
    final, tmp = root / f"step_{step}", root / f"step_{step}.tmp"
    if ctx.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    ctx.barrier()
    state = {"model": _trainable_state(model),
             "optim": get_optimizer_state_dict(model, optimizer, options=_OPTIONS)}
    dcp.save(state, checkpoint_id=str(tmp))
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, tmp / f"rng_rank{ctx.rank}.pt")
    if ctx.is_main:
        (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=1))
    ctx.barrier()
    if ctx.is_main:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    ctx.barrier()
    return final


def _trainable_state(model: nn.Module) -> dict:
    """Sharded model state without frozen tensors; ignore_frozen_params alone keeps a frozen
    tied lm_head.weight, whose name is an alias of the embedding."""
    state = get_model_state_dict(model, options=_OPTIONS)
    frozen = {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
    return {k: v for k, v in state.items() if k not in frozen}


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under root, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and (p / "trainer_state.json").is_file()]
    return [p for _, p in sorted(found)]


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                    ctx: DistContext) -> dict:
    """Restore model, optimizer and this rank's RNG from `path` (all ranks); returns the
    trainer state saved with it."""
    state = {"model": _trainable_state(model),
             "optim": get_optimizer_state_dict(model, optimizer, options=_OPTIONS)}
    dcp.load(state, checkpoint_id=str(path))
    set_model_state_dict(model, state["model"], options=_LOAD_OPTIONS)
    set_optimizer_state_dict(model, optimizer, state["optim"], options=_LOAD_OPTIONS)
    rng_file = path / f"rng_rank{ctx.rank}.pt"
    if rng_file.is_file():     # absent when resuming on more ranks than wrote the checkpoint
        rng = torch.load(rng_file, weights_only=True)
        torch.set_rng_state(rng["cpu"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return json.loads((path / "trainer_state.json").read_text())


class Checkpointer:
    """One run's checkpoints/ folder: when to save, save (keeping the newest `keep`), find the
    latest, load it. All ranks call save and load."""

    def __init__(self, root: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
                 ctx: DistContext, *, every: int, keep: int, stop_at: int | None):
        self.root, self.model, self.optimizer, self.ctx = root, model, optimizer, ctx
        self.every, self.keep, self.stop_at = every, keep, stop_at
        self.last: Path | None = None          # newest complete checkpoint, once known

    def latest(self) -> Path | None:
        found = list_checkpoints(self.root)
        return found[-1] if found else None

    def due(self, step: int) -> bool:
        """Whether step (1-based, just done) ends with a checkpoint: every `every` steps, and
        at stop_at (an interrupted invocation must leave something to resume from)."""
        return bool(self.every and step % self.every == 0) or step == self.stop_at

    def save(self, step: int, trainer_state: dict) -> Path:
        self.last = save_checkpoint(self.root, step, self.model, self.optimizer, trainer_state,
                                    self.ctx, self.keep)
        return self.last

    def load_latest(self) -> dict:
        """Restore the newest checkpoint; returns its trainer state."""
        self.last = self.latest()
        return load_checkpoint(self.last, self.model, self.optimizer, self.ctx)


@torch.no_grad()
def gather_full_state_dict(lm: nn.Module, ctx: DistContext, dtype: torch.dtype
                           ) -> dict[str, torch.Tensor] | None:
    """Full HF-named state dict on rank 0 (None elsewhere), LoRA merged, cast to `dtype`.

    Tensors are gathered one at a time (every rank takes part in each all-gather), so besides
    its shards a rank holds one full fp32 tensor at a time; rank 0 accumulates the whole model
    in `dtype` on the CPU, which writing it out needs."""
    def full(p: torch.Tensor) -> torch.Tensor:
        return p.full_tensor() if isinstance(p, DTensor) else p.detach()

    state: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for mod_name, module in lm.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if is_lora_param(pname) or id(p) in seen:
                continue
            seen.add(id(p))
            tensor = full(p)
            if isinstance(module, LoRALinear) and pname == "weight":
                tensor = merge_lora_weight(tensor, full(module.lora_A), full(module.lora_B), module.scaling)
            if ctx.is_main:
                state[f"{mod_name}.{pname}" if mod_name else pname] = tensor.to("cpu", dtype)
    return state if ctx.is_main else None


def export_hf_model(lm: nn.Module, model_cfg: ModelConfig, source_dir: Path, out_dir: Path,
                    ctx: DistContext, dtype: torch.dtype) -> None:
    """Write the trained model in HF layout to out_dir through save_state_dict (the path
    save_pretrained takes), with the source's tokenizer and generation config; all ranks call
    this. The directory appears whole: it is written as out_dir.tmp and renamed."""
    state = gather_full_state_dict(lm, ctx, dtype)
    if ctx.is_main:
        tmp = out_dir.with_name(out_dir.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        gen = source_dir / "generation_config.json"
        save_state_dict(state, model_cfg, tmp, tokenizer=Tokenizer.from_pretrained(source_dir),
                        generation_config=json.loads(gen.read_text()) if gen.is_file() else None)
        replace_dir(tmp, out_dir)
    ctx.barrier()
