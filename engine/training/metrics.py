"""Training FLOPs, MFU, memory, and the metrics logger (JSONL log, progress bar, tracker).

FLOPs of one optimizer step (what MFU counts; activation recomputation is not counted):

    matmuls    (4 N + 2 N_trainable) per token     N: weights of every matmul (q, k, v, o,
               forward 2N, input grads 2N,          gate, up, down in each layer, plus
               weight grads 2 N_trainable           lm_head; embedding lookups are free)
               (full fine-tuning: the usual 6 N)
    attention  6 L Hq D s^2 per sample of s tokens  causal: QK^T and PV each D s^2 per head
                                                    forward, backward twice that
                                                    (= 12 L H s per token for full attention)

MFU = step FLOPs / (step seconds x world size x peak dense bf16 FLOP/s of the device).

Host syncs: a step's loss and gradient norm stay on the device until the logger reads them, at
the logging interval (and before a checkpoint and at the end), all steps of the window in
one copy. Seconds are measured per window, so a step's time, tokens/s and MFU in the log are
the averages of its window.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from engine.config import ModelConfig
from engine.tracking import Tracker

# dense bf16 tensor-core peak (no sparsity), FLOP/s, by a substring of the device name
PEAK_BF16_FLOPS = [
    ("H200", 989e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("H800", 989e12),
    ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10G", 70e12),
    ("4090", 165e12), ("3090", 71e12),
]


def peak_flops(device: torch.device) -> float | None:
    """Peak bf16 FLOP/s of one device, or None where unknown (CPU, unlisted GPUs)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, flops in PEAK_BF16_FLOPS:
        if key in name:
            return flops
    return None


def matmul_params(cfg: ModelConfig) -> int:
    """Weights that take part in a matmul per token: every layer's projections + lm_head."""
    q, kv = cfg.num_attention_heads * cfg.head_dim, cfg.num_key_value_heads * cfg.head_dim
    attn = cfg.hidden_size * (2 * q + 2 * kv)
    mlp = 3 * cfg.hidden_size * cfg.intermediate_size
    return cfg.num_hidden_layers * (attn + mlp) + cfg.vocab_size * cfg.hidden_size


def step_flops(cfg: ModelConfig, sample_lengths: list[int], adapter_params: int = 0,
               full_finetune: bool = True) -> float:
    """Training FLOPs of a step over samples of these lengths (see the module docstring).
    adapter_params: LoRA matrices (trainable, also matmuls); full_finetune=False: the base
    weights are frozen and get no weight gradient."""
    n = matmul_params(cfg)
    trainable = (n if full_finetune else 0) + adapter_params
    tokens = sum(sample_lengths)
    dense = (4 * (n + adapter_params) + 2 * trainable) * tokens
    attention = 6 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * \
        sum(s * s for s in sample_lengths)
    return float(dense + attention)


def peak_memory_gb(device: torch.device) -> float | None:
    """Peak allocated accelerator memory since start, GiB (None on CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def peak_rss_gb() -> float:
    """Peak resident memory of this process, GiB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / (2**30 if sys.platform == "darwin" else 2**20)


@dataclass
class StepFacts:
    """What the host knows of a step without asking the device (from the pack schedule)."""
    step: int                   # 1-based, the step just done
    epoch: int
    lr: float
    tokens: int                 # input tokens, all ranks
    loss_tokens: int            # of which carry a label: the loss divisor
    flops: float                # step_flops of the step


class MetricsLogger:
    """Collects each step's device scalars and reads them at the logging interval (all ranks
    call `read`: the losses are summed over ranks there); rank 0 writes one JSON line per step
    to train_log.jsonl, moves the tqdm bar and feeds the tracker."""

    def __init__(self, path: Path, ctx, total_steps: int, first_step: int, *, log_every: int,
                 peak_flops: float | None, progress: bool, tracker: Tracker, append: bool = False):
        self.ctx, self.log_every, self.peak = ctx, log_every, peak_flops
        self.tracker = tracker
        self.pending: list[tuple[StepFacts, torch.Tensor, torch.Tensor]] = []
        self.window_start = time.perf_counter()
        self.bar = self.fh = None
        if not ctx.is_main:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = path.open("a" if append else "w")     # a resumed run continues its log
        if progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=first_step, desc="train", unit="step",
                            dynamic_ncols=True)

    def due(self, step: int) -> bool:
        return step % self.log_every == 0

    def start_step(self) -> None:
        """Called before each step: a window's clock starts with its first step."""
        if not self.pending:
            self.window_start = time.perf_counter()

    def record(self, facts: StepFacts, loss_sum: torch.Tensor, grad_norm: torch.Tensor) -> None:
        """loss_sum: this rank's summed token loss of the step, grad_norm: the global norm;
        fp32 0-d device tensors, kept there (no sync) until `read`."""
        self.pending.append((facts, loss_sum, grad_norm))

    def read(self) -> list[dict]:
        """The window's per-step records, oldest first; one device->host copy (all ranks)."""
        if not self.pending:
            return []
        facts = [f for f, _, _ in self.pending]
        losses = self.ctx.all_reduce_sum(torch.stack([loss for _, loss, _ in self.pending]).float())
        norms = torch.stack([norm.float() for _, _, norm in self.pending])
        host = torch.stack([losses, norms], dim=1).tolist()       # waits for the window's work
        seconds = (time.perf_counter() - self.window_start) / len(facts)
        tokens_per_s = sum(f.tokens for f in facts) / (seconds * len(facts))
        mfu = (sum(f.flops for f in facts) / (seconds * len(facts) * self.ctx.world_size * self.peak)
               if self.peak else None)
        mem, rss = peak_memory_gb(self.ctx.device), peak_rss_gb()
        self.pending = []
        return [{**asdict(f), "loss": loss / max(f.loss_tokens, 1), "grad_norm": norm,
                 "step_time_s": seconds, "tokens_per_s": tokens_per_s, "mfu": mfu,
                 "peak_mem_gb": mem, "peak_rss_gb": rss}
                for f, (loss, norm) in zip(facts, host)]

    def write(self, records: list[dict]) -> None:
        """Log these step records (rank 0): JSON lines, progress bar, tracker."""
        if self.fh is None:
            return
        for r in records:
            self.fh.write(json.dumps(r) + "\n")
            self.tracker.log({f"train/{k}": r[k] for k in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu")},
                             r["step"])
        self.fh.flush()
        if self.bar is not None and records:
            last = records[-1]
            self.bar.update(len(records))
            self.bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}",
                                 tok_s=f"{last['tokens_per_s']:.0f}")

    def event(self, **record) -> None:
        """A non-step record (run start, resume, checkpoint, export, end)."""
        if self.fh is not None:
            self.fh.write(json.dumps({"time": time.time(), **record}) + "\n")
            self.fh.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.fh is not None:
            self.fh.close()
        self.tracker.close()
