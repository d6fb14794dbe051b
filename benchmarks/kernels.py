"""Kernel benchmarks: each Triton kernel against torch eager (its reference), torch.compile of
the reference and, for attention, torch SDPA on the flash backend, at Qwen2.5-0.5B / 7B shapes.

    python benchmarks/kernels.py [--quick] [--only attention,decode,...] [--budget-s 270]

On a GPU every case reports milliseconds, GB/s for memory-bound kernels (also as a fraction of
the device-to-device copy bandwidth measured first) or TFLOP/s for attention and the linear
cross-entropy, the peak memory one call allocates, and the largest difference from the
reference at the benchmark shape itself. torch.compile runs only at the largest 7B shape to
keep compile time inside the budget; cases past the budget are recorded as skipped.
On a CPU there are no timings: a correctness-only pass at tiny shapes through the Triton
interpreter. Results go to benchmarks/results/kernels-*.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

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

from benchmarks.common import write_results  # noqa: E402
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

MODELS = {
    "qwen2.5-0.5b": dict(hidden=896, heads=14, kv_heads=2, head_dim=64, intermediate=4864,
                         vocab=151936),
    "qwen2.5-7b": dict(hidden=3584, heads=28, kv_heads=4, head_dim=128, intermediate=18944,
                       vocab=152064),
}
DEVICE = "cuda"
DTYPE = torch.bfloat16
BYTES = 2            # bf16
PAGE = 256


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


class Bench:
    """Times providers of one case and keeps the records; stops timing at the budget."""

    def __init__(self, budget_s: float):
        self.deadline = time.monotonic() + budget_s
        self.records: list[dict] = []
        self.copy_gbps: float | None = None
        self._compiled: dict = {}

    def compiled(self, fn):
        if fn not in self._compiled:
            self._compiled[fn] = torch.compile(fn)
        return self._compiled[fn]

    def run(self, kernel: str, shape: dict, pass_: str, provider: str, fn, *, bytes_=None,
            flops=None, grads_of=(), **extra) -> dict:
        rec = {"kernel": kernel, **shape, "pass": pass_, "provider": provider, **extra}
        if time.monotonic() > self.deadline:
            rec["skipped"] = "time budget"
            self.records.append(rec)
            return rec
        try:
            fn()                                   # compile / autotune / warm the allocator
            for t in grads_of:
                t.grad = None
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            fn()
            torch.cuda.synchronize()
            rec["peak_mem_mib"] = round((torch.cuda.max_memory_allocated() - base) / 2**20, 1)
            ms = triton.testing.do_bench(fn, warmup=10, rep=50, grad_to_none=list(grads_of) or None,
                                         return_mode="median")
            rec["ms"] = round(ms, 4)
            if bytes_:
                rec["gbps"] = round(bytes_ / ms / 1e6, 1)
                if self.copy_gbps:
                    rec["of_copy_bw"] = round(rec["gbps"] / self.copy_gbps, 3)
            if flops:
                rec["tflops"] = round(flops / ms / 1e9, 1)
        except Exception as e:     # OOM, a backend that refuses the shape: record and go on
            rec["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:240] if str(e) else ''}"
        finally:
            for t in grads_of:
                t.grad = None
            torch.cuda.empty_cache()
        self.records.append(rec)
        speed = (f"{rec['gbps']:8.1f} GB/s" if "gbps" in rec else
                 f"{rec['tflops']:8.1f} TFLOP/s" if "tflops" in rec else "")
        status = rec.get("error") or rec.get("skipped") or (
            f"{rec['ms']:9.3f} ms {speed}  peak {rec['peak_mem_mib']:.0f} MiB")
        print(f"  {kernel:22s} {pass_:8s} {provider:13s} {status}", flush=True)
        return rec


def fwd_bwd(fn, grad_of_output):
    """A callable that runs fn() and back-propagates the given output gradient(s)."""
    def step():
        out = fn()
        outs = out if isinstance(out, tuple) else (out,)
        grads = grad_of_output if isinstance(grad_of_output, tuple) else (grad_of_output,)
        torch.autograd.backward(outs, grads)
    return step


# ----------------------------------------------------------------------------- memory-bound ops

def bench_copy(bench: Bench) -> None:
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    rec = bench.run("d2d_copy", {"bytes": n}, "fwd", "torch", lambda: dst.copy_(src), bytes_=2 * n)
    bench.copy_gbps = rec.get("gbps")
    del src, dst


def _providers(bench: Bench, triton_fn, reference, with_compile: bool):
    providers = {"triton": triton_fn, "torch": reference}
    if with_compile:
        providers["torch.compile"] = bench.compiled(reference)
    return providers


def bench_norms(bench: Bench, model: str, n: int, with_compile: bool) -> None:
    cfg = MODELS[model]
    d = cfg["hidden"]
    shape = {"model": model, "tokens": n, "hidden": d}
    x = torch.randn(n, d, device=DEVICE, dtype=DTYPE, requires_grad=True)
    r = torch.randn(n, d, device=DEVICE, dtype=DTYPE, requires_grad=True)
    w = torch.rand(d, device=DEVICE, dtype=DTYPE, requires_grad=True)
    gy, gs = torch.randn_like(x), torch.randn_like(x)
    err = max_err(rms_norm(x, w, 1e-6), rms_norm_reference(x, w, 1e-6))
    for name, fn in _providers(bench, rms_norm, rms_norm_reference, with_compile).items():
        with torch.no_grad():
            bench.run("rms_norm", shape, "fwd", name, lambda: fn(x, w, 1e-6),
                      bytes_=2 * n * d * BYTES, max_err=err)
        bench.run("rms_norm", shape, "fwd+bwd", name, fwd_bwd(lambda: fn(x, w, 1e-6), gy),
                  bytes_=5 * n * d * BYTES, grads_of=(x, w))
    err = max_err(add_rms_norm(x, r, w, 1e-6)[0], add_rms_norm_reference(x, r, w, 1e-6)[0])
    for name, fn in _providers(bench, add_rms_norm, add_rms_norm_reference, with_compile).items():
        with torch.no_grad():
            bench.run("add_rms_norm", shape, "fwd", name, lambda: fn(x, r, w, 1e-6),
                      bytes_=4 * n * d * BYTES, max_err=err)
        bench.run("add_rms_norm", shape, "fwd+bwd", name,
                  fwd_bwd(lambda: fn(x, r, w, 1e-6), (gy, gs)), bytes_=9 * n * d * BYTES,
                  grads_of=(x, r, w))


def bench_rope(bench: Bench, model: str, n: int, with_compile: bool) -> None:
    cfg = MODELS[model]
    hq, hk, d = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    shape = {"model": model, "tokens": n, "heads": hq, "kv_heads": hk, "head_dim": d}
    # q and k as views of a fused qkv projection, as the model produces them
    qkv = torch.randn(n, (hq + 2 * hk) * d, device=DEVICE, dtype=DTYPE)
    q = qkv[:, :hq * d].view(n, hq, d).detach().requires_grad_()
    k = qkv[:, hq * d:(hq + hk) * d].view(n, hk, d).detach().requires_grad_()
    positions = torch.arange(n, device=DEVICE) % 4096
    inv_freq = 1e6 ** -(torch.arange(0, d, 2, device=DEVICE, dtype=torch.float32) / d)
    angles = torch.arange(32768, device=DEVICE, dtype=torch.float32)[:, None] * inv_freq
    cos_sin = torch.cat((angles.cos(), angles.sin()), -1)
    gq, gk = torch.randn(n, hq, d, device=DEVICE, dtype=DTYPE), torch.randn(n, hk, d, device=DEVICE,
                                                                            dtype=DTYPE)
    err = max_err(rope(q, k, positions, cos_sin)[0], rope_reference(q, k, positions, cos_sin)[0])
    moved = 2 * n * (hq + hk) * d * BYTES + n * d * 4
    for name, fn in _providers(bench, rope, rope_reference, with_compile).items():
        with torch.no_grad():
            bench.run("rope", shape, "fwd", name, lambda: fn(q, k, positions, cos_sin),
                      bytes_=moved, max_err=err)
        bench.run("rope", shape, "fwd+bwd", name,
                  fwd_bwd(lambda: fn(q, k, positions, cos_sin), (gq, gk)), bytes_=2 * moved,
                  grads_of=(q, k))


def bench_swiglu(bench: Bench, model: str, n: int, with_compile: bool) -> None:
    inter = MODELS[model]["intermediate"]
    shape = {"model": model, "tokens": n, "intermediate": inter}
    gate_up = torch.randn(n, 2 * inter, device=DEVICE, dtype=DTYPE)
    gate = gate_up[:, :inter].detach().requires_grad_()
    up = gate_up[:, inter:].detach().requires_grad_()
    grad = torch.randn(n, inter, device=DEVICE, dtype=DTYPE)
    err = max_err(swiglu(gate, up), swiglu_reference(gate, up))
    for name, fn in _providers(bench, swiglu, swiglu_reference, with_compile).items():
        with torch.no_grad():
            bench.run("swiglu", shape, "fwd", name, lambda: fn(gate, up),
                      bytes_=3 * n * inter * BYTES, max_err=err)
        bench.run("swiglu", shape, "fwd+bwd", name, fwd_bwd(lambda: fn(gate, up), grad),
                  bytes_=8 * n * inter * BYTES, grads_of=(gate, up))


def bench_kv_store(bench: Bench, model: str, n: int) -> None:
    cfg = MODELS[model]
    hk, d = cfg["kv_heads"], cfg["head_dim"]
    shape = {"model": model, "tokens": n, "kv_heads": hk, "head_dim": d}
    blocks = triton.cdiv(n, PAGE) * 2
    k_cache = torch.zeros(blocks, PAGE, hk, d, device=DEVICE, dtype=DTYPE)
    v_cache = torch.zeros_like(k_cache)
    k = torch.randn(n, hk, d, device=DEVICE, dtype=DTYPE)
    v = torch.randn_like(k)
    slots = torch.randperm(blocks * PAGE, device=DEVICE)[:n]
    ref_k, ref_v = k_cache.clone(), v_cache.clone()
    store_kvcache(k, v, k_cache, v_cache, slots)
    store_kvcache_reference(k, v, ref_k, ref_v, slots)
    err = max(max_err(k_cache, ref_k), max_err(v_cache, ref_v))
    for name, fn in {"triton": store_kvcache, "torch": store_kvcache_reference}.items():
        bench.run("store_kvcache", shape, "fwd", name, lambda: fn(k, v, k_cache, v_cache, slots),
                  bytes_=4 * n * hk * d * BYTES, max_err=err)


# ----------------------------------------------------------------------------- attention

def _attention_flops(lengths: list[int], heads: int, head_dim: int) -> float:
    """Causal: half of the 4 * L^2 * D multiply-adds of QK^T and PV, per head."""
    return sum(2.0 * L * (L + 1) * head_dim * heads for L in lengths)


def bench_attention(bench: Bench, model: str, lengths: list[int]) -> None:
    cfg = MODELS[model]
    hq, hk, d = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    n, b, L = sum(lengths), len(lengths), lengths[0]
    shape = {"model": model, "seqlens": f"{b}x{L}", "heads": hq, "kv_heads": hk, "head_dim": d}
    scale = d ** -0.5
    cu = torch.zeros(b + 1, dtype=torch.int32, device=DEVICE)
    cu[1:] = torch.tensor(lengths, device=DEVICE).cumsum(0)
    q = torch.randn(n, hq, d, device=DEVICE, dtype=DTYPE, requires_grad=True)
    k = torch.randn(n, hk, d, device=DEVICE, dtype=DTYPE, requires_grad=True)
    v = torch.randn(n, hk, d, device=DEVICE, dtype=DTYPE, requires_grad=True)
    grad = torch.randn(n, hq, d, device=DEVICE, dtype=DTYPE)
    flops = _attention_flops(lengths, hq, d)

    # SDPA baseline on the same data laid out [B, H, L, D] (all sequences have length L)
    def dense(t):
        return t.detach().view(b, L, t.shape[1], d).transpose(1, 2).contiguous().requires_grad_()
    qd, kd, vd = dense(q), dense(k), dense(v)
    gd = grad.view(b, L, hq, d).transpose(1, 2)

    def sdpa():
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(qd, kd, vd, is_causal=True, scale=scale,
                                                  enable_gqa=True)

    errors = {}
    try:
        out = varlen_attention(q, k, v, cu, cu, scale)
        out.backward(grad)
        ref = sdpa()
        ref.backward(gd)
        errors["max_err_vs_sdpa"] = max_err(out, ref.transpose(1, 2).reshape(n, hq, d))
        for name, ours, theirs in (("dq", q, qd), ("dk", k, kd), ("dv", v, vd)):
            errors[f"{name}_max_err_vs_sdpa"] = max_err(
                ours.grad, theirs.grad.transpose(1, 2).reshape(ours.shape))
        del out, ref
    except Exception as e:
        errors["check_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    for t in (q, k, v, qd, kd, vd):
        t.grad = None
    providers = {"triton": lambda: varlen_attention(q, k, v, cu, cu, scale),
                 "sdpa_flash": sdpa}
    if L <= 4096:   # the per-sequence reference builds an L x L mask per sequence
        providers["torch"] = lambda: varlen_attention_reference(q, k, v, cu, cu, scale)
    for name, fn in providers.items():
        extra = errors if name == "triton" else {}
        with torch.no_grad():
            bench.run("varlen_attention", shape, "fwd", name, fn, flops=flops, **extra)
        bench.run("varlen_attention", shape, "fwd+bwd", name,
                  fwd_bwd(fn, gd if name == "sdpa_flash" else grad), flops=3.5 * flops,
                  grads_of=(qd, kd, vd) if name == "sdpa_flash" else (q, k, v))


def _paged_cache(contexts: list[int], hk: int, d: int):
    blocks_per_seq = [triton.cdiv(c, PAGE) for c in contexts]
    num_blocks = sum(blocks_per_seq) + 1
    k_cache = torch.randn(num_blocks, PAGE, hk, d, device=DEVICE, dtype=DTYPE)
    v_cache = torch.randn_like(k_cache)
    tables = torch.zeros(len(contexts), max(blocks_per_seq), dtype=torch.int32, device=DEVICE)
    pages = torch.randperm(num_blocks - 1, device=DEVICE).to(torch.int32) + 1
    used = 0
    for i, nb in enumerate(blocks_per_seq):
        tables[i, :nb] = pages[used:used + nb]
        used += nb
    return k_cache, v_cache, tables


def bench_prefix_prefill(bench: Bench, model: str, batch: int, cached: int, new: int) -> None:
    """Prefill of `new` tokens per sequence over a cached prefix read through block tables."""
    cfg = MODELS[model]
    hq, hk, d = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    shape = {"model": model, "batch": batch, "cached": cached, "new": new}
    total = cached + new
    k_cache, v_cache, tables = _paged_cache([total] * batch, hk, d)
    q = torch.randn(batch * new, hq, d, device=DEVICE, dtype=DTYPE)
    cu_q = torch.arange(batch + 1, device=DEVICE, dtype=torch.int32) * new
    cu_k = torch.arange(batch + 1, device=DEVICE, dtype=torch.int32) * total
    scale = d ** -0.5
    err = max_err(varlen_attention(q, k_cache, v_cache, cu_q, cu_k, scale, tables),
                  varlen_attention_reference(q, k_cache, v_cache, cu_q, cu_k, scale, tables))
    flops = 4.0 * batch * hq * d * new * (cached + (new + 1) / 2)
    with torch.no_grad():
        for name, fn in {"triton": varlen_attention, "torch": varlen_attention_reference}.items():
            bench.run("prefix_prefill", shape, "fwd", name,
                      lambda: fn(q, k_cache, v_cache, cu_q, cu_k, scale, tables), flops=flops,
                      max_err=err)


def bench_decode(bench: Bench, model: str, batch: int, context: int) -> None:
    cfg = MODELS[model]
    hq, hk, d = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
    shape = {"model": model, "batch": batch, "context": context}
    k_cache, v_cache, tables = _paged_cache([context] * batch, hk, d)
    lens = torch.full((batch,), context, dtype=torch.int32, device=DEVICE)
    q = torch.randn(batch, hq, d, device=DEVICE, dtype=DTYPE)
    scale = d ** -0.5
    err = max_err(paged_decode_attention(q, k_cache, v_cache, tables, lens, scale),
                  paged_decode_attention_reference(q, k_cache, v_cache, tables, lens, scale))
    # dense SDPA over the same keys already gathered into [B, Hk, context, D] (not paged)
    kd = k_cache[tables.long()].flatten(1, 2)[:, :context].transpose(1, 2).contiguous()
    vd = v_cache[tables.long()].flatten(1, 2)[:, :context].transpose(1, 2).contiguous()
    qd = q[:, :, None]

    def sdpa():
        from torch.nn.attention import SDPBackend, sdpa_kernel
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(qd, kd, vd, scale=scale, enable_gqa=True)
    providers = {"triton": lambda: paged_decode_attention(q, k_cache, v_cache, tables, lens, scale),
                 "sdpa_flash_dense": sdpa}
    if batch <= 64:
        providers["torch"] = lambda: paged_decode_attention_reference(q, k_cache, v_cache, tables,
                                                                      lens, scale)
    with torch.no_grad():
        for name, fn in providers.items():
            bench.run("paged_decode", shape, "fwd", name, fn,
                      bytes_=2 * batch * context * hk * d * BYTES,
                      **({"max_err": err} if name == "triton" else {}))


# ----------------------------------------------------------------------------- cross-entropy

def bench_linear_cross_entropy(bench: Bench, model: str, n: int, with_compile: bool) -> None:
    cfg = MODELS[model]
    d, vocab = cfg["hidden"], cfg["vocab"]
    shape = {"model": model, "tokens": n, "hidden": d, "vocab": vocab}
    hidden = torch.randn(n, d, device=DEVICE, dtype=DTYPE, requires_grad=True)
    weight = (0.02 * torch.randn(vocab, d, device=DEVICE, dtype=DTYPE)).requires_grad_()
    labels = torch.randint(0, vocab, (n,), device=DEVICE)
    labels[: n // 4] = -100
    errors = {}
    try:
        loss = linear_cross_entropy(hidden, weight, labels, -100, "mean")
        loss.backward()
        g_ours = hidden.grad
        hidden.grad = weight.grad = None
        ref = linear_cross_entropy_reference(hidden, weight, labels, -100, "mean")
        ref.backward()
        errors = {"loss_err": abs(loss.item() - ref.item()),
                  "grad_hidden_max_err": max_err(g_ours, hidden.grad)}
        del loss, ref, g_ours
    except Exception as e:
        errors["check_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    hidden.grad = weight.grad = None
    torch.cuda.empty_cache()
    flops = 6.0 * n * d * vocab
    for name, fn in _providers(bench, linear_cross_entropy, linear_cross_entropy_reference,
                               with_compile).items():
        bench.run("linear_cross_entropy", shape, "fwd+bwd", name,
                  lambda: fn(hidden, weight, labels, -100, "mean").backward(), flops=flops,
                  grads_of=(hidden, weight), **(errors if name == "triton" else {}))


# ----------------------------------------------------------------------------- driver

def gpu_benchmarks(quick: bool, only: set[str] | None, budget_s: float) -> list[dict]:
    bench = Bench(budget_s)
    models = list(MODELS)
    big = "qwen2.5-7b"
    tokens = [8192] if quick else [4096, 16384]
    wanted = (lambda name: only is None or name in only)
    print(f"device: {torch.cuda.get_device_name()}  quick={quick}  budget={budget_s:.0f}s")
    bench_copy(bench)
    if wanted("attention"):
        for model in models:
            for lengths in ([[4096] * 2] if quick else [[4096] * 4, [16384]]):
                bench_attention(bench, model, lengths)
    if wanted("decode"):
        for model in models:
            for batch, context in ([(1, 16384), (64, 4096)] if quick else
                                   [(1, 16384), (16, 4096), (64, 4096), (128, 2048)]):
                bench_decode(bench, model, batch, context)
    if wanted("prefix_prefill"):
        bench_prefix_prefill(bench, big, 8, 2048, 512)
    if wanted("linear_cross_entropy"):
        for model in models:
            for n in tokens:
                bench_linear_cross_entropy(bench, model, n, model == big and n == tokens[-1])
    for name, fn in (("rms_norm", bench_norms), ("rope", bench_rope), ("swiglu", bench_swiglu)):
        if wanted(name):
            for model in models:
                for n in tokens:
                    fn(bench, model, n, model == big and n == tokens[-1])
    if wanted("store_kvcache"):
        for model in models:
            for n in (64, tokens[-1]):
                bench_kv_store(bench, model, n)
    return bench.records


def cpu_correctness_pass() -> list[dict]:
    """Tiny shapes through the Triton interpreter, each kernel against its reference."""
    torch.manual_seed(0)
    n, hq, hk, d, hidden, vocab = 13, 4, 2, 16, 24, 40
    x, r, w = torch.randn(n, hidden), torch.randn(n, hidden), torch.rand(hidden) + 0.5
    q, k, v = torch.randn(n, hq, d), torch.randn(n, hk, d), torch.randn(n, hk, d)
    positions = torch.cat([torch.arange(8), torch.arange(5)])
    angles = torch.arange(16.0)[:, None] * (1e-4 ** (torch.arange(0, d, 2) / d))[None]
    cos_sin = torch.cat((angles.cos(), angles.sin()), -1)
    cu = torch.tensor([0, 8, 9, 13], dtype=torch.int32)
    kc, vc = torch.randn(6, 4, hk, d), torch.randn(6, 4, hk, d)
    tables = torch.tensor([[5, 1, 0], [2, 0, 0], [3, 4, 0]], dtype=torch.int32)
    lens = torch.tensor([9, 1, 6], dtype=torch.int32)
    slots = torch.tensor([0, 1, 2, 3, -1, 5, 6, 7, 8, 9, 10, 11, 12])
    head, labels = torch.randn(vocab, hidden), torch.randint(0, vocab, (n,))

    def stored(fn):
        caches = (kc.clone(), vc.clone())
        fn(k, v, *caches, slots)
        return torch.cat(caches)

    checks = {
        "rms_norm": (rms_norm(x, w, 1e-6), rms_norm_reference(x, w, 1e-6)),
        "add_rms_norm": (add_rms_norm(x, r, w, 1e-6)[0], add_rms_norm_reference(x, r, w, 1e-6)[0]),
        "rope": (rope(q, k, positions, cos_sin)[0], rope_reference(q, k, positions, cos_sin)[0]),
        "swiglu": (swiglu(x, r), swiglu_reference(x, r)),
        "varlen_attention": (varlen_attention(q, k, v, cu, cu, 0.25),
                             varlen_attention_reference(q, k, v, cu, cu, 0.25)),
        "paged_decode": (paged_decode_attention(q[:3], kc, vc, tables, lens, 0.25),
                         paged_decode_attention_reference(q[:3], kc, vc, tables, lens, 0.25)),
        "store_kvcache": (stored(store_kvcache), stored(store_kvcache_reference)),
        "linear_cross_entropy": (linear_cross_entropy(x, head, labels),
                                 linear_cross_entropy_reference(x, head, labels)),
    }
    records = []
    for name, (ours, ref) in checks.items():
        err = max_err(ours, ref)
        ok = torch.allclose(ours.float(), ref.float(), atol=1e-4, rtol=1e-4)
        records.append({"kernel": name, "max_err": err, "ok": ok})
        print(f"  {name:22s} max |triton - reference| = {err:.2e}  {'ok' if ok else 'MISMATCH'}")
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one token count, fewer cases")
    parser.add_argument("--only", default=None,
                        help="comma list of: attention, decode, prefix_prefill, "
                             "linear_cross_entropy, rms_norm, rope, swiglu, store_kvcache")
    parser.add_argument("--budget-s", type=float, default=270.0,
                        help="stop starting new cases after this many seconds")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("No CUDA device: correctness-only pass through the Triton interpreter "
              "(tiny shapes, no timings).")
        records = cpu_correctness_pass()
        path = write_results("kernels", records, mode="cpu-correctness")
        print(f"wrote {path}")
        if not all(r["ok"] for r in records):
            sys.exit(1)
        return
    only = set(args.only.split(",")) if args.only else None
    start = time.monotonic()
    records = gpu_benchmarks(args.quick, only, args.budget_s)
    path = write_results("kernels", records, mode="gpu", quick=args.quick,
                         wall_s=round(time.monotonic() - start, 1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
