"""Generation benchmark: throughput against transformers, decode roofline, prefix sharing.

    python benchmarks/generation.py                 # GPU: Qwen2.5-0.5B-shaped random model, bf16
    python benchmarks/generation.py --quick         # a small run (GPU) / the default on CPU
    python benchmarks/generation.py --profile       # + torch.profiler trace and top GPU kernels

Workloads (random token prompts, ignore_eos, so every request runs to its length):
  throughput   nano-vllm's: 256 requests, input and output lengths uniform in 100..1024,
               temperature 0.6; output tokens/s.
  vs_hf        the same prompts with one fixed output length, greedy, through sheep-engine
               and through transformers (continuous batching `generate_batch` on CUDA when
               present, else padded batched `generate`) on the same weights.
  decode_b1    one sequence: seconds per decode step (difference of two generation lengths,
               so prefill drops out) and its fraction of the bandwidth roofline
               (weight + KV bytes per step / measured device copy bandwidth).
  prefix       1024 requests sharing one 1k-token prefix, with and without prefix caching.
On CPU everything shrinks to a tiny model and a few requests (a smoke test in seconds).
Results: benchmarks/results/generation-<device>.json with device, versions and git commit.
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.config import ModelConfig  # noqa: E402
from engine.generation import LLM, SamplingParams  # noqa: E402
from engine.model import CausalLM  # noqa: E402

QWEN25_05B = dict(model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864,
                  num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                  max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                  tie_word_embeddings=True, attention_bias=True, torch_dtype="bfloat16")
TINY = dict(QWEN25_05B, vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
            torch_dtype="float32")


# --- setup ------------------------------------------------------------------------------------
def build_models(shape: dict, device: torch.device, dtype: torch.dtype, with_hf: bool):
    """A random model as our CausalLM and, when transformers is importable, as the matching
    transformers model sharing the same weight tensors."""
    hf = None
    if with_hf:
        try:
            import transformers
            hf_cfg = transformers.Qwen2Config(**{k: v for k, v in shape.items()
                                                if k not in ("model_type", "torch_dtype")})
            torch.manual_seed(0)
            with torch.device(device):
                try:
                    hf = transformers.AutoModelForCausalLM.from_config(hf_cfg, dtype=dtype)
                except TypeError:     # transformers < 4.56 names it torch_dtype
                    hf = transformers.AutoModelForCausalLM.from_config(hf_cfg, torch_dtype=dtype)
            hf.eval()
        except Exception as e:  # noqa: BLE001 - the baseline is optional
            print(f"transformers baseline unavailable: {type(e).__name__}: {e}")
            hf = None
    cfg = ModelConfig.from_hf_dict(shape, source="benchmark shape")
    with torch.device("meta"):
        model = CausalLM(cfg)
    if hf is not None:
        ours = model.state_dict()
        state = {k: v for k, v in hf.state_dict().items() if k in ours}
        missing = set(ours) - set(state) - ({"lm_head.weight"} if cfg.tie_word_embeddings else set())
        if missing:
            raise RuntimeError(f"transformers model lacks {sorted(missing)[:5]}")
    else:
        g = torch.Generator().manual_seed(0)
        state = {k: (torch.randn(v.shape, generator=g) * 0.02).to(device, dtype)
                 for k, v in model.state_dict().items()}
    model.load_state_dict(state, assign=True, strict=False)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.init_rope()
    return model.eval(), hf


def random_requests(n: int, in_range: tuple[int, int], out_range: tuple[int, int], vocab: int,
                    seed: int = 0):
    """nano-vllm's workload: token ids uniform in [0, 10000) (or the vocabulary if smaller)."""
    rng = random.Random(seed)
    top = min(10000, vocab) - 1
    prompts = [[rng.randint(0, top) for _ in range(rng.randint(*in_range))] for _ in range(n)]
    outs = [rng.randint(*out_range) for _ in range(n)]
    return prompts, outs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --- workloads --------------------------------------------------------------------------------
def run_engine(llm: LLM, prompts, params) -> dict:
    sync(llm.model.device)
    t = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    sync(llm.model.device)
    elapsed = time.perf_counter() - t
    tokens = sum(len(c.token_ids) for o in outs for c in o.outputs)
    s = llm.stats
    return {"requests": len(prompts), "output_tokens": tokens, "prompt_tokens": s.num_prompt_tokens,
            "computed_prompt_tokens": s.num_computed_prompt_tokens,
            "cached_prompt_tokens": s.num_cached_prompt_tokens, "steps": s.num_steps,
            "decode_steps": s.num_decode_steps, "preemptions": s.num_preemptions,
            "seconds": elapsed, "output_tokens_per_s": tokens / elapsed,
            "total_tokens_per_s": (tokens + s.num_prompt_tokens) / elapsed}


