"""Compile every Triton kernel for sm_90 (H100/H200) on a machine without a GPU, and report the
registers, spills and shared memory of each launch configuration.

    python benchmarks/aot_compile.py --out benchmarks/results/aot_sm90_triton3.9.0.json
    PYTHONPATH=/tmp/t36:$PWD python benchmarks/aot_compile.py \
        --out benchmarks/results/aot_sm90_triton3.6.0.json    # another triton, e.g. the GPU image's
    python benchmarks/aot_compile.py --subset --out /tmp/aot.json     # a representative slice

How: triton's active driver is replaced by `Sm90Driver`, which reports the target
GPUTarget("cuda", 90, 32) and an H100's limits, and whose launches do nothing. The kernels'
own public entry points (forward and backward) are then called on small CPU tensors at the
engine's real head counts, head dims, hidden sizes and page size, so every kernel is compiled
with exactly the specialization, constexprs, warps and stages its launcher picks; autotuned
kernels are "benchmarked" by a stand-in timer that just launches, so every tile candidate is
compiled. triton compiles to PTX and runs the ptxas it ships with; its verbose log gives the
registers and spills, the kernel metadata the shared memory. Each compile is fresh (a
temporary cache directory), so the log is always there.

Output: JSON (environment, one record per compiled configuration) and, beside it, a markdown
summary of the same path with .md. Exit code 1 when a bf16/fp16 configuration spills.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
# this folder holds kernels.py, named like the `kernels` package: keep it off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "benchmarks"]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.runtime import driver  # noqa: E402

from benchmarks.common import environment, save_json  # noqa: E402

H100 = {"max_shared_mem": 232448, "multiprocessor_count": 132, "max_num_regs": 65536,
        "warpSize": 32, "sm_clock_rate": 1980000, "mem_clock_rate": 2619000,
        "mem_bus_width": 5120, "max_threads_per_block": 1024}
TARGET = GPUTarget("cuda", 90, 32)
# launch parameters that say which configuration a record is (all other constexprs are fixed
# by the workload label)
_CONFIG_KEYS = ("BLOCK_M", "BLOCK_N", "BLOCK_G", "BLOCK_S", "BLOCK", "BLOCK_D", "BLOCK_V",
                "BLOCK_H", "BLOCK_HQ", "BLOCK_HK", "BLOCK_HALF", "SEQ_BLOCK", "HEAD_DIM", "PAGED",
                "PRECISION", "HAS_RESIDUAL", "MEAN", "WRITE_GRAD", "SIN_SIGN")


# ----------------------------------------------------------------------------- the mock driver

class _Utils:
    def get_device_properties(self, device):
        return dict(H100)

    def load_binary(self, name, kernel, shared, device):
        return 1, 1, 0, 0, H100["max_threads_per_block"]   # module, function, regs, spills, threads

    def unload_module(self, module):
        pass


class Sm90Driver:
    """Stands in for triton's CUDA driver: target sm_90, an H100's limits, launches that do
    nothing. Every compiled kernel reaches `launcher_cls` once (its first launch), where it is
    recorded together with the ptxas log that its compile just printed."""

    def __init__(self, log: io.StringIO):
        self.utils = _Utils()
        self.records: list[dict] = []
        self.label: dict = {}
        self._log = log
        self._seen = 0

    def get_current_target(self):
        return TARGET

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_active_torch_device(self):
        return torch.device("cpu")

    def get_benchmarker(self):
        def bench(kernel_call, quantiles=None, **kwargs):
            kernel_call()            # compiles the config (or raises OutOfResources)
            return [1.0] * len(quantiles) if quantiles else 1.0
        return bench

    def clear_cache(self, *args, **kwargs):
        pass

    def launcher_cls(self, src, metadata):
        text = self._log.getvalue()
        ptxas = parse_ptxas_log(text[self._seen:], metadata.name)
        self._seen = len(text)
        constants = {src.fn.arg_names[k[0]]: v for k, v in src.constants.items()}
        config = {k: (v if isinstance(v, (int, float, bool)) else str(v))
                  for k, v in constants.items() if k in _CONFIG_KEYS}
        self.records.append({**self.label, "kernel": metadata.name, **config,
                             "num_warps": metadata.num_warps, "num_stages": metadata.num_stages,
                             "shared_bytes": metadata.shared,
                             "fits_shared": metadata.shared <= H100["max_shared_mem"], **ptxas})
        return lambda *args, **kwargs: None


_PTXAS = {
    "stack_bytes": re.compile(r"(\d+) bytes stack frame"),
    "spill_store_bytes": re.compile(r"(\d+) bytes spill stores"),
    "spill_load_bytes": re.compile(r"(\d+) bytes spill loads"),
    "registers": re.compile(r"Used (\d+) registers"),
}


def parse_ptxas_log(text: str, name: str) -> dict:
    """Registers, spill stores/loads and stack frame of entry `name` from `ptxas -v` output."""
    start = text.rfind(f"Function properties for {name}")
    if start < 0:
        return {"ptxas_log": "missing"}
    block = text[start:]
    out = {}
    for key, pattern in _PTXAS.items():
        m = pattern.search(block)
        out[key] = int(m.group(1)) if m else None
    return out


# ----------------------------------------------------------------------------- workloads
#
# Each workload calls a kernel's public entry point (and its backward) on CPU tensors. Shapes are
# the engine's: Qwen2.5 head counts with GQA, KV pages of 16 tokens, real hidden/intermediate
# sizes. Token counts are small (the compiled code depends on them only through a stride's
# divisibility); sequence counts 4 and 200 cover the SEQ_BLOCK regimes 32 (the least) and 256.

ATTENTION_HEADS = {64: (14, 2), 128: (28, 4), 256: (8, 4)}     # head_dim -> (Hq, Hk)
MODELS = {  # hidden, intermediate, (Hq, Hk, head_dim), vocab
    "qwen2.5-0.5b": (896, 4864, (14, 2, 64), 151936),
    "qwen2.5-1.5b": (1536, 8960, (12, 2, 128), 151936),
    "qwen2.5-7b": (3584, 18944, (28, 4, 128), 152064),
}
PAGE = 16
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
SEQ_COUNTS = (4, 200)


def _lengths(num_seqs: int, extra: int = 0) -> list[int]:
    """num_seqs lengths with an odd total (the general stride case), one of them longer."""
    return [3 + extra] + [1 + (i % 3) + extra for i in range(num_seqs - 1)]


def _cu(lengths: list[int]) -> torch.Tensor:
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths).cumsum(0)
    return cu


def attention_varlen(dtype: torch.dtype, head_dim: int, num_seqs: int) -> None:
    from kernels.attention import varlen_attention
    hq, hk = ATTENTION_HEADS[head_dim]
    lengths = _lengths(num_seqs)
    n, cu = sum(lengths), _cu(lengths)
    q = torch.randn(n, hq, head_dim, dtype=dtype, requires_grad=True)
    kv = torch.randn(n, 2 * hk, head_dim, dtype=dtype)
    k, v = (t.detach().requires_grad_() for t in (kv[:, :hk], kv[:, hk:]))
    varlen_attention(q, k, v, cu, cu, head_dim ** -0.5).backward(torch.randn(n, hq, head_dim,
                                                                             dtype=dtype))


def attention_paged_prefill(dtype: torch.dtype, head_dim: int, num_seqs: int) -> None:
    from kernels.attention import varlen_attention
    hq, hk = ATTENTION_HEADS[head_dim]
    len_q, len_k = _lengths(num_seqs), _lengths(num_seqs, extra=PAGE + 1)
    pages = -(-max(len_k) // PAGE)
    caches = [torch.randn(num_seqs * pages + 1, PAGE, hk, head_dim, dtype=dtype) for _ in "kv"]
    tables = torch.arange(num_seqs * pages, dtype=torch.int32).view(num_seqs, pages) + 1
    q = torch.randn(sum(len_q), hq, head_dim, dtype=dtype)
    varlen_attention(q, *caches, _cu(len_q), _cu(len_k), head_dim ** -0.5, tables)


def paged_decode(dtype: torch.dtype, head_dim: int, batch: int) -> None:
    from kernels.paged_attention import paged_decode_attention
    hq, hk = ATTENTION_HEADS[head_dim]
    pages = 4096 // PAGE                     # block-table capacity of a 4k context
    caches = [torch.randn(batch * 2 + 1, PAGE, hk, head_dim, dtype=dtype) for _ in "kv"]
    tables = torch.randint(0, batch * 2 + 1, (batch, pages), dtype=torch.int32)
    lens = torch.full((batch,), 27, dtype=torch.int32)
    q = torch.randn(batch, hq, head_dim, dtype=dtype)
    paged_decode_attention(q, *caches, tables, lens, head_dim ** -0.5)


def kv_store(dtype: torch.dtype, model: str) -> None:
    from kernels.kv_store import store_kvcache
    _, _, (hq, hk, d), _ = MODELS[model]
    n = 37
    qkv = torch.randn(n, (hq + 2 * hk) * d, dtype=dtype)     # k, v: views of the fused projection
    k = qkv[:, hq * d:(hq + hk) * d].view(n, hk, d)
    v = qkv[:, (hq + hk) * d:].view(n, hk, d)
    caches = [torch.zeros(8, PAGE, hk, d, dtype=dtype) for _ in "kv"]
    store_kvcache(k, v, *caches, torch.arange(n) - 1)


def norms(dtype: torch.dtype, model: str) -> None:
    from kernels.rms_norm import add_rms_norm, rms_norm
    hidden = MODELS[model][0]
    x, r = (torch.randn(37, hidden, dtype=dtype, requires_grad=True) for _ in "xr")
    w = torch.rand(hidden, dtype=dtype, requires_grad=True)
    rms_norm(x, w, 1e-6).sum().backward()
    y, s = add_rms_norm(x, r, w, 1e-6)
    (y.sum() + s.sum()).backward()


def rotary(dtype: torch.dtype, model: str) -> None:
    from kernels.rope import rope
    _, _, (hq, hk, d), _ = MODELS[model]
    n = 37
    qkv = torch.randn(n, (hq + 2 * hk) * d, dtype=dtype)
    q = qkv[:, :hq * d].view(n, hq, d).detach().requires_grad_()
    k = qkv[:, hq * d:(hq + hk) * d].view(n, hk, d).detach().requires_grad_()
    cos_sin = torch.randn(64, d)
    qo, ko = rope(q, k, torch.arange(n), cos_sin)
    (qo.sum() + ko.sum()).backward()


def swiglu_mlp(dtype: torch.dtype, model: str) -> None:
    from kernels.swiglu import swiglu
    inter = MODELS[model][1]
    gate_up = torch.randn(5, 2 * inter, dtype=dtype)
    gate, up = (t.detach().requires_grad_() for t in (gate_up[:, :inter], gate_up[:, inter:]))
    swiglu(gate, up).sum().backward()


def cross_entropy(dtype: torch.dtype, model: str) -> None:
    from kernels.linear_cross_entropy import linear_cross_entropy
    vocab = MODELS[model][3]
    hidden = torch.randn(7, 64, dtype=dtype, requires_grad=True)   # hidden size is not compiled in
    weight = torch.randn(vocab, 64, dtype=dtype, requires_grad=True)
    labels = torch.tensor([1, -100, 3, 4, 5, -100, 7])
    linear_cross_entropy(hidden, weight, labels, reduction="mean").backward()


def sampler(dtype: torch.dtype, model: str) -> None:
    from engine.generation.sampling_kernel import gumbel_argmax_triton
    b, vocab = 4, MODELS[model][3]
    gumbel_argmax_triton(torch.randn(b, vocab, dtype=dtype), torch.ones(b), torch.full((b,), -1e9),
                         torch.zeros(b, 2, dtype=torch.int64))


def workloads(subset: bool) -> list[tuple[dict, Callable[[], None]]]:
    """(label, call) pairs; `subset` keeps the bf16 attention tiles (every candidate, fwd, bwd
    and paged) at d128 and d64 with the sequence counts that spill most readily, plus decode."""
    out = []
    dtypes = ["bf16"] if subset else list(DTYPES)
    dims = (64, 128) if subset else (64, 128, 256)
    for dt in dtypes:
        for d in dims:
            for s in ((4,) if subset else SEQ_COUNTS):
                label = {"op": "varlen_attention", "dtype": dt, "head_dim": d, "num_seqs": s}
                out.append((label, lambda dt=dt, d=d, s=s: attention_varlen(DTYPES[dt], d, s)))
                label = {"op": "paged_prefill", "dtype": dt, "head_dim": d, "num_seqs": s}
                out.append((label, lambda dt=dt, d=d, s=s: attention_paged_prefill(DTYPES[dt], d,
                                                                                  s)))
            for b in ((1,) if subset else (1, 256)):
                label = {"op": "paged_decode", "dtype": dt, "head_dim": d, "batch": b}
                out.append((label, lambda dt=dt, d=d, b=b: paged_decode(DTYPES[dt], d, b)))
    if subset:
        return out
    per_model = {"store_kvcache": kv_store, "rms_norm": norms, "rope": rotary,
                 "swiglu": swiglu_mlp, "linear_cross_entropy": cross_entropy, "sampler": sampler}
    for op, fn in per_model.items():
        for dt in DTYPES:
            for model in MODELS:
                label = {"op": op, "dtype": dt, "model": model}
                out.append((label, lambda fn=fn, dt=dt, model=model: fn(DTYPES[dt], model)))
    return out


# ----------------------------------------------------------------------------- run and report

def _fresh_autotuners() -> None:
    """Autotuners remember the config they picked per key; forget it so that every workload
    compiles every candidate (compiled kernels stay cached, so nothing is compiled twice)."""
    from kernels import attention
    attention._tuned.cache_clear()


def compile_all(jobs: list[tuple[dict, Callable[[], None]]],
                after_each: Callable[[list[dict]], None] = lambda records: None) -> list[dict]:
    """Runs each workload under the sm_90 driver; returns one record per compiled kernel and
    calls after_each(records) after every workload (to save partial results)."""
    import kernels.triton_support as support
    if support.INTERPRET:
        raise RuntimeError("kernels were imported under TRITON_INTERPRET=1")
    support.num_sms = lambda device_index: H100["multiprocessor_count"]   # launch sizes as on sm_90
    log = io.StringIO()
    mock = Sm90Driver(log)
    triton.knobs.nvidia.dump_ptxas_log = True
    driver.set_active(mock)
    torch.manual_seed(0)
    try:
        for label, call in jobs:
            mock.label = label
            _fresh_autotuners()
            start, first = time.monotonic(), len(mock.records)
            try:
                with contextlib.redirect_stdout(log):
                    call()
            except Exception as e:      # e.g. no tile fits in shared memory: record, go on
                mock.records.append({**label, "error": f"{type(e).__name__}: {str(e)[:300]}"})
                print(f"    ERROR {mock.records[-1]['error']}")
            new = mock.records[first:]
            print(f"  {json.dumps(label):84s} {len(new):3d} compiled "
                  f"{time.monotonic() - start:5.1f}s", flush=True)
            for r in new:
                if r.get("spill_store_bytes"):
                    print(f"    SPILL {r['kernel']} {_config_text(r)}: {r['registers']} regs, "
                          f"{r['spill_store_bytes']}/{r['spill_load_bytes']} B spilled")
            after_each(mock.records)
    finally:
        try:
            driver.reset_active()
        except RuntimeError:          # no real driver on this machine: nothing to go back to
            pass
    return mock.records


def _config_text(r: dict) -> str:
    keys = [k for k in _CONFIG_KEYS if k in r and k not in ("HEAD_DIM", "PRECISION")]
    return " ".join(f"{k}={r[k]}" for k in keys) + f" w{r['num_warps']} s{r['num_stages']}"


def _ptxas_version() -> str | None:
    from triton.backends.nvidia.compiler import get_ptxas
    try:
        out = subprocess.run([get_ptxas(TARGET.arch).path, "--version"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"release ([\d.]+)", out)
    return m.group(1) if m else out.strip()[-60:]


def half_precision_spills(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("dtype") in ("bf16", "fp16") and r.get("spill_store_bytes")]


def summary_markdown(payload: dict) -> str:
    records = [r for r in payload["records"] if "kernel" in r]
    env = payload["environment"]
    lines = [f"# sm_90 compile report: triton {env['triton']} (ptxas {env['ptxas']})", "",
             f"{len(records)} configurations compiled for {payload['target']} on "
             f"{env['machine']}, {payload['wall_s']} s; commit {env['git_commit']}"
             f"{' (dirty)' if env['git_dirty'] else ''}; subset: {payload['subset']}"
             f"{'' if payload['complete'] else ' (INCOMPLETE: still running or killed)'}.", "",
             "| kernel | dtype | configs | max registers | max shared KiB | spilling |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["kernel"], r["dtype"]), []).append(r)
    for (kernel, dtype), rs in sorted(groups.items()):
        spilling = sum(1 for r in rs if r.get("spill_store_bytes"))
        lines.append(f"| {kernel} | {dtype} | {len(rs)} | {max(r.get('registers') or 0 for r in rs)}"
                     f" | {max(r['shared_bytes'] for r in rs) / 1024:.0f} | {spilling} |")
    spills = [r for r in records if r.get("spill_store_bytes")]
    too_big = [r for r in records if not r["fits_shared"]]
    lines += ["", f"Spilling configurations: {len(spills)} "
              f"({len(half_precision_spills(records))} in bf16/fp16). Configurations needing "
              f"more than the {H100['max_shared_mem']} B of shared memory a block can have: "
              f"{len(too_big)}."]
    if spills:
        lines += ["", "| op | dtype | head_dim | seqs | kernel | BLOCK_M x N | warps | stages "
                  "| regs | spill store/load B |", "| --- | --- | ---: | ---: | --- | --- | ---: "
                  "| ---: | ---: | --- |"]
        for r in spills:
            lines.append(f"| {r['op']} | {r['dtype']} | {r.get('head_dim', '')} | "
                         f"{r.get('num_seqs', r.get('batch', ''))} | {r['kernel']} | "
                         f"{r.get('BLOCK_M', r.get('BLOCK_G', ''))}x{r.get('BLOCK_N', '')} | "
                         f"{r['num_warps']} | {r['num_stages']} | {r['registers']} | "
                         f"{r['spill_store_bytes']}/{r['spill_load_bytes']} |")
    errors = [r for r in payload["records"] if "error" in r]
    if errors:
        lines += ["", "Not compiled:"] + [f"- {json.dumps(r)}" for r in errors]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON path (default benchmarks/results/aot_sm90_triton<ver>.json); "
                             "the markdown summary goes beside it; both rewritten as it goes")
    parser.add_argument("--subset", action="store_true",
                        help="only bf16 attention at d64/d128 and decode (about a minute)")
    parser.add_argument("--ops", default=None, help="comma list: only these ops (e.g. "
                        "varlen_attention,paged_prefill)")
    parser.add_argument("--dtypes", default=None, help="comma list: only these of bf16,fp16,fp32")
    args = parser.parse_args()
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        parser.error("unset TRITON_INTERPRET: the interpreter compiles nothing")
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="aot_sm90_")  # fresh: ptxas runs
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")     # triton >= 3.9 warns if unset
    out = args.out or ROOT / "benchmarks" / "results" / f"aot_sm90_triton{triton.__version__}.json"
    jobs = [(label, call) for label, call in workloads(args.subset)
            if (args.ops is None or label["op"] in args.ops.split(","))
            and (args.dtypes is None or label["dtype"] in args.dtypes.split(","))]
    env = environment()
    env.update(device=None, machine=f"{platform.machine()} cpu, no GPU", ptxas=_ptxas_version())
    print(f"triton {triton.__version__} ({Path(triton.__file__).parent}), ptxas {env['ptxas']}, "
          f"target {TARGET}, {len(jobs)} workloads")
    start = time.monotonic()
    payload = {"benchmark": "aot_compile", "environment": env,
               "target": f"cuda sm_{TARGET.arch} (warp {TARGET.warp_size})",
               "subset": args.subset or bool(args.ops or args.dtypes), "complete": False}

    def save(records: list[dict]) -> None:
        payload.update(records=records, wall_s=round(time.monotonic() - start, 1))
        save_json(out, payload)
        out.with_suffix(".md").write_text(summary_markdown(payload))

    records = compile_all(jobs, save)
    payload["complete"] = True
    save(records)
    print(summary_markdown(payload))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    if half_precision_spills(records):
        sys.exit(1)


if __name__ == "__main__":
    main()
