"""Hugging Face-layout checkpoints in and out: config.json + safetensors (one file or sharded).

Safetensors only: a pickle checkpoint can run code when loaded, so it is refused.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open

from engine.dtypes import dtype_of
from engine.files import file_mode
from engine.config import ModelConfig
from engine.model import CausalLM

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
# tensors some checkpoints carry that the model rebuilds itself
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


class CheckpointError(RuntimeError):
    """A checkpoint directory that cannot be loaded; the message names the file or tensor."""


def _parse_dtype(dtype: torch.dtype | str | None, cfg: ModelConfig) -> torch.dtype:
    try:
        return dtype_of(dtype or cfg.torch_dtype or "float32")
    except ValueError as e:
        raise CheckpointError(str(e)) from None


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


def save_state_dict(state: dict[str, torch.Tensor], cfg: ModelConfig, out_dir: str | os.PathLike,
                    max_shard_size: int | str = "5GB", tokenizer=None,
                    generation_config: dict | None = None) -> None:
    """Write an HF-layout directory: config.json, the weights, generation_config.json and, with
    `tokenizer` (an engine.Tokenizer), its tokenizer.json + tokenizer_config.json.

    `state` uses HF names. Weights go through huggingface_hub.save_torch_state_dict: one
    model.safetensors, or model-0000i-of-0000N.safetensors + model.safetensors.index.json above
    max_shard_size (int bytes or "5GB"-style). A tied lm_head.weight is dropped (the embedding
    holds it). The files are written into a temporary folder inside out_dir and moved into
    place, so a killed save never leaves a half-written file under a real name.
    generation_config: its JSON content; default the config's bos/eos ids.
    """
    from huggingface_hub import save_torch_state_dict

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu") for k, v in state.items()}
    if cfg.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    hf_cfg = cfg.to_hf_dict()
    hf_cfg["torch_dtype"] = str(next(iter(state.values())).dtype).replace("torch.", "")
    if generation_config is None:
        generation_config = {"bos_token_id": cfg.bos_token_id, "eos_token_id": cfg.eos_token_id or None}
    with tempfile.TemporaryDirectory(dir=out, prefix=".saving-") as tmp:
        save_torch_state_dict(state, tmp, max_shard_size=max_shard_size)
        (Path(tmp) / "config.json").write_text(json.dumps(hf_cfg, indent=2))
        (Path(tmp) / "generation_config.json").write_text(json.dumps(generation_config, indent=2))
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        # weights of an earlier save in the other layout (single vs sharded) must not linger
        for stale in [*out.glob("model*.safetensors"), out / INDEX_NAME]:
            stale.unlink(missing_ok=True)
        mode = file_mode()   # as a plain open() would: readable by a team, unlike 0600
        for f in Path(tmp).iterdir():
            os.chmod(f, mode)
            os.replace(f, out / f.name)


def save_pretrained(model: CausalLM, out_dir: str | os.PathLike, max_shard_size: int | str = "5GB",
                    tokenizer=None) -> None:
    """Save in HF layout (transformers' AutoModelForCausalLM loads it); with `tokenizer`
    (an engine.Tokenizer) its files are written beside the weights, so `LLM(out_dir)` can
    generate text. See save_state_dict for the files."""
    save_state_dict(model.state_dict(), model.config, out_dir, max_shard_size, tokenizer=tokenizer)
