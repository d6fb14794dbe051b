"""RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight, computed in fp32, returned in x.dtype."""
import torch


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x [..., D], weight [D] -> [..., D] in x.dtype (HF Qwen2/Llama semantics)."""
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * y.to(x.dtype)


def add_rms_norm_reference(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                           eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused residual add: s = x + residual; returns (rms_norm(s), s)."""
    s = x + residual
    return rms_norm_reference(s, weight, eps), s
