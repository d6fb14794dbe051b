"""The one switch between Triton kernels and torch reference ops.

The model calls only the functions below. By default each call picks by where its tensors
live: Triton for CUDA tensors, the torch reference for CPU tensors (so a CPU model works on a
GPU machine too). `SHEEP_OPS=torch|triton` (or `set_backend`) forces one for every call;
`triton` on CPU tensors means the Triton interpreter, which needs `TRITON_INTERPRET=1` set
before triton is imported.
"""
from __future__ import annotations

import importlib
import os

import torch

from kernels.attention import varlen_attention_reference
from kernels.kv_store import store_kvcache_reference
from kernels.linear_cross_entropy import linear_cross_entropy_reference
from kernels.paged_attention import paged_decode_attention_reference
from kernels.rms_norm import add_rms_norm_reference, rms_norm_reference
from kernels.rope import rope_reference
from kernels.swiglu import swiglu_reference

BACKENDS = ("torch", "triton")

# op name -> (torch reference, module and attribute of the Triton version)
_OPS = {
    "rms_norm": (rms_norm_reference, "kernels.rms_norm", "rms_norm"),
    "add_rms_norm": (add_rms_norm_reference, "kernels.rms_norm", "add_rms_norm"),
    "rope": (rope_reference, "kernels.rope", "rope"),
    "swiglu": (swiglu_reference, "kernels.swiglu", "swiglu"),
    "varlen_attention": (varlen_attention_reference, "kernels.attention", "varlen_attention"),
    "paged_decode_attention": (paged_decode_attention_reference, "kernels.paged_attention",
                               "paged_decode_attention"),
    "store_kvcache": (store_kvcache_reference, "kernels.kv_store", "store_kvcache"),
    "linear_cross_entropy": (linear_cross_entropy_reference, "kernels.linear_cross_entropy",
                             "linear_cross_entropy"),
}

_backend: str | None = None


def forced_backend() -> str | None:
    """The backend set_backend or SHEEP_OPS forces, or None (pick by tensor device)."""
    if _backend is not None:
        return _backend
    forced = os.environ.get("SHEEP_OPS")
    if forced and forced not in BACKENDS:
        raise ValueError(f"SHEEP_OPS={forced!r}: expected one of {BACKENDS}")
    return forced or None


def backend(x: torch.Tensor | None = None) -> str:
    """The backend a call on tensor x uses (without x: as if x were on the default GPU)."""
    forced = forced_backend()
    if forced:
        return forced
    on_cuda = x.is_cuda if x is not None else torch.cuda.is_available()
    return "triton" if on_cuda else "torch"


def set_backend(name: str | None) -> None:
    """Force 'torch' or 'triton' for this process; None goes back to the default rule."""
    global _backend
    if name is not None and name not in BACKENDS:
        raise ValueError(f"ops backend {name!r}: expected one of {BACKENDS}")
    _backend = name


def _impl(name: str, x: torch.Tensor):
    reference, module, attr = _OPS[name]
    if backend(x) == "torch":
        return reference
    return getattr(importlib.import_module(module), attr)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return _impl("rms_norm", x)(x, weight, eps)


def add_rms_norm(x, residual, weight, eps):
    """Returns (rms_norm(x + residual), x + residual)."""
    return _impl("add_rms_norm", x)(x, residual, weight, eps)


def rope(q, k, positions, cos_sin):
    return _impl("rope", q)(q, k, positions, cos_sin)


def swiglu(gate, up):
    return _impl("swiglu", gate)(gate, up)


def varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, scale, block_tables=None):
    return _impl("varlen_attention", q)(q, k, v, cu_seqlens_q, cu_seqlens_k, scale, block_tables)


def paged_decode_attention(q, k_cache, v_cache, block_tables, context_lens, scale):
    return _impl("paged_decode_attention", q)(q, k_cache, v_cache, block_tables, context_lens, scale)


def store_kvcache(k, v, k_cache, v_cache, slot_mapping):
    return _impl("store_kvcache", k)(k, v, k_cache, v_cache, slot_mapping)


def linear_cross_entropy(hidden, weight, labels, ignore_index=-100, reduction="sum"):
    return _impl("linear_cross_entropy", hidden)(hidden, weight, labels, ignore_index, reduction)
