"""Training throughput: sheep-engine's trainer against a plain transformers + torch loop.

    python benchmarks/training.py                 # Qwen2.5-0.5B and 1.5B shapes (GPU)
    python benchmarks/training.py --quick         # 0.5B only, fewer steps
    python benchmarks/training.py --profile       # also a torch.profiler trace of the engine
                                                  # (benchmarks/traces/) and its top kernels
    python benchmarks/training.py                 # on a CPU: a tiny smoke run in seconds

Both sides train a random model of the given shape on the same random-text samples, in the
same micro-batches (the engine's packs of up to --seq-len tokens; the plain loop pads each
pack's samples to a [B, L] batch, the usual way without varlen attention). Both keep fp32
master weights and compute in bf16 (FSDP2 mixed precision vs torch.autocast) with fused
AdamW. Reported per side, after warmup steps: tokens/s (real tokens, not padding), MFU
(FLOPs as in engine/training/metrics.py, over the device's dense bf16 peak) and peak memory.
Results: benchmarks/results/training-<device>.json (device, versions, git commit).
"""
from __future__ import annotations

import argparse
import gc
import json
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine import ops  # noqa: E402
from engine.checkpoint import save_state_dict  # noqa: E402
from engine.config import ModelConfig  # noqa: E402
from engine.model import CausalLM  # noqa: E402
from engine.presets import CORPUS, random_init, tiny_config, write_tiny  # noqa: E402
from engine.tokenizer import Tokenizer, copy_tokenizer_files  # noqa: E402
from engine.training import TrainConfig, train  # noqa: E402
from engine.training.data import load_sft_samples  # noqa: E402
from engine.training.metrics import peak_flops, step_flops  # noqa: E402
from engine.training.packing import IGNORE_INDEX, PackSchedule, to_training_samples  # noqa: E402

VOCAB = 151936
SHAPES = {
    "qwen2.5-0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                         num_key_value_heads=2, head_dim=64, intermediate_size=4864, vocab_size=VOCAB),
    "qwen2.5-1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, head_dim=128, intermediate_size=8960, vocab_size=VOCAB),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=16, intermediate_size=160, vocab_size=700),
}
TRAINING_OPS = ("rms_norm", "add_rms_norm", "rope", "swiglu", "varlen_attention", "linear_cross_entropy")


def pick_ops_backend(choice: str) -> str:
    """Triton on CUDA when every op training needs is there (the kernels ship with autograd),
    else the torch references."""
    if choice == "auto":
        choice = "torch"
        if torch.cuda.is_available():
            try:
                ops.set_backend("triton")
                for name in TRAINING_OPS:
                    ops._impl(name)
                choice = "triton"
            except (ImportError, AttributeError) as e:
                print(f"Triton training ops unavailable ({e}); using the torch references")
    ops.set_backend(choice)
    return choice


