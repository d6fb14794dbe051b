"""Training FLOPs, MFU, memory, and the JSONL log + progress bar.

FLOPs of one optimizer step (what MFU counts; activation recomputation is not counted):

    matmuls    (4 N + 2 N_trainable) per token     N: weights of every matmul (q, k, v, o,
               forward 2N, input grads 2N,          gate, up, down in each layer, plus
               weight grads 2 N_trainable           lm_head; embedding lookups are free)
               (full fine-tuning: the usual 6 N)
    attention  6 L Hq D s^2 per sample of s tokens  causal: QK^T and PV each D s^2 per head
                                                    forward, backward twice that
                                                    (= 12 L H s per token for full attention)

MFU = step FLOPs / (step seconds x world size x peak dense bf16 FLOP/s of the device).
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import torch

from engine.config import ModelConfig

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


class TrainLogger:
    """One JSON line per step in train_log.jsonl and a tqdm bar, on rank 0 only."""

    def __init__(self, path: Path, enabled: bool, total_steps: int, first_step: int, progress: bool,
                 append: bool = False):
        self.enabled = enabled
        self.bar = None
        self.fh = None
        if not enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = path.open("a" if append else "w")     # a resumed run continues its log
        if progress:
            from tqdm import tqdm
            self.bar = tqdm(total=total_steps, initial=first_step, desc="train", unit="step",
                            dynamic_ncols=True)

    def event(self, **record) -> None:
        """A non-step record (run start, resume, data counts)."""
        if self.enabled:
            self.fh.write(json.dumps({"time": time.time(), **record}) + "\n")
            self.fh.flush()

    def step(self, record: dict) -> None:
        if not self.enabled:
            return
        self.fh.write(json.dumps(record) + "\n")
        self.fh.flush()
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{record['lr']:.2e}",
                                 tok_s=f"{record['tokens_per_s']:.0f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.fh is not None:
            self.fh.close()
