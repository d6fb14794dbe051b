"""TrainConfig: every setting of a fine-tuning run, on the project's one settings system
(engine.settings): typed fields with help text and bounds, `key=value` overrides and TOML
files, checked when read.

TrainHyperparams holds what shapes the training itself; the I-SHEEP loop's [training]
section takes the same fields, so `training.lr=1e-4` in a loop config is checked exactly as
`lr=1e-4` on `python -m engine.train`. TrainConfig adds what one run trains on and where it
writes.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from engine.settings import (SettingsError, apply_mapping, apply_overrides as _apply_overrides,
                             check, read_toml, setting)

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PROMPT_FORMATS = ("chat", "raw")
OVERLONG_POLICIES = ("truncate", "drop")
DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")

ConfigError = SettingsError     # one error type for every setting in the project


@dataclass
class TrainHyperparams:
    """How to train (shared by `python -m engine.train` and the loop's [training])."""
    # --- data ----------------------------------------------------------------------------
    prompt_format: str = setting("chat", "chat: the tokenizer's template; raw: the base-model "
                                 "text format", choices=PROMPT_FORMATS)
    seq_len: int = setting(4096, "token budget of one packed micro-batch (the batch is a token "
                           "budget, not a count of samples)", ge=1)
    overlong: str = setting("truncate", "a sample longer than seq_len", choices=OVERLONG_POLICIES)
    # --- length of the run ---------------------------------------------------------------
    epochs: int = setting(1, "passes over the data", ge=1)
    max_steps: int | None = setting(None, "cap on optimizer steps (the schedule plans for it)", ge=1)
    grad_accum: int = setting(1, "micro-batches per rank per optimizer step", ge=1)
    # --- optimizer -----------------------------------------------------------------------
    lr: float = setting(1e-5, "peak learning rate", gt=0)
    min_lr: float = setting(0.0, "the cosine decays to this", ge=0)
    warmup_steps: int = setting(0, "linear warmup steps from lr/warmup_steps to lr", ge=0)
    weight_decay: float = setting(0.0, "AdamW decay; never on norms, biases, other 1-D params", ge=0)
    adam_beta1: float = setting(0.9, "AdamW beta1", ge=0, lt=1)
    adam_beta2: float = setting(0.95, "AdamW beta2", ge=0, lt=1)
    adam_eps: float = setting(1e-8, "AdamW epsilon", gt=0)
    max_grad_norm: float = setting(1.0, "gradient clipping norm; 0 turns clipping off", ge=0)
    # --- LoRA (used when LoRA is on) -----------------------------------------------------
    lora_rank: int = setting(8, "LoRA rank", ge=1)
    lora_alpha: float = setting(16.0, "LoRA scale numerator (scale = alpha / rank)", gt=0)
    lora_dropout: float = setting(0.0, "dropout on the LoRA input", ge=0, lt=1)
    lora_targets: list[str] = setting(list(LORA_TARGETS), "projections that get adapters",
                                      choices=LORA_TARGETS)
    # --- memory and speed ----------------------------------------------------------------
    activation_checkpointing: bool = setting(False, "recompute block activations in backward")
    compile: bool = setting(False, "torch.compile each decoder block")
    param_dtype: str = setting("auto", "compute dtype; auto: bfloat16 on CUDA, float32 on CPU",
                               choices=DTYPE_NAMES)
    # --- checkpoints and export ----------------------------------------------------------
    checkpoint_every: int = setting(0, "steps between checkpoints; 0: only at stop_at_step", ge=0)
    keep_checkpoints: int = setting(2, "checkpoints kept on disk", ge=1)
    export_dtype: str = setting("auto", "dtype of the exported model; auto: the source's "
                                "torch_dtype", choices=DTYPE_NAMES)


@dataclass
class TrainConfig(TrainHyperparams):
    """One fine-tuning run: what to train, on what, where to write."""
    model: str = setting("", "HF checkpoint directory to start from (weights + tokenizer)", path=True)
    data: list[str] = setting([], "JSONL files (Alpaca, messages, prompt/completion or text records)")
    output: str = setting("train_out", "run directory: checkpoints/, train_log.jsonl, model/", path=True)
    seed: int = setting(0, "data order and adapter init")
    device: str = setting("auto", "where to train", choices=("auto", "cuda", "cpu"))
    lora: bool = setting(False, "train LoRA adapters (merged at export) instead of all weights")
    stop_at_step: int | None = setting(None, "end this invocation after step N, as if interrupted",
                                       ge=1, mutable=True)
    resume: bool = setting(False, "continue from the latest complete checkpoint", mutable=True)
    export: bool = setting(True, "write the HF-layout model to output/model")
    progress: bool = setting(True, "tqdm bar on rank 0", mutable=True)

    def __post_init__(self):
        # in-process callers may pass paths, and a single data file on its own
        self.model, self.output = str(self.model), str(self.output)
        if isinstance(self.data, (str, Path)):
            self.data = [self.data]
        self.data = [str(d) for d in self.data]

    def validate(self) -> None:
        """Types, choices and bounds (engine.settings.check), then what needs two fields."""
        check(self)
        if not self.model:
            raise ConfigError("setting 'model' is required (an HF checkpoint directory)")
        if not self.data:
            raise ConfigError("setting 'data' is required (one or more JSONL files)")
        if self.lora and not self.lora_targets:
            raise ConfigError(f"setting 'lora_targets' is empty: choose from {', '.join(LORA_TARGETS)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def hyperparams_of(settings) -> dict:
    """The TrainHyperparams fields of any settings object that has them, as kwargs."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(TrainHyperparams)}


def apply_overrides(cfg: TrainConfig, overrides: list[str] | dict, source: str = "command line") -> TrainConfig:
    """A copy of cfg with `key=value` strings (or a {key: value} dict, as from TOML) applied."""
    cfg = dataclasses.replace(cfg)
    if isinstance(overrides, dict):
        apply_mapping(cfg, overrides, source)
    else:
        _apply_overrides(cfg, overrides, source=source)
    cfg.__post_init__()
    return cfg


def load_toml(path: str | Path) -> dict:
    """Settings from a TOML file: top-level keys, or those of a [train] table."""
    d = read_toml(path)
    return d.get("train", d)