def write_random_model(shape: dict, out: Path, tokenizer_dir: Path, device: torch.device) -> ModelConfig:
    """A random bf16 Qwen2-architecture checkpoint of the given shape, with the tiny tokenizer."""
    cfg = tiny_config(shape["vocab_size"], "qwen2", [0, 2], **{k: v for k, v in shape.items() if k != "vocab_size"},
                      max_position_embeddings=32768, rope_theta=1e6, torch_dtype="bfloat16")
    with torch.device("meta"):
        model = CausalLM(cfg)
    model.to_empty(device=device)
    random_init(model, seed=0)
    save_state_dict({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, cfg, out)
    copy_tokenizer_files(tokenizer_dir, out)
    del model
    return cfg


def write_random_data(path: Path, n: int, scale: float = 1.0, seed: int = 0) -> None:
    """Alpaca records of random corpus words: prompts ~30-250 words, answers ~60-900 words
    (x scale); with the tiny tokenizer that is ~280-2100 tokens, ~1200 on average."""
    words = CORPUS.read_text().split()
    rng = random.Random(seed)
    with path.open("w") as fh:
        for _ in range(n):
            instruction = " ".join(rng.choices(words, k=max(1, int(scale * rng.randint(30, 250)))))
            output = " ".join(rng.choices(words, k=max(1, int(scale * rng.randint(60, 900)))))
            fh.write(json.dumps({"instruction": instruction, "input": "", "output": output}) + "\n")


def summarize(steps: list[dict], peak: float | None) -> dict:
    """Totals over measured steps: each step dict has tokens, seconds, flops, peak_mem_gb."""
    seconds = sum(s["seconds"] for s in steps)
    flops = sum(s["flops"] for s in steps)
    mems = [s["peak_mem_gb"] for s in steps if s["peak_mem_gb"] is not None]
    return {"steps": len(steps), "tokens": sum(s["tokens"] for s in steps), "seconds": seconds,
            "tokens_per_s": sum(s["tokens"] for s in steps) / seconds,
            "mfu": flops / seconds / peak if peak else None,
            "peak_mem_gb": max(mems) if mems else None}


def run_engine(model_dir: Path, data: Path, out: Path, cfg: ModelConfig, args, profile_dir: Path | None) -> dict:
    tc = TrainConfig(model=str(model_dir), data=[str(data)], output=str(out), seq_len=args.seq_len,
                     prompt_format="raw", max_steps=args.warmup + args.steps, lr=1e-5, export=False,
                     progress=False, activation_checkpointing=args.ac)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    if profile_dir is None:
        train(tc)
    else:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            train(tc)
        trace = profile_dir / f"training-trace-{model_dir.name}-{device_slug()}.json"
        prof.export_chrome_trace(str(trace))
        print_top_kernels(prof)
        print(f"trace: {trace}")
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r][args.warmup:]
    peak = peak_flops(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    # the log's MFU is per step; recompute totals from its FLOPs = mfu x time x peak
    measured = [{"tokens": r["tokens"], "seconds": r["step_time_s"],
                 "flops": (r["mfu"] or 0.0) * r["step_time_s"] * (peak or 0.0),
                 "peak_mem_gb": r["peak_mem_gb"]} for r in steps]
    result = summarize(measured, peak)
    result["losses"] = [r["loss"] for r in steps]
    return result


def print_top_kernels(prof, n: int = 15) -> None:
    on_gpu = torch.cuda.is_available()
    for key in (("self_device_time_total", "self_cuda_time_total") if on_gpu else ("self_cpu_time_total",)):
        try:
            print(prof.key_averages().table(sort_by=key, row_limit=n))
            return
        except (AttributeError, KeyError, ValueError):
            continue


def run_plain_loop(model_dir: Path, data: Path, cfg: ModelConfig, args) -> dict:
    """transformers model (sdpa), fp32 weights + bf16 autocast, fused AdamW, padded batches of
    each pack's samples, loss summed over labelled tokens / their count."""
    import transformers

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_kw = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"   # renamed in 4.56
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, attn_implementation="sdpa", **{dtype_kw: torch.float32}).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95),
                            fused=device.type == "cuda")
    tok = Tokenizer.from_pretrained(model_dir)
    samples, _ = to_training_samples(load_sft_samples([data], tok, "raw"), args.seq_len)
    schedule = PackSchedule(samples, args.seq_len, seed=0, epochs=1, world_size=1, grad_accum=1,
                            filler_token=0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    steps = []
    for step in range(min(args.warmup + args.steps, schedule.total_steps)):
        batch = [samples[i] for i in schedule.step_layout(step)[0]]
        width = max(len(s) for s in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros(len(batch), width, dtype=torch.long)
        for row, s in enumerate(batch):
            ids[row, :len(s)] = torch.tensor(s.input_ids)
            labels[row, :len(s)] = torch.tensor(s.labels)
            mask[row, :len(s)] = 1
        ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            logits = model(input_ids=ids, attention_mask=mask).logits
        n_labels = (labels != IGNORE_INDEX).sum()
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="sum") / n_labels
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        del logits, loss
        if step >= args.warmup:
            lengths = [len(s) for s in batch]
            steps.append({"tokens": sum(lengths), "seconds": seconds, "flops": step_flops(cfg, lengths),
                          "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
                          "padding": len(batch) * width - sum(lengths)})
    result = summarize(steps, peak_flops(device))
    result["padding_fraction"] = sum(s["padding"] for s in steps) / max(1, sum(s["tokens"] + s["padding"] for s in steps))
    del model, opt
    return result


def device_slug() -> str:
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        m = re.search(r"(H100|H200|H800|A100|L40S|L4|A10G|4090|3090)", name)
        return (m.group(1) if m else re.sub(r"\W+", "-", name)).lower()
    return "cpu"


def environment() -> dict:
    def git(*a):
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except OSError:
            return None
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    import transformers
    return {"device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({platform.machine()})",
            "torch": torch.__version__, "triton": triton_version, "transformers": transformers.__version__,
            "cuda": torch.version.cuda, "git_commit": git("rev-parse", "HEAD"),
            "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="0.5B shape only, fewer steps")
    p.add_argument("--profile", action="store_true", help="write a torch.profiler trace of the engine run")
    p.add_argument("--models", default=None, help="comma list of " + ", ".join(SHAPES))
    p.add_argument("--steps", type=int, default=None, help="measured steps per side")
    p.add_argument("--warmup", type=int, default=None, help="steps before measuring")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per micro-batch (4096 on GPU)")
    p.add_argument("--ac", action="store_true", help="activation checkpointing in the engine")
    p.add_argument("--ops", default="auto", choices=["auto", "torch", "triton"])
    p.add_argument("--no-baseline", action="store_true", help="skip the transformers loop")
    args = p.parse_args(argv)
    gpu = torch.cuda.is_available()
    models = (args.models.split(",") if args.models else
              ["tiny"] if not gpu else ["qwen2.5-0.5b"] if args.quick else ["qwen2.5-0.5b", "qwen2.5-1.5b"])
    args.seq_len = args.seq_len or (4096 if gpu else 256)
    args.steps = args.steps or (4 if args.quick or not gpu else 10)
    args.warmup = args.warmup if args.warmup is not None else (2 if gpu else 1)
    backend = pick_ops_backend(args.ops)
    device = torch.device("cuda" if gpu else "cpu")
    results_dir = REPO / "benchmarks" / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    traces_dir = REPO / "benchmarks" / "traces"
    if args.profile:
        traces_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="sheep-train-bench-"))
    env = environment()
    print(f"{env['device']}  torch {env['torch']}  ops={backend}  seq_len={args.seq_len}  "
          f"steps={args.warmup}+{args.steps}")
    results = []
    try:
        tiny = write_tiny(work / "tokenizer")
        data = work / "data.jsonl"
        # samples sized for seq_len (~3 per pack); enough of them for every step
        write_random_data(data, n=6 * (args.warmup + args.steps + 2), scale=args.seq_len / 4096)
        for name in models:
            model_dir = work / name
            t0 = time.perf_counter()
            cfg = write_random_model(SHAPES[name], model_dir, tiny, device)
            print(f"\n{name}: wrote random checkpoint in {time.perf_counter() - t0:.1f}s")
            engine = run_engine(model_dir, data, work / f"run-{name}", cfg, args,
                                traces_dir if args.profile else None)
            gc.collect()
            if gpu:
                torch.cuda.empty_cache()
            row = {"model": name, "shape": SHAPES[name], "seq_len": args.seq_len, "engine": engine}
            if not args.no_baseline:
                row["transformers"] = run_plain_loop(model_dir, data, cfg, args)
                row["speedup_tokens_per_s"] = engine["tokens_per_s"] / row["transformers"]["tokens_per_s"]
                gc.collect()
                if gpu:
                    torch.cuda.empty_cache()
            results.append(row)
            for side in ("engine", "transformers"):
                if side in row:
                    r = row[side]
                    mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
                    mem = f"{r['peak_mem_gb']:.1f} GiB" if r["peak_mem_gb"] is not None else "n/a"
                    print(f"  {side:13s} {r['tokens_per_s']:10.0f} tok/s   MFU {mfu:>6s}   peak {mem}")
            shutil.rmtree(model_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = results_dir / f"training-{device_slug()}.json"
    out.write_text(json.dumps({"benchmark": "training", "environment": env, "ops_backend": backend,
                               "activation_checkpointing": args.ac, "warmup_steps": args.warmup,
                               "results": results}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
