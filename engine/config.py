"""ModelConfig: the architecture of a Qwen2 / Llama / Qwen3 checkpoint, read from HF config.json."""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

SUPPORTED_MODEL_TYPES = ("qwen2", "llama", "qwen3")


class ConfigError(ValueError):
    """A config.json that this engine cannot run; the message names the file and field."""


@dataclass
class ModelConfig:
    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 4096
    attention_bias: bool = False      # q/k/v projections carry a bias (Qwen2)
    qk_norm: bool = False             # per-head RMSNorm on q and k before RoPE (Qwen3)
    bos_token_id: int | None = None
    eos_token_id: list[int] = field(default_factory=list)
    torch_dtype: str = "float32"
    source: str = "<dict>"            # where it came from, for error messages

    @classmethod
    def from_hf_dict(cls, d: dict, source: str = "<dict>") -> "ModelConfig":
        def need(key: str):
            if key not in d or d[key] is None:
                raise ConfigError(f"{source}: missing required field '{key}'")
            return d[key]

        model_type = d.get("model_type")
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ConfigError(f"{source}: unsupported model_type {model_type!r} "
                              f"(supported: {', '.join(SUPPORTED_MODEL_TYPES)})")
        heads = need("num_attention_heads")
        hidden = need("hidden_size")
        kv_heads = d.get("num_key_value_heads") or heads
        head_dim = d.get("head_dim") or hidden // heads
        eos = d.get("eos_token_id")
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        if model_type == "qwen2":
            attention_bias = True     # Qwen1.5/2/2.5 always have q/k/v bias
        else:
            attention_bias = bool(d.get("attention_bias", False))
        if d.get("mlp_bias"):
            raise ConfigError(f"{source}: field 'mlp_bias' = true is not supported")
        cfg = cls(
            model_type=model_type,
            vocab_size=need("vocab_size"),
            hidden_size=hidden,
            intermediate_size=need("intermediate_size"),
            num_hidden_layers=need("num_hidden_layers"),
            num_attention_heads=heads,
            num_key_value_heads=kv_heads,
            head_dim=head_dim,
            rope_theta=float(d.get("rope_theta", (d.get("rope_parameters") or {}).get("rope_theta", 10000.0))),
            rope_scaling=_rope_scaling(d),
            rms_norm_eps=float(d.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            max_position_embeddings=int(d.get("max_position_embeddings", 4096)),
            attention_bias=attention_bias,
            qk_norm=model_type == "qwen3",
            bos_token_id=d.get("bos_token_id"),
            eos_token_id=eos,
            torch_dtype=str(d.get("torch_dtype") or d.get("dtype") or "float32"),
            source=source,
        )
        cfg.validate()
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ConfigError(f"{path}: no config.json found")
        try:
            d = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None
        return cls.from_hf_dict(d, source=str(path))

    def validate(self) -> None:
        def bad(fld: str, why: str):
            raise ConfigError(f"{self.source}: field '{fld}' {why}")

        for fld in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                    "num_attention_heads", "num_key_value_heads", "head_dim"):
            v = getattr(self, fld)
            if not isinstance(v, int) or v <= 0:
                bad(fld, f"must be a positive integer, got {v!r}")
        if self.num_attention_heads % self.num_key_value_heads:
            bad("num_key_value_heads", f"= {self.num_key_value_heads} does not divide "
                f"num_attention_heads = {self.num_attention_heads}")
        if self.head_dim % 2:
            bad("head_dim", f"= {self.head_dim} must be even for rotary embeddings")
        if self.rope_theta <= 0:
            bad("rope_theta", "must be positive")
        if self.rms_norm_eps <= 0:
            bad("rms_norm_eps", "must be positive")

    def to_hf_dict(self) -> dict:
        """config.json content that transformers reads back into the same architecture."""
        arch = {"qwen2": "Qwen2ForCausalLM", "llama": "LlamaForCausalLM", "qwen3": "Qwen3ForCausalLM"}
        d = {
            "architectures": [arch[self.model_type]],
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "rope_theta": self.rope_theta,
            "rope_scaling": self.rope_scaling,
            "rms_norm_eps": self.rms_norm_eps,
            "tie_word_embeddings": self.tie_word_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id[0] if len(self.eos_token_id) == 1 else (self.eos_token_id or None),
            "torch_dtype": self.torch_dtype,
            "use_cache": True,
        }
        if self.model_type == "llama":
            d["attention_bias"] = self.attention_bias
            d["mlp_bias"] = False
        if self.model_type in ("qwen2", "qwen3"):
            d["use_sliding_window"] = False
            d["sliding_window"] = None
        if self.model_type == "qwen3":
            d["attention_bias"] = False
        return d

    def as_dict(self) -> dict:
        return asdict(self)


def _rope_scaling(d: dict) -> dict | None:
    """Normalise rope scaling; only the llama3 rule (Llama 3.1) and none are supported."""
    rs = d.get("rope_scaling")
    if rs is None and isinstance(d.get("rope_parameters"), dict):   # transformers 5 layout
        rs = d["rope_parameters"] if d["rope_parameters"].get("rope_type", "default") != "default" else None
    if not rs:
        return None
    kind = rs.get("rope_type", rs.get("type"))
    if kind in (None, "default"):
        return None
    if kind != "llama3":
        raise ConfigError(f"field 'rope_scaling' of type {kind!r} is not supported (only 'llama3')")
    for key in ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"):
        if key not in rs:
            raise ConfigError(f"field 'rope_scaling' of type llama3 lacks '{key}'")
    return {"rope_type": "llama3", "factor": float(rs["factor"]),
            "low_freq_factor": float(rs["low_freq_factor"]),
            "high_freq_factor": float(rs["high_freq_factor"]),
            "original_max_position_embeddings": int(rs["original_max_position_embeddings"])}


def rope_inv_freq(cfg: ModelConfig):
    """Inverse frequencies [head_dim/2] (fp32), with llama3 scaling applied when configured."""
    import torch

    dim = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    rs = cfg.rope_scaling
    if rs is None:
        return inv_freq
    # Llama 3.1: keep high frequencies, divide low ones by `factor`, interpolate between.
    factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old_ctx = rs["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)
