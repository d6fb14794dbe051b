"""AdamW with decoupled weight decay on matrices only, and a warmup + cosine learning rate.

The learning rate is a pure function of the step number, so resuming needs only the step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into a decayed group (matrices: linear weights, embeddings)
    and an undecayed one (norm weights, biases: every parameter with fewer than 2 dims)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float],
                    eps: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; the fused CUDA kernel on GPU."""
    groups = param_groups(model, weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    fused = device.type == "cuda"
    # foreach on CPU too: per-tensor Adam pays the DTensor dispatch cost once per op and tensor
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused or None,
                             foreach=None if fused else True)


@dataclass
class WarmupCosine:
    """lr(step): linear warmup over `warmup_steps` (step 0 gets peak/warmup_steps), then a
    cosine from `peak` down to `floor` at the last step (`total_steps - 1`)."""
    peak: float
    floor: float
    warmup_steps: int
    total_steps: int

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.peak * (step + 1) / self.warmup_steps
        decay_steps = self.total_steps - 1 - self.warmup_steps
        if decay_steps <= 0:
            return self.peak
        progress = min(1.0, (step - self.warmup_steps) / decay_steps)
        return self.floor + (self.peak - self.floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def clip_grad_norm(model: nn.Module, max_norm: float) -> torch.Tensor:
    """Clip the sharded gradients by their global L2 norm and return that norm: an fp32 0-d
    tensor on the device, the same on every rank, not read back (no host sync).
    max_norm = 0 only measures."""
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"),
                                          foreach=True)
    if hasattr(norm, "full_tensor"):       # DTensor: the reduction over shards happens here
        norm = norm.full_tensor()
    return norm.detach()
