"""Kernel benchmarks at the engine's shapes: each Triton kernel beside its torch reference, SDPA
(attention) and the device-to-device copy bandwidth (memory-bound kernels).

    python3 benchmarks/kernels.py --out DIR [--budget-s 75] [--only attention,decode,...]
    python3 benchmarks/kernels.py --smoke --out DIR      # CPU: interpreter, tiny shapes, seconds

Shapes are the engine's: Qwen2.5-0.5B / 1.5B / 7B head counts with GQA (head dims 64 / 128 /
128), hidden and intermediate sizes, and KV pages of 16 tokens (the engine's block size). Every
case records milliseconds (median of triton.testing.do_bench), GB/s and the fraction of the copy
bandwidth measured first (memory-bound kernels, decode) or TFLOP/s (attention), the peak memory
of one call, and the largest difference from the reference on the benchmark's own data.
Attention's peer is the fastest SDPA backend (flash, cuDNN, memory-efficient) on the same
tokens laid out [B, H, L, D]. Cases run most valuable first; none starts after --budget-s, and
torch.compile'd references (a build costs seconds) are at most --compile-baselines, last.
DIR/kernels.json is rewritten after every case, so a run killed at its limit keeps what it
measured. --smoke runs the same case functions on the CPU through the Triton interpreter at
tiny shapes (wall-clock timings, no peak memory): a crash there is a crash on the GPU too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
# this file is named like the `kernels` package: keep its own folder off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")   # before triton is imported

import torch.nn.functional as F  # noqa: E402
import triton  # noqa: E402
import triton.testing  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from benchmarks.common import environment, save_json  # noqa: E402
from kernels.attention import varlen_attention, varlen_attention_reference  # noqa: E402
from kernels.kv_store import store_kvcache, store_kvcache_reference  # noqa: E402
from kernels.linear_cross_entropy import (linear_cross_entropy,  # noqa: E402
                                          linear_cross_entropy_reference)
from kernels.paged_attention import (paged_decode_attention,  # noqa: E402
                                     paged_decode_attention_reference)
from kernels.rms_norm import (add_rms_norm, add_rms_norm_reference, rms_norm,  # noqa: E402
                              rms_norm_reference)
from kernels.rope import rope, rope_reference  # noqa: E402
from kernels.swiglu import swiglu, swiglu_reference  # noqa: E402


@dataclass(frozen=True)
class Model:
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int


MODELS = {
    "qwen2.5-0.5b": Model(896, 14, 2, 64, 4864, 151936),
    "qwen2.5-1.5b": Model(1536, 12, 2, 128, 8960, 151936),
    "qwen2.5-7b": Model(3584, 28, 4, 128, 18944, 152064),
}
SMOKE_MODELS = {"tiny-d16": Model(48, 4, 2, 16, 40, 70)}
PAGE = 16                     # the engine's KV block size


@dataclass(frozen=True)
class Sizes:
    """Token counts and sequence layouts of one run (GPU or smoke)."""
    tokens: int                           # rows for norms, rope, swiglu, kv store, cross-entropy
    attention: tuple[tuple[int, int], ...]   # (sequences, length) packed for varlen attention
    decode: tuple[tuple[int, int], ...]   # (batch, context)
    prefix: tuple[int, int, int]          # (batch, cached, new) for prefill over a paged prefix
    copy_bytes: int


GPU_SIZES = Sizes(tokens=8192, attention=((4, 2048), (1, 8192)), decode=((1, 4096), (64, 2048)),
                  prefix=(8, 2048, 512), copy_bytes=1 << 30)
SMOKE_SIZES = Sizes(tokens=5, attention=((2, 9),), decode=((2, 37),), prefix=(2, 19, 7),
                    copy_bytes=1 << 20)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


class Bench:
    """Times the providers of each case, keeps the records, rewrites DIR/kernels.json after each,
    and starts nothing once the budget is spent."""

    def __init__(self, device: str, dtype: torch.dtype, budget_s: float, out: Path | None,
                 meta: dict):
        self.device, self.dtype = device, dtype
        self.bytes = torch.finfo(dtype).bits // 8
        self.cuda = device == "cuda"
        self.deadline = time.monotonic() + budget_s
        self.out, self.meta = out, meta
        self.records: list[dict] = []
        self.copy_gbps: float | None = None

    def over_budget(self) -> bool:
        return time.monotonic() > self.deadline

    def randn(self, *shape, grad: bool = False, scale: float = 1.0) -> torch.Tensor:
        t = scale * torch.randn(*shape, device=self.device, dtype=self.dtype)
        return t.requires_grad_() if grad else t

    def _time_ms(self, fn: Callable, grads_of) -> float:
        if self.cuda:
            return triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median",
                                           grad_to_none=list(grads_of) or None)
        start = time.perf_counter()          # smoke: one call (the interpreter is slow)
        fn()
        return 1e3 * (time.perf_counter() - start)

    def run(self, kernel: str, shape: dict, pass_: str, provider: str, fn: Callable, *,
            bytes_: float | None = None, flops: float | None = None, grads_of=(),
            **extra) -> dict:
        rec = {"kernel": kernel, **shape, "pass": pass_, "provider": provider, **extra}
        if self.over_budget():
            rec["skipped"] = "time budget"
            return self._keep(rec)
        try:
            if self.cuda:
                fn()                               # compile / autotune / warm the allocator
                for t in grads_of:
                    t.grad = None
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                base = torch.cuda.memory_allocated()
                fn()
                torch.cuda.synchronize()
                rec["peak_mem_mib"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
            ms = self._time_ms(fn, grads_of)
            rec["ms"] = round(ms, 4)
            if bytes_:
                rec["gbps"] = round(bytes_ / ms / 1e6, 2)
                if self.copy_gbps:
                    rec["of_copy_bw"] = round(rec["gbps"] / self.copy_gbps, 3)
            if flops:
                rec["tflops"] = round(flops / ms / 1e9, 3)
        except Exception as e:     # OOM, a backend that refuses the shape: record and go on
            rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:240] if str(e) else ''}"
        finally:
            for t in grads_of:
                t.grad = None
            if self.cuda:
                torch.cuda.empty_cache()
        speed = (f"{rec['gbps']:9.1f} GB/s" if "gbps" in rec else
                 f"{rec['tflops']:9.1f} TFLOP/s" if "tflops" in rec else "")
        status = rec.get("error") or f"{rec['ms']:9.3f} ms {speed}"
        print(f"  {kernel:20s} {json.dumps(shape)[:70]:70s} {pass_:7s} {provider:14s} {status}",
              flush=True)
        return self._keep(rec)

    def case(self, bench_fn: Callable, *args, **kwargs) -> None:
        """Runs one case function (its setup and reference check included) unless the budget
        is spent; an exception in the setup is recorded and the run goes on."""
        what = {"case": bench_fn.__name__,
                "args": [a for a in args if isinstance(a, (int, str))]}
        if self.over_budget():
            self._keep({**what, "skipped": "time budget"})
            return
        try:
            bench_fn(self, *args, **kwargs)
        except Exception as e:     # e.g. the reference ran out of memory at this shape
            self._keep({**what, "error": f"{type(e).__name__}: {str(e)[:240]}"})
            print(f"  {bench_fn.__name__} {what['args']}: {self.records[-1]['error']}",
                  flush=True)

    def _keep(self, rec: dict) -> dict:
        self.records.append(rec)
        self.write()
        return rec

    def write(self) -> None:
        if self.out is not None:
            save_json(self.out / "kernels.json", {**self.meta, "copy_gbps": self.copy_gbps,
                                                  "records": self.records})


def fwd_bwd(fn: Callable, grad_of_output) -> Callable:
    """A callable that runs fn() and back-propagates the given output gradient(s)."""
    def step():
        out = fn()
        outs = out if isinstance(out, tuple) else (out,)
        grads = grad_of_output if isinstance(grad_of_output, tuple) else (grad_of_output,)
        torch.autograd.backward(outs, grads)
    return step


# ----------------------------------------------------------------------------- memory-bound ops

def bench_copy(bench: Bench, n: int) -> None:
    src = torch.empty(n, dtype=torch.uint8, device=bench.device).random_()
    dst = torch.empty_like(src)
    rec = bench.run("d2d_copy", {"bytes": n}, "fwd", "torch", lambda: dst.copy_(src), bytes_=2 * n)
    bench.copy_gbps = rec.get("gbps")


def bench_norms(bench: Bench, model: str, cfg: Model, n: int, backward: bool) -> None:
    d, b = cfg.hidden, bench.bytes
    shape = {"model": model, "tokens": n, "hidden": d}
    x, r = bench.randn(n, d, grad=True), bench.randn(n, d, grad=True)
    w = (1 + bench.randn(d, scale=0.1)).requires_grad_()
    gy, gs = bench.randn(n, d), bench.randn(n, d)
    cases = (("rms_norm", rms_norm, rms_norm_reference, (x, w, 1e-6), gy, 2, 5),
             ("add_rms_norm", add_rms_norm, add_rms_norm_reference, (x, r, w, 1e-6), (gy, gs),
              4, 9))
    for kernel, ours, reference, args, grads, fwd_rows, bwd_rows in cases:
        first = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731
        with torch.no_grad():
            err = max_err(first(ours(*args)), first(reference(*args)))
        for provider, fn in (("triton", ours), ("torch", reference)):
            if not backward:
                with torch.no_grad():
                    bench.run(kernel, shape, "fwd", provider, lambda fn=fn: fn(*args),
                              bytes_=fwd_rows * n * d * b,
                              **({"max_err": err} if provider == "triton" else {}))
            else:
                bench.run(kernel, shape, "fwd+bwd", provider,
                          fwd_bwd(lambda fn=fn: fn(*args), grads), bytes_=bwd_rows * n * d * b,
                          grads_of=args[:-1])


def _cos_sin(positions: int, d: int, device: str) -> torch.Tensor:
    inv_freq = 1e6 ** -(torch.arange(0, d, 2, dtype=torch.float32) / d)
    angles = torch.arange(positions, dtype=torch.float32)[:, None] * inv_freq
    return torch.cat((angles.cos(), angles.sin()), -1).to(device)


def bench_rope(bench: Bench, model: str, cfg: Model, n: int, backward: bool) -> None:
    hq, hk, d = cfg.heads, cfg.kv_heads, cfg.head_dim
    shape = {"model": model, "tokens": n, "heads": hq, "kv_heads": hk, "head_dim": d}
    qkv = bench.randn(n, (hq + 2 * hk) * d)       # q, k: views of the fused projection
    q = qkv[:, :hq * d].view(n, hq, d).detach().requires_grad_()
    k = qkv[:, hq * d:(hq + hk) * d].view(n, hk, d).detach().requires_grad_()
    positions = torch.arange(n, device=bench.device) % 4096
    cos_sin = _cos_sin(4096, d, bench.device)
    gq, gk = bench.randn(n, hq, d), bench.randn(n, hk, d)
    with torch.no_grad():
        err = max_err(rope(q, k, positions, cos_sin)[0], rope_reference(q, k, positions,
                                                                         cos_sin)[0])
    moved = 2 * n * (hq + hk) * d * bench.bytes + n * d * 4
    for provider, fn in (("triton", rope), ("torch", rope_reference)):
        if not backward:
            with torch.no_grad():
                bench.run("rope", shape, "fwd", provider,
                          lambda fn=fn: fn(q, k, positions, cos_sin), bytes_=moved,
                          **({"max_err": err} if provider == "triton" else {}))
        else:
            bench.run("rope", shape, "fwd+bwd", provider,
                      fwd_bwd(lambda fn=fn: fn(q, k, positions, cos_sin), (gq, gk)),
                      bytes_=2 * moved, grads_of=(q, k))


def bench_swiglu(bench: Bench, model: str, cfg: Model, n: int, backward: bool,
                 compiled: Callable | None = None) -> None:
    inter = cfg.intermediate
    shape = {"model": model, "tokens": n, "intermediate": inter}
    gate_up = bench.randn(n, 2 * inter)           # gate, up: halves of the fused projection
    gate = gate_up[:, :inter].detach().requires_grad_()
    up = gate_up[:, inter:].detach().requires_grad_()
    grad = bench.randn(n, inter)
    with torch.no_grad():
        err = max_err(swiglu(gate, up), swiglu_reference(gate, up))
    providers = {"triton": swiglu, "torch": swiglu_reference}
    if compiled is not None:
        providers = {"torch.compile": compiled}
    for provider, fn in providers.items():
        if not backward:
            with torch.no_grad():
                bench.run("swiglu", shape, "fwd", provider, lambda fn=fn: fn(gate, up),
                          bytes_=3 * n * inter * bench.bytes,
                          **({"max_err": err} if provider == "triton" else {}))
        else:
            bench.run("swiglu", shape, "fwd+bwd", provider, fwd_bwd(lambda fn=fn: fn(gate, up),
                                                                    grad),
                      bytes_=8 * n * inter * bench.bytes, grads_of=(gate, up))


def bench_kv_store(bench: Bench, model: str, cfg: Model, n: int) -> None:
    hk, d = cfg.kv_heads, cfg.head_dim
    shape = {"model": model, "tokens": n, "kv_heads": hk, "head_dim": d, "page": PAGE}
    blocks = triton.cdiv(n, PAGE) * 2
    caches = [torch.zeros(blocks, PAGE, hk, d, device=bench.device, dtype=bench.dtype)
              for _ in "kv"]
    k, v = bench.randn(n, hk, d), bench.randn(n, hk, d)
    slots = torch.randperm(blocks * PAGE, device=bench.device)[:n]
    ref = [c.clone() for c in caches]
    store_kvcache(k, v, *caches, slots)
    store_kvcache_reference(k, v, *ref, slots)
    err = max(max_err(caches[0], ref[0]), max_err(caches[1], ref[1]))
    for provider, fn in (("triton", store_kvcache), ("torch", store_kvcache_reference)):
        bench.run("store_kvcache", shape, "fwd", provider,
                  lambda fn=fn: fn(k, v, *caches, slots), bytes_=4 * n * hk * d * bench.bytes,
                  **({"max_err": err} if provider == "triton" else {}))


# ----------------------------------------------------------------------------- attention

def _attention_flops(lengths: list[int], heads: int, head_dim: int) -> float:
    """Causal: half of the 4 * L^2 * D multiply-adds of QK^T and PV, per head."""
    return sum(2.0 * L * (L + 1) * head_dim * heads for L in lengths)


def sdpa_backends(device: str) -> dict[str, SDPBackend]:
    if device == "cuda":
        return {"sdpa_flash": SDPBackend.FLASH_ATTENTION, "sdpa_cudnn": SDPBackend.CUDNN_ATTENTION,
                "sdpa_efficient": SDPBackend.EFFICIENT_ATTENTION}
    return {"sdpa_flash": SDPBackend.FLASH_ATTENTION}     # the one CPU implementation


def bench_attention(bench: Bench, model: str, cfg: Model, seqs: int, length: int,
                    backward: bool) -> None:
    """Packed causal attention over `seqs` sequences of `length` tokens; SDPA runs on the same
    tokens as [B, H, L, D] with enable_gqa (K/V never repeated on either side)."""
    hq, hk, d = cfg.heads, cfg.kv_heads, cfg.head_dim
    lengths = [length] * seqs
    n = seqs * length
    shape = {"model": model, "seqlens": f"{seqs}x{length}", "heads": hq, "kv_heads": hk,
             "head_dim": d}
    scale = d ** -0.5
    cu = torch.arange(seqs + 1, device=bench.device, dtype=torch.int32) * length
    q, k, v = bench.randn(n, hq, d, grad=True), bench.randn(n, hk, d, grad=True), \
        bench.randn(n, hk, d, grad=True)
    grad = bench.randn(n, hq, d)
    flops = _attention_flops(lengths, hq, d)

    def dense(t):
        return t.detach().view(seqs, length, t.shape[1], d).transpose(1, 2).contiguous() \
            .requires_grad_()
    qd, kd, vd = dense(q), dense(k), dense(v)
    gd = grad.view(seqs, length, hq, d).transpose(1, 2)

    def sdpa(backend):
        def call():
            with sdpa_kernel(backend):
                return F.scaled_dot_product_attention(qd, kd, vd, is_causal=True, scale=scale,
                                                      enable_gqa=True)
        return call

    def triton_attention():
        return varlen_attention(q, k, v, cu, cu, scale)

    with torch.no_grad():
        check = {"max_err": max_err(triton_attention(),
                                    varlen_attention_reference(q, k, v, cu, cu, scale))}
    providers = {"triton": triton_attention,
                 **{name: sdpa(b) for name, b in sdpa_backends(bench.device).items()}}
    for provider, fn in providers.items():
        is_sdpa = provider != "triton"
        if not backward:
            with torch.no_grad():
                bench.run("varlen_attention", shape, "fwd", provider, fn, flops=flops,
                          **({} if is_sdpa else check))
        else:
            bench.run("varlen_attention", shape, "fwd+bwd", provider,
                      fwd_bwd(fn, gd if is_sdpa else grad), flops=3.5 * flops,
                      grads_of=(qd, kd, vd) if is_sdpa else (q, k, v))


def _paged_cache(bench: Bench, contexts: list[int], hk: int, d: int):
    """K/V caches of PAGE-token blocks handed out in random order, and their block tables."""
    blocks_per_seq = [triton.cdiv(c, PAGE) for c in contexts]
    num_blocks = sum(blocks_per_seq) + 1
    caches = [bench.randn(num_blocks, PAGE, hk, d) for _ in "kv"]
    tables = torch.zeros(len(contexts), max(blocks_per_seq), dtype=torch.int32,
                         device=bench.device)
    pages = torch.randperm(num_blocks - 1, device=bench.device).to(torch.int32) + 1
    used = 0
    for i, nb in enumerate(blocks_per_seq):
        tables[i, :nb] = pages[used:used + nb]
        used += nb
    return caches[0], caches[1], tables


def bench_decode(bench: Bench, model: str, cfg: Model, batch: int, context: int) -> None:
    hq, hk, d = cfg.heads, cfg.kv_heads, cfg.head_dim
    shape = {"model": model, "batch": batch, "context": context, "head_dim": d, "page": PAGE}
    k_cache, v_cache, tables = _paged_cache(bench, [context] * batch, hk, d)
    lens = torch.full((batch,), context, dtype=torch.int32, device=bench.device)
    q = bench.randn(batch, hq, d)
    scale = d ** -0.5
    err = max_err(paged_decode_attention(q, k_cache, v_cache, tables, lens, scale),
                  paged_decode_attention_reference(q, k_cache, v_cache, tables, lens, scale))
    # SDPA over the same keys gathered densely beforehand [B, Hk, context, D] (not paged)
    kd, vd = (c[tables.long()].flatten(1, 2)[:, :context].transpose(1, 2).contiguous()
              for c in (k_cache, v_cache))
    qd = q[:, :, None]

    def sdpa():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(qd, kd, vd, scale=scale, enable_gqa=True)
    providers = {"triton": lambda: paged_decode_attention(q, k_cache, v_cache, tables, lens,
                                                          scale),
                 "sdpa_flash_dense": sdpa}
    with torch.no_grad():
        for provider, fn in providers.items():
            bench.run("paged_decode", shape, "fwd", provider, fn,
                      bytes_=2 * batch * context * hk * d * bench.bytes,
                      **({"max_err": err} if provider == "triton" else {}))


def bench_prefix_prefill(bench: Bench, model: str, cfg: Model, batch: int, cached: int,
                         new: int) -> None:
    """Prefill of `new` tokens per sequence over a cached prefix read through block tables."""
    hq, hk, d = cfg.heads, cfg.kv_heads, cfg.head_dim
    shape = {"model": model, "batch": batch, "cached": cached, "new": new, "head_dim": d,
             "page": PAGE}
    total = cached + new
    k_cache, v_cache, tables = _paged_cache(bench, [total] * batch, hk, d)
    q = bench.randn(batch * new, hq, d)
    cu_q = torch.arange(batch + 1, device=bench.device, dtype=torch.int32) * new
    cu_k = torch.arange(batch + 1, device=bench.device, dtype=torch.int32) * total
    scale = d ** -0.5
    args = (q, k_cache, v_cache, cu_q, cu_k, scale, tables)
    err = max_err(varlen_attention(*args), varlen_attention_reference(*args))
    flops = 4.0 * batch * hq * d * new * (cached + (new + 1) / 2)
    with torch.no_grad():
        bench.run("prefix_prefill", shape, "fwd", "triton", lambda: varlen_attention(*args),
                  flops=flops, max_err=err)


# ----------------------------------------------------------------------------- cross-entropy

def bench_linear_cross_entropy(bench: Bench, model: str, cfg: Model, n: int) -> None:
    d, vocab = cfg.hidden, cfg.vocab
    shape = {"model": model, "tokens": n, "hidden": d, "vocab": vocab}
    hidden = bench.randn(n, d, grad=True)
    weight = bench.randn(vocab, d, scale=0.02).requires_grad_()
    labels = torch.randint(0, vocab, (n,), device=bench.device)
    labels[: n // 4] = -100
    loss = linear_cross_entropy(hidden, weight, labels, -100, "mean")
    ref = linear_cross_entropy_reference(hidden, weight, labels, -100, "mean")
    err = abs(loss.item() - ref.item())
    del loss, ref
    for provider, fn in (("triton", linear_cross_entropy),
                         ("torch", linear_cross_entropy_reference)):
        bench.run("linear_cross_entropy", shape, "fwd+bwd", provider,
                  lambda fn=fn: fn(hidden, weight, labels, -100, "mean").backward(),
                  flops=6.0 * n * d * vocab, grads_of=(hidden, weight),
                  **({"loss_err": err} if provider == "triton" else {}))


# ----------------------------------------------------------------------------- driver

CASE_GROUPS = ("attention", "memory_bound", "decode", "prefix_prefill", "backward",
               "linear_cross_entropy", "compiled")


def run_cases(bench: Bench, models: dict[str, Model], sizes: Sizes, only: set[str] | None,
              compile_baselines: int, compile_fn: Callable = torch.compile) -> None:
    """Most valuable first: copy bandwidth, attention forward at d128 against SDPA, memory-bound
    forwards against copy, decode at page 16, prefix prefill, backward passes, the chunked
    cross-entropy, and last up to `compile_baselines` torch.compile'd references."""
    wanted = (lambda group: only is None or group in only)
    names = list(models)
    by_dim = sorted(names, key=lambda m: -models[m].head_dim)    # d128 (the goal's) first
    mid = names[len(names) // 2]                                  # one model for single cases
    bench.case(bench_copy, sizes.copy_bytes)
    n = sizes.tokens
    if wanted("attention"):
        for m in by_dim:
            for seqs, length in sizes.attention:
                bench.case(bench_attention, m, models[m], seqs, length, backward=False)
    if wanted("memory_bound"):
        for m in (mid, *[x for x in names if x != mid]):
            for fn in (bench_norms, bench_swiglu, bench_rope):
                bench.case(fn, m, models[m], n, backward=False)
            bench.case(bench_kv_store, m, models[m], n)
    if wanted("decode"):
        for m in names:
            for batch, context in sizes.decode:
                bench.case(bench_decode, m, models[m], batch, context)
    if wanted("prefix_prefill"):
        bench.case(bench_prefix_prefill, mid, models[mid], *sizes.prefix)
    if wanted("backward"):
        for seqs, length in sizes.attention[:1]:
            bench.case(bench_attention, by_dim[0], models[by_dim[0]], seqs, length,
                       backward=True)
        for fn in (bench_norms, bench_swiglu, bench_rope):
            bench.case(fn, mid, models[mid], n, backward=True)
    if wanted("linear_cross_entropy"):
        bench.case(bench_linear_cross_entropy, names[0], models[names[0]], n)
    if wanted("compiled") and compile_baselines > 0:
        # one torch.compile build per baseline: swiglu's fused reference is the strongest peer
        bench.case(bench_swiglu, mid, models[mid], n, backward=False,
                   compiled=compile_fn(swiglu_reference))
        if compile_baselines > 1:
            bench.case(bench_compiled_rms_norm, mid, models[mid], n,
                       compile_fn(rms_norm_reference))


def bench_compiled_rms_norm(bench: Bench, model: str, cfg: Model, n: int, compiled) -> None:
    d = cfg.hidden
    x, w = bench.randn(n, d), 1 + bench.randn(d, scale=0.1)
    with torch.no_grad():
        bench.run("rms_norm", {"model": model, "tokens": n, "hidden": d}, "fwd", "torch.compile",
                  lambda: compiled(x, w, 1e-6), bytes_=2 * n * d * bench.bytes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for kernels.json (rewritten after every case)")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU: Triton interpreter, tiny shapes, fp32 (the test suite runs it)")
    parser.add_argument("--only", default=None, help="comma list of " + ", ".join(CASE_GROUPS))
    parser.add_argument("--budget-s", type=float, default=None,
                        help="start no case after this many seconds (GPU default 75; smoke: "
                             "no limit, a skipped case could hide a crash)")
    parser.add_argument("--compile-baselines", type=int, default=2,
                        help="torch.compile'd references to build (each costs seconds)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not args.smoke and not cuda:
        parser.error("no CUDA device: run with --smoke (interpreter, tiny shapes)")
    device = "cuda" if cuda and not args.smoke else "cpu"
    if device == "cpu" and os.environ.get("TRITON_INTERPRET") != "1":
        parser.error("--smoke on a CUDA machine needs TRITON_INTERPRET=1 set before start")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    if args.budget_s is None:
        args.budget_s = float("inf") if args.smoke else 75.0
    models, sizes = (SMOKE_MODELS, SMOKE_SIZES) if args.smoke else (MODELS, GPU_SIZES)
    meta = {"benchmark": "kernels", "environment": environment(), "mode":
            "smoke" if args.smoke else "gpu", "dtype": str(dtype).replace("torch.", ""),
            "page": PAGE, "budget_s": args.budget_s}
    torch.manual_seed(0)
    bench = Bench(device, dtype, args.budget_s, args.out, meta)
    print(f"kernels on {meta['environment']['device']} ({meta['mode']}, {meta['dtype']}), "
          f"budget {args.budget_s:.0f}s")
    start = time.monotonic()
    # smoke: the same torch.compile calls with the eager backend (no C++ build on the CPU)
    compile_fn = (lambda fn: torch.compile(fn, backend="eager")) if args.smoke else torch.compile
    run_cases(bench, models, sizes, set(args.only.split(",")) if args.only else None,
              args.compile_baselines, compile_fn)
    bench.meta["wall_s"] = round(time.monotonic() - start, 1)
    bench.write()
    # a Triton kernel or a case's own setup that failed is a bug; a peer backend may refuse
    failed = [r for r in bench.records if "error" in r and r.get("provider", "triton") == "triton"]
    skipped = sum(1 for r in bench.records if "skipped" in r)
    print(f"{len(bench.records)} records, {len(failed)} Triton errors, {skipped} skipped "
          f"for time, in {bench.meta['wall_s']}s"
          + (f"; wrote {args.out / 'kernels.json'}" if args.out else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
