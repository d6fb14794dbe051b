"""The one switch between the op backends: Triton kernels, the fast CPU ops, torch references.

The model (and the sampler) call only the functions below. Backends:
  "triton"  the Triton kernels (on CPU tensors: the Triton interpreter, which needs
            TRITON_INTERPRET=1 set before triton is imported);
  "cpu"     kernels/cpu_attention.py: every sequence of a step in a few batched torch calls
            (attention, KV store, rope, RMS norm), and kernels/cpu_sampling.py (the sampling
            race, hashing only the tokens that can win); the references for the rest. Pure
            torch, so it runs anywhere, but it is built for the CPU;
  "torch"   the torch references: the readable oracle every other backend is tested against.
By default each call picks by where its tensors live: "triton" for CUDA tensors, "cpu" for CPU
tensors, "torch" for anything else (meta). `SHEEP_OPS=torch|cpu|triton` (read once, at
import) or `set_backend` forces one for every call. Each backend's function table is resolved
once per process, so a call costs a dict lookup.
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
from kernels.sampling import gumbel_argmax_reference
from kernels.swiglu import swiglu_reference

BACKENDS = ("torch", "cpu", "triton")

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
    "gumbel_argmax": (gumbel_argmax_reference, "kernels.sampling", "gumbel_argmax"),
}
# the ops the "cpu" backend replaces, and the module of each; the others use the reference
_CPU_OPS = {op: "kernels.cpu_attention" for op in (
    "varlen_attention", "paged_decode_attention", "store_kvcache", "rope", "rms_norm", "add_rms_norm")}
_CPU_OPS["gumbel_argmax"] = "kernels.cpu_sampling"


def _env_backend() -> str | None:
    forced = os.environ.get("SHEEP_OPS") or None
    if forced is not None and forced not in BACKENDS:
        raise ValueError(f"SHEEP_OPS={forced!r}: expected one of {BACKENDS}")
    return forced


_forced: str | None = _env_backend()
_tables: dict[str, dict] = {}


def _table(name: str) -> dict:
    """op name -> function of one backend, built on first use."""
    table = _tables.get(name)
    if table is None:
        table = {op: ref for op, (ref, _, _) in _OPS.items()}
        if name == "cpu":
            table.update({op: getattr(importlib.import_module(module), op)
                          for op, module in _CPU_OPS.items()})
        elif name == "triton":
            table = {op: getattr(importlib.import_module(module), attr)
                     for op, (_, module, attr) in _OPS.items()}
        _tables[name] = table
    return table


def forced_backend() -> str | None:
    """The backend set_backend or SHEEP_OPS forces, or None (pick by tensor device)."""
    return _forced


def backend(x: torch.Tensor | None = None) -> str:
    """The backend a call on tensor x uses (without x: as if x were on the default GPU)."""
    if _forced is not None:
        return _forced
    if x is None:
        return "triton" if torch.cuda.is_available() else "cpu"
    if x.is_cuda:
        return "triton"
    return "cpu" if x.is_cpu else "torch"


def set_backend(name: str | None) -> None:
    """Force one backend for this process; None goes back to the default rule (and SHEEP_OPS,
    read again)."""
    global _forced
    if name is not None and name not in BACKENDS:
        raise ValueError(f"ops backend {name!r}: expected one of {BACKENDS}")
    _forced = name if name is not None else _env_backend()


def _impl(name: str, x: torch.Tensor):
    return _table(backend(x))[name]


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


def gumbel_argmax(logits, inv_temp, thresholds, keys):
    """The seeded sampling race (kernels/sampling.py): logits [B, V] -> token ids [B] int64."""
    return _impl("gumbel_argmax", logits)(logits, inv_temp, thresholds, keys)
