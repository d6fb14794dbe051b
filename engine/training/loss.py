"""The training objective as a module: packed micro-batch -> summed next-token loss.

It is the root FSDP unit. FSDP all-gathers a unit's parameters only around that unit's
forward, so the fused loss must run inside a forward that owns the lm_head weight: the root
owns the embeddings, the final norm and the head (one group, which also keeps tied
embeddings tied), and inside this forward `lm.lm_head.weight` is the full, unsharded tensor.
"""
from __future__ import annotations

import torch
from torch import nn

from engine import ops
from engine.attention import AttentionMetadata
from engine.model import CausalLM


class CausalLMLoss(nn.Module):
    def __init__(self, lm: CausalLM):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata,
                labels: torch.Tensor) -> torch.Tensor:
        """input_ids, positions, labels [N] int64 (labels -100 where no loss) -> fp32 scalar:
        the loss summed over labelled tokens (the caller divides by the global token count)."""
        hidden = self.lm.forward_packed(input_ids, positions, meta)
        return ops.linear_cross_entropy(hidden, self.lm.lm_head.weight, labels, reduction="sum")