def run_hf(hf, prompts, max_new: int, device: torch.device) -> dict:
    """transformers on the same prompts: continuous batching if it has it, else batched generate."""
    import transformers
    gen_cfg = transformers.GenerationConfig(max_new_tokens=max_new, do_sample=False,
                                            eos_token_id=None, pad_token_id=0)
    sync(device)
    t = time.perf_counter()
    if hasattr(hf, "generate_batch") and device.type == "cuda":   # its CPU path is very slow
        method = "generate_batch"
        results = hf.generate_batch(inputs=prompts, generation_config=gen_cfg, progress_bar=False)
        tokens = sum(len(r.generated_tokens) for r in results.values())
    else:
        method = "generate"
        tokens = 0
        batch = 32
        for i in range(0, len(prompts), batch):
            chunk = prompts[i:i + batch]
            width = max(map(len, chunk))
            ids = torch.tensor([[0] * (width - len(p)) + p for p in chunk], device=device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=device)
            with torch.no_grad():
                out = hf.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg)
            tokens += (out.shape[1] - width) * len(chunk)
    sync(device)
    elapsed = time.perf_counter() - t
    return {"method": method, "transformers": transformers.__version__, "output_tokens": tokens,
            "seconds": elapsed, "output_tokens_per_s": tokens / elapsed}


def copy_bandwidth(device: torch.device) -> float:
    """Bytes/s of a large device-to-device copy (read + write)."""
    n = (256 if device.type == "cuda" else 32) * 2**20
    x = torch.empty(n, dtype=torch.uint8, device=device)
    y = torch.empty_like(x)
    y.copy_(x)
    sync(device)
    reps = 20
    t = time.perf_counter()
    for _ in range(reps):
        y.copy_(x)
    sync(device)
    return 2 * n * reps / (time.perf_counter() - t)


def decode_batch1(llm: LLM, prompt_len: int, short: int, long: int) -> dict:
    """Seconds per decode step at batch 1 and the roofline fraction."""
    rng, top = random.Random(1), min(10000, llm.model.config.vocab_size) - 1
    prompt = [[rng.randint(0, top) for _ in range(prompt_len)]]
    params = lambda n: SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True)  # noqa: E731
    run_engine(llm, prompt, params(short))           # warm
    a = run_engine(llm, prompt, params(short))["seconds"]
    b = run_engine(llm, prompt, params(long))["seconds"]
    step = (b - a) / (long - short)
    model, cfg = llm.model, llm.model.config
    seen = set()
    weight_bytes = 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            weight_bytes += p.numel() * p.element_size()
    avg_context = prompt_len + (short + long) / 2
    kv_bytes = avg_context * 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim \
        * model.model.embed_tokens.weight.element_size()
    bw = copy_bandwidth(model.device)
    roofline = (weight_bytes + kv_bytes) / bw
    return {"prompt_len": prompt_len, "seconds_per_step": step, "tokens_per_s": 1 / step,
            "weight_bytes": weight_bytes, "kv_bytes_per_step": kv_bytes,
            "copy_bandwidth_GBps": bw / 1e9, "roofline_seconds": roofline,
            "roofline_fraction": roofline / step}


def prefix_sharing(model, tokenizer, n: int, prefix_len: int, suffix_len: int, max_tokens: int,
                   caching: bool, engine_kw: dict) -> dict:
    rng, top = random.Random(2), min(10000, model.config.vocab_size) - 1
    prefix = [rng.randint(0, top) for _ in range(prefix_len)]
    prompts = [prefix + [rng.randint(0, top) for _ in range(suffix_len)] for _ in range(n)]
    llm = LLM(model, tokenizer, enable_prefix_caching=caching, **engine_kw)
    try:
        res = run_engine(llm, prompts, SamplingParams(temperature=0.6, max_tokens=max_tokens,
                                                      ignore_eos=True, seed=0))
    finally:
        llm.close()
    res["prefix_caching"] = caching
    return res


def profile(llm: LLM, prompts, params, out_path: Path) -> list[str]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if llm.model.device.type == "cuda" else [])
    with torch_profile(activities=acts) as prof:
        llm.generate(prompts, params, use_tqdm=False)
        sync(llm.model.device)
    prof.export_chrome_trace(str(out_path))
    key = "self_cuda_time_total" if llm.model.device.type == "cuda" else "self_cpu_time_total"
    try:
        table = prof.key_averages().table(sort_by=key, row_limit=20)
    except Exception:  # noqa: BLE001 - newer torch names it device time
        table = prof.key_averages().table(sort_by="self_device_time_total", row_limit=20)
    print(table)
    return table.splitlines()


