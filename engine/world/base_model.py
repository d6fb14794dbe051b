"""The world's starting point: the world tokenizer and a small random Qwen2-architecture
model directory (HF layout) that pretraining starts from.

    write_world_base_dir("world_init", seed=0, size="small")
"""

from __future__ import annotations

from pathlib import Path

from engine.config import ModelConfig
from engine.presets import eos_ids_of, write_random_model_dir
from engine.world.corpus import CorpusSettings, corpus_documents
from engine.world.tokenizer import train_world_tokenizer

# tokens: a task-list document (the loop's meta-prompt, 5 seeds, ~10 new tasks) takes ~580
CONTEXT = 1024

# hidden, layers, heads, kv heads, head_dim, intermediate
WORLD_SIZES = {
    "test": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, intermediate_size=160),
    "small": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=32, intermediate_size=384),
}


def world_config(vocab_size: int, eos_ids: list[int], size: str = "small") -> ModelConfig:
    if size not in WORLD_SIZES:
        raise ValueError(f"size must be one of {sorted(WORLD_SIZES)}, got {size!r}")
    d = dict(model_type="qwen2", vocab_size=vocab_size, rope_theta=10000.0, rms_norm_eps=1e-6,
             tie_word_embeddings=True, max_position_embeddings=CONTEXT, eos_token_id=eos_ids,
             torch_dtype="float32", **WORLD_SIZES[size])
    return ModelConfig.from_hf_dict(d, source=f"world preset {size!r}")


def write_world_base_dir(out_dir: str | Path, seed: int = 0, size: str = "small",
                         tokenizer_docs: int = 3000) -> Path:
    """config.json, model.safetensors (random init by seed), generation_config.json,
    tokenizer.json and tokenizer_config.json of a world model; the tokenizer is trained on
    `tokenizer_docs` corpus documents."""
    docs = corpus_documents(CorpusSettings(n_docs=tokenizer_docs), seed=seed)
    tok = train_world_tokenizer(d["prompt"] + d["completion"] for d in docs)
    return write_random_model_dir(out_dir, tok, world_config(tok.get_vocab_size(), eos_ids_of(tok), size), seed)
