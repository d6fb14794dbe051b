"""TrainConfig: every setting of a fine-tuning run, with `key=value` overrides and TOML files.

Values from the command line arrive as strings; `apply_overrides` converts each one to its
field's type (int, float, bool, str, list[str], or None for optional fields) and refuses
unknown keys with the closest known names.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import read_toml

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PROMPT_FORMATS = ("chat", "raw")
OVERLONG_POLICIES = ("truncate", "drop")
DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the key."""


@dataclass
class TrainConfig:
    # --- what to train and where to write ------------------------------------------------
    model: str = ""                       # HF checkpoint directory (weights + tokenizer)
    data: list[str] = field(default_factory=list)   # JSONL files (Alpaca or messages form)
    output: str = "train_out"             # run directory: checkpoints/, train_log.jsonl, model/
    # --- data ----------------------------------------------------------------------------
    prompt_format: str = "chat"           # "chat": tokenizer's template; "raw": base-model format
    seq_len: int = 4096                   # token budget of one packed micro-batch
    overlong: str = "truncate"            # a sample longer than seq_len: "truncate" | "drop"
    # --- length of the run ---------------------------------------------------------------
    epochs: int = 1
    max_steps: int | None = None          # cap on optimizer steps (the schedule plans for it)
    stop_at_step: int | None = None       # end this invocation after step N, as if interrupted
    grad_accum: int = 1                   # micro-batches per rank per optimizer step
    # --- optimizer -----------------------------------------------------------------------
    lr: float = 1e-5
    min_lr: float = 0.0                   # cosine decays to this
    warmup_steps: int = 0                 # linear warmup from lr/warmup_steps to lr
    weight_decay: float = 0.0             # never applied to norms, biases, other 1-D params
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0            # 0 turns clipping off (the norm is still logged)
    seed: int = 0
    # --- LoRA ----------------------------------------------------------------------------
    lora: bool = False
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    # --- memory and speed ----------------------------------------------------------------
    activation_checkpointing: bool = False
    compile: bool = False                 # torch.compile each decoder block
    param_dtype: str = "auto"             # compute dtype; auto: bfloat16 on CUDA, float32 on CPU
    device: str = "auto"                  # auto | cuda | cpu
    # --- checkpoints and export ----------------------------------------------------------
    checkpoint_every: int = 0             # steps between checkpoints; 0: only at stop_at_step
    keep_checkpoints: int = 2
    resume: bool = False                  # continue from the latest complete checkpoint
    overwrite: bool = False               # replace a finished run (model/, log) or checkpoints in output; wins over resume
    export: bool = True                   # write the HF-layout model to output/model
    export_dtype: str = "auto"            # auto: the source checkpoint's torch_dtype
    # --- logging -------------------------------------------------------------------------
    progress: bool = True                 # tqdm bar on rank 0
    log_every: int = 10                   # steps between reads of loss/grad norm from the device (one host sync each)
    tracker: str = "none"                 # experiment tracker: "none" | "tensorboard" | "wandb" (optional extras)
    cpu_threads: int = 0                  # torch threads when training on CPU; 0: $OMP_NUM_THREADS if set, else 1

    def __post_init__(self):
        # in-process callers may pass paths, and a single data file on its own
        self.model, self.output = str(self.model), str(self.output)
        if isinstance(self.data, (str, Path)):
            self.data = [self.data]
        self.data = [str(d) for d in self.data]

    def validate(self) -> None:
        def bad(key: str, why: str):
            raise ConfigError(f"setting '{key}' {why}")

        if not self.model:
            bad("model", "is required (an HF checkpoint directory)")
        if not self.data:
            bad("data", "is required (one or more JSONL files)")
        for key, choices in (("prompt_format", PROMPT_FORMATS), ("overlong", OVERLONG_POLICIES),
                             ("param_dtype", DTYPE_NAMES), ("export_dtype", DTYPE_NAMES),
                             ("device", ("auto", "cuda", "cpu")),
                             ("tracker", ("none", "tensorboard", "wandb"))):
            if getattr(self, key) not in choices:
                bad(key, f"= {getattr(self, key)!r}: expected one of {', '.join(choices)}")
        for key in ("seq_len", "epochs", "grad_accum", "lora_rank", "keep_checkpoints", "log_every"):
            if getattr(self, key) < 1:
                bad(key, f"must be >= 1, got {getattr(self, key)}")
        for key in ("max_steps", "stop_at_step"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                bad(key, f"must be >= 1 or none, got {getattr(self, key)}")
        for key in ("warmup_steps", "checkpoint_every", "weight_decay", "max_grad_norm", "min_lr",
                    "cpu_threads"):
            if getattr(self, key) < 0:
                bad(key, f"must be >= 0, got {getattr(self, key)}")
        if self.lr <= 0:
            bad("lr", f"must be positive, got {self.lr}")
        if not 0.0 <= self.lora_dropout < 1.0:
            bad("lora_dropout", f"must be in [0, 1), got {self.lora_dropout}")
        unknown = [t for t in self.lora_targets if t not in LORA_TARGETS]
        if self.lora and (unknown or not self.lora_targets):
            bad("lora_targets", f"= {self.lora_targets}: choose from {', '.join(LORA_TARGETS)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_TYPES = typing.get_type_hints(TrainConfig)


def apply_overrides(cfg: TrainConfig, overrides: list[str] | dict) -> TrainConfig:
    """A copy of cfg with `key=value` strings (or a {key: value} dict, as from TOML) applied."""
    items = overrides.items() if isinstance(overrides, dict) else [_split(o) for o in overrides]
    changes = {}
    for key, value in items:
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, _FIELDS, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(f"unknown setting '{key}'{hint} (known: {', '.join(_FIELDS)})")
        changes[key] = _convert(key, value, _TYPES[key])
    return dataclasses.replace(cfg, **changes)


def load_toml(path: str | Path) -> dict:
    """Settings from a TOML file: top-level keys, or those of a [train] table."""
    d = read_toml(path, ConfigError)
    return d.get("train", d)


def _split(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r} is not of the form key=value")
    return key.strip(), value.strip()


def _convert(key: str, value, tp):
    """Convert a string (or a TOML value) to the field type `tp`."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):   # X | None
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        tp = next(a for a in args if a is not type(None))
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in ("true", "1", "yes", "on"):
                return True
            if text in ("false", "0", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError("expected an integer")
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
        if typing.get_origin(tp) is list:
            if isinstance(value, str):
                text = value.strip()
                value = json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
            if not isinstance(value, list):
                raise ValueError("expected a list")
            return [str(v) for v in value]
    except (ValueError, TypeError, json.JSONDecodeError) as e:
        raise ConfigError(f"setting '{key}' = {value!r}: {e} (type {_type_name(tp)})") from None
    raise ConfigError(f"setting '{key}' has unsupported type {tp}")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))