# --- metadata ---------------------------------------------------------------------------------
def metadata(device: torch.device) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    except Exception:  # noqa: BLE001
        commit = "unknown"
    try:
        import triton
        triton_version = triton.__version__
    except Exception:  # noqa: BLE001
        triton_version = None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    from engine import ops
    return {"device": name, "torch": torch.__version__, "triton": triton_version,
            "git_commit": commit, "ops_backend": ops.backend(), "python": platform.python_version(),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def device_slug(meta: dict, device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", meta["device"].lower()).strip("-")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small run (always on without CUDA)")
    p.add_argument("--profile", action="store_true", help="torch.profiler trace + top kernels")
    p.add_argument("--no-hf", action="store_true", help="skip the transformers baseline")
    p.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    p.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/)")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    small = args.quick or not cuda
    shape = QWEN25_05B if cuda else TINY
    dtype = torch.bfloat16 if cuda else torch.float32
    meta = metadata(device)
    print(f"device {meta['device']}, torch {meta['torch']}, triton {meta['triton']}, "
          f"ops {meta['ops_backend']}, commit {meta['git_commit'][:10]}")

    if cuda:
        n_req, lens, hf_out = (32, (100, 256), 128) if small else (256, (100, 1024), 512)
        prefix = (128, 1024, 32, 32) if small else (1024, 1024, 32, 64)  # n, prefix, suffix, out
        engine_kw = dict(gpu_memory_utilization=args.gpu_memory_utilization,
                         enforce_eager=args.enforce_eager, max_num_seqs=256, max_num_batched_tokens=16384)
        b1 = (512, 32, 288) if not small else (256, 16, 80)
    else:          # smoke test; one thread: tiny ops lose to OpenMP overhead on loaded machines
        torch.set_num_threads(1)
        n_req, lens, hf_out = 8, (10, 40), 12
        prefix = (16, 64, 4, 4)
        engine_kw = dict(kv_cache_bytes=16 * 2**20, max_num_seqs=16, max_num_batched_tokens=256)
        b1 = (32, 4, 12)

    model, hf = build_models(shape, device, dtype, with_hf=not args.no_hf)
    prompts, out_lens = random_requests(n_req, lens, lens, shape["vocab_size"])
    results: dict = {"meta": meta, "model_shape": shape, "dtype": str(dtype).replace("torch.", ""),
                     "quick": small, "engine": engine_kw}

    llm = LLM(model, None, **engine_kw)
    results["kv_cache_blocks"] = llm.scheduler.block_manager.num_blocks
    results["cuda_graphs"] = llm.runner.graphs is not None
    warm = SamplingParams(temperature=0.6, max_tokens=8, ignore_eos=True)
    llm.generate(prompts[:4], warm, use_tqdm=False)
    params = [SamplingParams(temperature=0.6, max_tokens=n, ignore_eos=True, seed=i)
              for i, n in enumerate(out_lens)]
    llm.update_weights()          # clears the prefix cache: no run reuses another's prompts
    results["throughput"] = run_engine(llm, prompts, params)
    print(f"throughput: {results['throughput']['output_tokens_per_s']:.0f} output tok/s "
          f"({results['throughput']['output_tokens']} tokens in {results['throughput']['seconds']:.1f} s)")
    greedy = SamplingParams(temperature=0.0, max_tokens=hf_out, ignore_eos=True)
    llm.update_weights()
    results["vs_hf"] = {"output_len": hf_out, "sheep": run_engine(llm, prompts, greedy)}
    results["decode_b1"] = decode_batch1(llm, *b1)
    d = results["decode_b1"]
    print(f"decode batch 1: {d['seconds_per_step'] * 1e3:.2f} ms/step, "
          f"{d['roofline_fraction'] * 100:.0f}% of the bandwidth roofline "
          f"({d['copy_bandwidth_GBps']:.0f} GB/s copy)")
    if args.profile:
        trace = ROOT / "benchmarks" / "traces" / f"generation-trace-{device_slug(meta, device)}.json"
        trace.parent.mkdir(parents=True, exist_ok=True)
        results["profile"] = {"trace": str(trace), "top": profile(
            llm, prompts[:16], SamplingParams(temperature=0.6, max_tokens=64, ignore_eos=True), trace)}
    llm.close()
    del llm

    n, plen, slen, olen = prefix
    results["prefix"] = [prefix_sharing(model, None, n, plen, slen, olen, caching, engine_kw)
                         for caching in (True, False)]
    for r in results["prefix"]:
        print(f"prefix sharing ({n} x {plen}+{slen}, caching {r['prefix_caching']}): "
              f"{r['seconds']:.1f} s, {r['cached_prompt_tokens']} prompt tokens from cache")

    if hf is not None:
        try:
            results["vs_hf"]["transformers"] = run_hf(hf, prompts, hf_out, device)
        except Exception as e:  # noqa: BLE001 - record, do not lose the rest of the run
            results["vs_hf"]["transformers"] = {"error": f"{type(e).__name__}: {e}"}
    v = results["vs_hf"]
    line = f"vs transformers ({hf_out} new tokens each): sheep {v['sheep']['output_tokens_per_s']:.0f} tok/s"
    if "output_tokens_per_s" in v.get("transformers", {}):
        line += f", transformers {v['transformers']['method']} {v['transformers']['output_tokens_per_s']:.0f} tok/s"
    print(line)

    out = args.out or ROOT / "benchmarks" / "results" / f"generation-{device_slug(meta, device)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return results


if __name__ == "__main__":
    main()
