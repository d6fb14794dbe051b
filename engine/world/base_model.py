"""The world's starting point: a byte-level BPE tokenizer trained on world text, and a small
random Qwen2-architecture model directory (HF layout) that pretraining starts from.

    write_world_base_dir("world_base", seed=0, size="small")

The tokenizer follows engine.presets (Qwen2's pre-tokenizer: digits split one by one, then
byte level; special tokens <|endoftext|>, <|im_start|>, <|im_end|>; ChatML template), but is
trained on world documents, so each vocabulary word and every fixed phrase of the loop's
prompts gets few tokens and a task-list document fits the 512-token context.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from engine.config import ModelConfig
from engine.presets import eos_ids_of, train_bpe_tokenizer, write_random_model_dir
from engine.world.corpus import CorpusSettings, corpus_documents

CONTEXT = 512  # tokens: what the documents are built to fit and the model is trained on

# hidden, layers, heads, kv heads, head_dim, intermediate
WORLD_SIZES = {
    "test": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, intermediate_size=160),
    "small": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, intermediate_size=384),
    "base": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=64, intermediate_size=768),
}


def train_world_tokenizer(texts: Iterable[str], vocab_size: int = 1500) -> HFTokenizer:
    """Byte-level BPE over `texts`; the three special tokens get ids 0, 1, 2."""
    return train_bpe_tokenizer(texts, vocab_size)


def world_tokenizer(vocab_size: int = 1500, n_docs: int = 3000, seed: int = 0) -> HFTokenizer:
    """The world tokenizer, trained on n_docs corpus documents of the default mix."""
    docs = corpus_documents(n_docs, seed=seed, settings=CorpusSettings())
    return train_world_tokenizer((d["text"] for d in docs), vocab_size)


def world_config(vocab_size: int, eos_ids: list[int], size: str = "small",
                 **overrides) -> ModelConfig:
    if size not in WORLD_SIZES:
        raise ValueError(f"size must be one of {sorted(WORLD_SIZES)}, got {size!r}")
    d = dict(model_type="qwen2", vocab_size=vocab_size, rope_theta=10000.0, rms_norm_eps=1e-6,
             tie_word_embeddings=True, max_position_embeddings=CONTEXT, eos_token_id=eos_ids,
             torch_dtype="float32", **WORLD_SIZES[size])
    d.update(overrides)
    return ModelConfig.from_hf_dict(d, source=f"world preset {size!r}")


def write_world_base_dir(out_dir: str | Path, seed: int = 0, size: str = "small",
                         vocab_size: int = 1500, tokenizer_docs: int = 3000,
                         **config_overrides) -> Path:
    """Write config.json, model.safetensors (random init by seed), generation_config.json,
    tokenizer.json and tokenizer_config.json for a world model of the given size.

    The tokenizer is trained on `tokenizer_docs` corpus documents drawn with `seed`.
    """
    tok = world_tokenizer(vocab_size, tokenizer_docs, seed)
    cfg = world_config(tok.get_vocab_size(), eos_ids_of(tok), size, **config_overrides)
    return write_random_model_dir(out_dir, tok, cfg, seed)
