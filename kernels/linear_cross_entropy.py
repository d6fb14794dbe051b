"""Cross-entropy of a linear head (lm_head) without keeping [tokens, vocab] logits alive."""
import torch
import torch.nn.functional as F


def linear_cross_entropy_reference(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                                   ignore_index: int = -100, reduction: str = "sum") -> torch.Tensor:
    """hidden [N, d], weight [V, d], labels [N] -> scalar fp32 loss ("sum" or "mean" over the
    tokens whose label is not ignore_index)."""
    logits = (hidden @ weight.t()).float()
    return F.cross_entropy(logits, labels, ignore_index=ignore_index, reduction=reduction)
