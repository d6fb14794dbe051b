"""Hugging Face-layout checkpoints in and out: config.json + safetensors (one file or sharded).

Safetensors only: a pickle checkpoint can run code when loaded, so it is refused.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.config import ModelConfig
from engine.model import CausalLM

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
# tensors some checkpoints carry that the model rebuilds itself
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class CheckpointError(RuntimeError):
    """A checkpoint directory that cannot be loaded; the message names the file or tensor."""


def _parse_dtype(dtype: torch.dtype | str | None, cfg: ModelConfig) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    name = (dtype or cfg.torch_dtype or "float32").replace("torch.", "")
    table = {"float32": torch.float32, "float": torch.float32, "bfloat16": torch.bfloat16,
             "float16": torch.float16, "half": torch.float16}
    if name not in table:
        raise CheckpointError(f"unsupported dtype {name!r} (use float32, bfloat16 or float16)")
    return table[name]


def checkpoint_files(model_dir: Path) -> list[Path]:
    """The safetensors files of a checkpoint directory, in load order."""
    index = model_dir / INDEX_NAME
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise CheckpointError(f"{index}: malformed index ({e})") from None
        files = [model_dir / f for f in sorted(set(weight_map.values()))]
        for f in files:
            if not f.is_file():
                raise CheckpointError(f"{index}: lists shard {f.name}, which does not exist")
        return files
    single = model_dir / SINGLE_NAME
    if single.is_file():
        return [single]
    found = sorted(model_dir.glob("*.safetensors"))
    if found:
        return found
    pickles = sorted(p.name for p in model_dir.glob("*.bin")) + sorted(p.name for p in model_dir.glob("*.pt"))
    if pickles:
        raise CheckpointError(f"{model_dir}: only pickle weights ({', '.join(pickles)}); sheep-engine "
                              "loads safetensors only (convert with transformers' save_pretrained)")
    raise CheckpointError(f"{model_dir}: no safetensors weights found")


def read_safetensors(files: list[Path], device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt", device=str(device)) as fh:
                for name in fh.keys():
                    tensors[name] = fh.get_tensor(name)
        except Exception as e:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(f"{f}: cannot read safetensors file ({e}); "
                                  "is it truncated or corrupt?") from None
    return tensors


def load_model(path: str | os.PathLike, dtype: torch.dtype | str | None = None,
               device: str | torch.device = "cpu") -> CausalLM:
    """Load an HF checkpoint directory into our CausalLM.

    dtype: torch dtype or name; None takes config.json's torch_dtype. The model is built on the
    meta device and its parameters are the loaded tensors themselves (no second copy).
    """
    model_dir = Path(path)
    if not model_dir.is_dir():
        raise CheckpointError(f"model directory {model_dir} does not exist")
    cfg = ModelConfig.from_file(model_dir)
    dtype = _parse_dtype(dtype, cfg)
    tensors = read_safetensors(checkpoint_files(model_dir), device)
    with torch.device("meta"):
        model = CausalLM(cfg)
    state = _check_and_cast(model, tensors, dtype, model_dir)
    model.load_state_dict(state, strict=False, assign=True)
    if cfg.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.init_rope()
    model.eval()
    return model


def _check_and_cast(model: CausalLM, tensors: dict[str, torch.Tensor], dtype: torch.dtype,
                    model_dir: Path) -> dict[str, torch.Tensor]:
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        expected.pop("lm_head.weight", None)
        tensors.pop("lm_head.weight", None)   # some tied checkpoints store the copy too
    for k in [k for k in tensors if k.endswith(_IGNORED_SUFFIXES)]:
        tensors.pop(k)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing[:10])}" + (" ..." if len(missing) > 10 else ""))
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected[:10])}"
                        + (" ..." if len(unexpected) > 10 else ""))
    for k in sorted(set(expected) & set(tensors)):
        if tuple(tensors[k].shape) != tuple(expected[k]):
            problems.append(f"tensor {k} has shape {tuple(tensors[k].shape)}, "
                            f"config.json implies {tuple(expected[k])}")
    if problems:
        raise CheckpointError(f"{model_dir}: checkpoint does not match config.json: " + "; ".join(problems))
    return {k: v.to(dtype) for k, v in tensors.items()}


def _parse_size(size: int | str) -> int:
    if isinstance(size, int):
        return size
    s = size.strip().upper()
    for unit, mult in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3), ("B", 1)):
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * mult)
    return int(s)


def save_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig, out_dir: str | os.PathLike,
                    max_shard_size: int | str = "5GB") -> None:
    """Write config.json and safetensors (sharded with an index above max_shard_size).

    `state` uses HF names; tied lm_head.weight is dropped. Files are written under temporary
    names and renamed, so a killed save never leaves a half-written file under a real name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    dtype = next(iter(state.values())).dtype
    limit = _parse_size(max_shard_size)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name in sorted(state):
        nbytes = state[name].numel() * state[name].element_size()
        if shards[-1] and size + nbytes > limit:
            shards.append({})
            size = 0
        shards[-1][name] = state[name]
        size += nbytes
    hf_cfg = cfg.to_hf_dict()
    hf_cfg["torch_dtype"] = str(dtype).replace("torch.", "")
    _atomic_text(out / "config.json", json.dumps(hf_cfg, indent=2))
    if len(shards) == 1:
        _atomic_safetensors(shards[0], out / SINGLE_NAME)
        (out / INDEX_NAME).unlink(missing_ok=True)
        return
    weight_map = {}
    total = 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _atomic_safetensors(shard, out / fname)
        for name, t in shard.items():
            weight_map[name] = fname
            total += t.numel() * t.element_size()
    _atomic_text(out / INDEX_NAME, json.dumps({"metadata": {"total_size": total},
                                               "weight_map": weight_map}, indent=2))
    (out / SINGLE_NAME).unlink(missing_ok=True)


def save_pretrained(model: CausalLM, out_dir: str | os.PathLike, max_shard_size: int | str = "5GB",
                    tokenizer=None) -> None:
    """Save in HF layout (transformers' AutoModelForCausalLM loads it); with `tokenizer`
    (an engine.Tokenizer) its files are written beside the weights."""
    save_state_dict(model.state_dict(), model.config, out_dir, max_shard_size)
    cfg = model.config
    gen = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id or None}
    _atomic_text(Path(out_dir) / "generation_config.json", json.dumps(gen, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_safetensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)
