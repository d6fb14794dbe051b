"""Training throughput: sheep-engine's trainer against a plain transformers loop, in one run.

    python3 benchmarks/training.py --out DIR --models 0.5b,1.5b   # GPU: Qwen2.5 shapes
    python3 benchmarks/training.py --out DIR --smoke              # CPU: tiny shape, seconds
    python3 benchmarks/training.py --out DIR --profile            # + a torch.profiler trace

Both sides train the same random model (weights written locally into a temp dir: Qwen2.5
0.5B/1.5B shapes, the tiny tokenizer) on the same random-text samples in the same
micro-batches: the engine's packs of up to --seq-len tokens, which the plain loop pads into a
[B, L] batch, the usual way without varlen attention. Both keep fp32 master weights, compute in
bf16 (the engine: FSDP2 mixed precision over NCCL; the loop: torch.autocast) and use AdamW
(fused on GPU). Reported per side over the steps after warmup: tokens/s (real tokens, not
padding), MFU (FLOPs as in engine/training/metrics.py over the device's dense bf16 peak) and
peak memory, then the engine/transformers ratios. Goal (issue 15): MFU >= 45% at 1.5B with
peak memory <= 0.6x transformers.

The JSON (DIR/training-<device>.json: device, versions, commit) is rewritten after every case,
so a run killed at its time limit keeps what it measured. A case that fails is recorded with
its error and the run goes on. --smoke runs the very same functions on the CPU (tiny shape,
fp32: no bf16 autocast on CPU), so a crash in them fails the test suite.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import environment  # noqa: E402
from engine import ops  # noqa: E402
from engine.checkpoint import save_state_dict  # noqa: E402
from engine.config import ModelConfig  # noqa: E402
from engine.model import CausalLM  # noqa: E402
from engine.presets import CORPUS, random_init, tiny_config, write_tiny  # noqa: E402
from engine.tokenizer import Tokenizer  # noqa: E402
from engine.training import TrainConfig, train  # noqa: E402
from engine.training.data import load_sft_samples  # noqa: E402
from engine.training.metrics import peak_flops, step_flops  # noqa: E402
from engine.training.packing import IGNORE_INDEX, PackSchedule, to_training_samples  # noqa: E402

VOCAB = 151936
SHAPES = {   # Qwen2.5 config.json values (tied embeddings, q/k/v bias)
    "0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14,
                 num_key_value_heads=2, head_dim=64, intermediate_size=4864, vocab_size=VOCAB),
    "1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12,
                 num_key_value_heads=2, head_dim=128, intermediate_size=8960, vocab_size=VOCAB),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 head_dim=16, intermediate_size=160, vocab_size=700),
}


# --- inputs --------------------------------------------------------------------------------
def write_random_model(shape: dict, out: Path, tokenizer: Tokenizer) -> ModelConfig:
    """A random bf16 Qwen2-architecture checkpoint of the given shape, with the tiny tokenizer."""
    cfg = tiny_config(shape["vocab_size"], "qwen2", [0, 2],
                      **{k: v for k, v in shape.items() if k != "vocab_size"},
                      max_position_embeddings=32768, rope_theta=1e6, torch_dtype="bfloat16")
    with torch.device("meta"):
        model = CausalLM(cfg)
    model.to_empty(device="cpu")
    random_init(model, seed=0)
    save_state_dict({k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}, cfg, out,
                    tokenizer=tokenizer)
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


def summarize(tokens: int, flops: float, seconds: float, steps: int, peak_mem_gb: float | None,
              device: torch.device) -> dict:
    peak = peak_flops(device)
    return {"steps": steps, "tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "mfu": flops / seconds / peak if peak else None, "peak_mem_gb": peak_mem_gb}


def _peak_mem_gb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


# --- the two sides -------------------------------------------------------------------------
def run_engine(model_dir: Path, data: Path, out: Path, args, device: torch.device) -> dict:
    """engine.training.train for warmup + steps steps; its log is read back. The log's timings
    are per window of log_every steps, so log_every divides both warmup and steps and the
    warmup window stays out of the measurement."""
    log_every = math.gcd(args.warmup, args.steps)
    tc = TrainConfig(model=str(model_dir), data=[str(data)], output=str(out), seq_len=args.seq_len,
                     prompt_format="raw", max_steps=args.warmup + args.steps, lr=1e-5, export=False,
                     progress=False, activation_checkpointing=args.ac, log_every=log_every,
                     device=device.type, overwrite=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if args.profile:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as prof:
            result = train(tc)
        trace = args.out / f"training-trace-{model_dir.name}-{device_slug()}.json"
        prof.export_chrome_trace(str(trace))
        sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=sort, row_limit=15))
    else:
        result = train(tc)
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r][args.warmup:]
    if len(steps) != args.steps:
        raise RuntimeError(f"engine ran {result.steps} steps; {args.warmup} + {args.steps} were asked "
                           "(too little data for the steps?)")
    summary = summarize(sum(r["tokens"] for r in steps), sum(r["flops"] for r in steps),
                        sum(r["step_time_s"] for r in steps), len(steps),
                        _peak_mem_gb(device), device)
    first_loss = next(r["loss"] for r in log if "loss" in r)
    return {**summary, "first_loss": first_loss, "losses": [r["loss"] for r in steps], "log_every": log_every,
            "fsdp2": True, "process_group": "nccl" if device.type == "cuda" else "gloo",
            "fused_adamw": device.type == "cuda", "ops_backend": ops.backend(torch.empty(0, device=device))}


def run_transformers(model_dir: Path, data: Path, cfg: ModelConfig, args, device: torch.device) -> dict:
    """transformers model (sdpa), fp32 weights + bf16 autocast on GPU, AdamW (fused on GPU),
    padded batches of the engine's packs, loss summed over labelled tokens / their count; the
    measured steps are timed together with one sync at the end, as the engine is."""
    import transformers

    major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
    dtype_kw = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"   # renamed in 4.56
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, attn_implementation="sdpa", **{dtype_kw: torch.float32}).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95), fused=device.type == "cuda")
    tok = Tokenizer.from_pretrained(model_dir)
    samples, _ = to_training_samples(load_sft_samples([data], tok, "raw"), args.seq_len)
    schedule = PackSchedule(samples, args.seq_len, seed=0, epochs=1, world_size=1, grad_accum=1,
                            filler_token=0)
    if schedule.total_steps < args.warmup + args.steps:
        raise RuntimeError(f"the data holds {schedule.total_steps} steps, fewer than asked")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    tokens = flops = padding = 0
    first_loss = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
        batch = [samples[i] for i in schedule.step_layout(step)[0]]
        ids, labels, mask = padded_batch(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(input_ids=ids, attention_mask=mask).logits
        n_labels = (labels != IGNORE_INDEX).sum()
        loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="sum") / n_labels
        loss.backward()
        if step == 0 and args.warmup:       # the same first batch as the engine's (read in warmup)
            first_loss = loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        del logits, loss
        if step >= args.warmup:
            lengths = [len(s) for s in batch]
            tokens += sum(lengths)
            flops += step_flops(cfg, lengths)
            padding += ids.numel() - sum(lengths)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result = summarize(tokens, flops, time.perf_counter() - t0, args.steps, _peak_mem_gb(device), device)
    result["padding_fraction"] = padding / (tokens + padding)
    result["first_loss"] = first_loss
    del model, opt
    return result


def padded_batch(batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Samples -> (input_ids, labels, attention_mask) [B, L], right-padded to the longest."""
    width = max(len(s) for s in batch)
    ids = torch.zeros(len(batch), width, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros(len(batch), width, dtype=torch.long)
    for row, s in enumerate(batch):
        ids[row, :len(s)] = torch.tensor(s.input_ids)
        labels[row, :len(s)] = torch.tensor(s.labels)
        mask[row, :len(s)] = 1
    return ids.to(device), labels.to(device), mask.to(device)


# --- the run -------------------------------------------------------------------------------
def device_slug() -> str:
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        m = re.search(r"(H100|H200|H800|A100|L40S|L4|A10G|4090|3090)", name)
        return (m.group(1) if m else re.sub(r"\W+", "-", name)).lower()
    return "cpu"


def ratios(row: dict) -> dict:
    """engine / transformers for the figures the goals name, where both sides measured them."""
    e, t = row.get("engine", {}), row.get("transformers", {})
    out = {}
    for key, name in (("tokens_per_s", "speedup_tokens_per_s"), ("peak_mem_gb", "memory_ratio"),
                      ("mfu", "mfu_ratio")):
        if e.get(key) and t.get(key):
            out[name] = e[key] / t[key]
    return out


def run_case(row: dict, side: str, fn) -> None:
    """Run one side of one model; a failure is recorded (with its traceback tail), not raised."""
    try:
        row[side] = fn()
    except Exception as e:      # noqa: BLE001 - one failed case must not lose the others
        traceback.print_exc()
        row[side] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
    finally:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the JSON (written after every case)")
    p.add_argument("--models", default="0.5b,1.5b", help="comma list of " + ", ".join(SHAPES))
    p.add_argument("--smoke", action="store_true", help="CPU, tiny shape, a few steps (the test suite)")
    p.add_argument("--steps", type=int, default=None, help="measured steps per side (GPU 10, smoke 2)")
    p.add_argument("--warmup", type=int, default=None, help="steps before measuring (GPU 2, smoke 1)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per micro-batch (GPU 4096, smoke 256)")
    p.add_argument("--ac", action="store_true", help="activation checkpointing in the engine")
    p.add_argument("--no-baseline", action="store_true", help="skip the transformers loop")
    p.add_argument("--profile", action="store_true", help="torch.profiler trace of the engine run into --out")
    args = p.parse_args(argv)
    if args.smoke:
        device, models = torch.device("cpu"), ["tiny"]
    elif torch.cuda.is_available():
        device, models = torch.device("cuda"), args.models.split(",")
    else:
        p.error("no CUDA device: pass --smoke for the CPU run")
    unknown = [m for m in models if m not in SHAPES]
    if unknown:
        p.error(f"--models: unknown {unknown}; choose from {', '.join(SHAPES)}")
    gpu = device.type == "cuda"
    args.seq_len = args.seq_len or (4096 if gpu else 256)
    args.steps = args.steps or (10 if gpu else 2)
    args.warmup = args.warmup if args.warmup is not None else (2 if gpu else 1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"training-{device_slug() if gpu else 'cpu-smoke'}.json"
    import transformers
    payload = {"benchmark": "training", "environment": {**environment(), "transformers": transformers.__version__},
               "device_type": device.type,
               "seq_len": args.seq_len, "warmup_steps": args.warmup, "measured_steps": args.steps,
               "activation_checkpointing": args.ac,
               "goal": "1.5b: engine MFU >= 0.45 and peak memory <= 0.6x transformers", "results": []}
    print(f"{payload['environment']['device']}  torch {torch.__version__}  seq_len={args.seq_len}  "
          f"steps={args.warmup}+{args.steps}")
    work = Path(tempfile.mkdtemp(prefix="sheep-train-bench-"))
    try:
        tokenizer = Tokenizer.from_pretrained(write_tiny(work / "tokenizer"))
        data = work / "data.jsonl"
        # samples sized for seq_len (~3 per pack); enough of them for every step
        write_random_data(data, n=6 * (args.warmup + args.steps + 2), scale=args.seq_len / 4096)
        for name in models:
            model_dir = work / name
            t0 = time.perf_counter()
            cfg = write_random_model(SHAPES[name], model_dir, tokenizer)
            row = {"model": name, "shape": SHAPES[name], "checkpoint_write_s": time.perf_counter() - t0}
            payload["results"].append(row)
            run_case(row, "engine", lambda: run_engine(model_dir, data, work / f"run-{name}", args, device))
            _write(path, payload)
            if not args.no_baseline:
                run_case(row, "transformers", lambda: run_transformers(model_dir, data, cfg, args, device))
                row.update(ratios(row))
                _write(path, payload)
            _print_row(row)
            shutil.rmtree(model_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nwrote {path}")
    failed = [f"{r['model']}/{side}" for r in payload["results"] for side in ("engine", "transformers")
              if "error" in r.get(side, {})]
    if failed:
        print(f"failed cases: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _write(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    tmp.replace(path)


def _print_row(row: dict) -> None:
    print(f"\n{row['model']}:")
    for side in ("engine", "transformers"):
        r = row.get(side)
        if r is None:
            continue
        if "error" in r:
            print(f"  {side:13s} FAILED {r['error']}")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_mem_gb']:.1f} GiB" if r["peak_mem_gb"] is not None else "n/a"
        print(f"  {side:13s} {r['tokens_per_s']:10.0f} tok/s   MFU {mfu:>6s}   peak {mem}")
    for key in ("speedup_tokens_per_s", "memory_ratio", "mfu_ratio"):
        if key in row:
            print(f"  {key}: {row[key]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
