"""LoRA: low-rank adapters on the model's projections, base weights frozen.

    y = x W^T + b + (alpha / r) * dropout(x) A^T B^T      A [r, in], B [out, r]

B starts at zero, so the adapted model computes exactly what the base model does until the
first update. LoRALinear subclasses nn.Linear and keeps the base tensors under their own
names (`q_proj.weight`), so checkpoints load by name and FSDP shards adapters like any other
parameter; apply LoRA before fully_shard. Export merges: W' = W + (alpha / r) B A.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from engine.training.config import LORA_TARGETS


class LoRALinear(nn.Linear):
    def __init__(self, in_features: int, out_features: int, bias: bool, rank: int, alpha: float,
                 dropout: float = 0.0, device=None, dtype=None):
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.rank, self.alpha = rank, alpha
        self.scaling = alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, in_features, device=device, dtype=dtype))
        self.lora_B = nn.Parameter(torch.empty(out_features, rank, device=device, dtype=dtype))
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if self.lora_A.device.type != "meta":
            self.reset_lora_parameters()

    @torch.no_grad()
    def reset_lora_parameters(self, generator: torch.Generator | None = None) -> None:
        self.lora_A.copy_(lora_initial_value("lora_A", self.lora_A.shape, generator))
        self.lora_B.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., in] -> [..., out]."""
        base = F.linear(x, self.weight, self.bias)
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)
        return base + update * self.scaling

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha}"


def lora_initial_value(name: str, shape: torch.Size | tuple, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
    """The starting value of an adapter tensor (fp32, CPU): A ~ U(-1/sqrt(in), 1/sqrt(in))
    (kaiming-uniform with a = sqrt(5), as nn.Linear and PEFT use), B = 0."""
    if name.endswith("lora_B"):
        return torch.zeros(shape)
    bound = 1.0 / math.sqrt(shape[1])
    return torch.empty(shape).uniform_(-bound, bound, generator=generator)


def is_lora_param(name: str) -> bool:
    return name.endswith(("lora_A", "lora_B"))


def apply_lora(model: nn.Module, targets: list[str] = list(LORA_TARGETS), rank: int = 8,
               alpha: float = 16.0, dropout: float = 0.0, seed: int = 0) -> list[str]:
    """Swap every nn.Linear named in `targets` (e.g. "q_proj") for a LoRALinear sharing its
    weight and bias, and freeze all non-adapter parameters. Works on a meta model (adapters
    stay meta until loaded) and on a materialized one (adapters initialised from `seed`).
    Returns the names of the adapted modules."""
    unknown = sorted(set(targets) - set(LORA_TARGETS))
    if unknown:
        raise ValueError(f"unknown LoRA targets {unknown}; choose from {list(LORA_TARGETS)}")
    gen = torch.Generator().manual_seed(seed)
    swapped = []
    for name, module in list(model.named_modules()):
        if name.rsplit(".", 1)[-1] not in targets or not isinstance(module, nn.Linear) \
                or isinstance(module, LoRALinear):
            continue
        device = module.weight.device
        with torch.device("meta"):
            lora = LoRALinear(module.in_features, module.out_features, module.bias is not None,
                              rank, alpha, dropout, dtype=module.weight.dtype)
        lora.weight, lora.bias = module.weight, module.bias
        lora.lora_A = nn.Parameter(torch.empty_like(lora.lora_A, device=device))
        lora.lora_B = nn.Parameter(torch.empty_like(lora.lora_B, device=device))
        if device.type != "meta":
            lora.reset_lora_parameters(gen)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, lora)
        swapped.append(name)
    if not swapped:
        raise ValueError(f"no module matches the LoRA targets {targets}")
    for pname, p in model.named_parameters():
        p.requires_grad_(is_lora_param(pname))
    return swapped


def merge_lora_weight(weight: torch.Tensor, lora_A: torch.Tensor, lora_B: torch.Tensor,
                      scaling: float) -> torch.Tensor:
    """W + scaling * B @ A, computed in fp32, returned in weight.dtype. Shapes [out, in],
    [r, in], [out, r]."""
    merged = weight.float() + scaling * (lora_B.float() @ lora_A.float())
    return merged.to(weight.dtype)


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of an unsharded adapted model with every adapter folded into its base
    weight, under the base model's names (what save_state_dict and transformers expect)."""
    state = {}
    for name, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            full = f"{name}.{pname}" if name else pname
            if is_lora_param(pname):
                continue
            if isinstance(module, LoRALinear) and pname == "weight":
                p = merge_lora_weight(p, module.lora_A, module.lora_B, module.scaling)
            state[full] = p.detach()
    return state
