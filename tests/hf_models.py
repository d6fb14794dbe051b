"""Random tiny Hugging Face checkpoints written by transformers itself, for reference tests."""
from __future__ import annotations

from pathlib import Path

import torch

# name -> (model_type, config kwargs); together they cover vocab not a multiple of 64,
# GQA ratios 1, 2 and 7, tied and untied embeddings, llama3 rope scaling, and qwen3's
# head_dim != hidden / heads with q/k norms.
TINY_CONFIGS = {
    "qwen2_gqa2_tied": ("qwen2", dict(vocab_size=250, hidden_size=64, intermediate_size=96,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      tie_word_embeddings=True, max_position_embeddings=256)),
    "llama_mha_untied": ("llama", dict(vocab_size=199, hidden_size=64, intermediate_size=80,
                                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                       tie_word_embeddings=False, max_position_embeddings=256,
                                       rope_theta=500000.0)),
    "llama3_scaled_gqa7": ("llama", dict(vocab_size=211, hidden_size=112, intermediate_size=96,
                                         num_hidden_layers=2, num_attention_heads=7, num_key_value_heads=1,
                                         tie_word_embeddings=False, max_position_embeddings=512,
                                         rope_theta=500000.0,
                                         rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                       "original_max_position_embeddings": 32})),
    "qwen3_headdim24": ("qwen3", dict(vocab_size=230, hidden_size=64, intermediate_size=96,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      head_dim=24, tie_word_embeddings=True, max_position_embeddings=256)),
}


def hf_config(name: str):
    import transformers

    model_type, kw = TINY_CONFIGS[name]
    cls = {"qwen2": transformers.Qwen2Config, "llama": transformers.LlamaConfig,
           "qwen3": transformers.Qwen3Config}[model_type]
    return cls(**kw, rms_norm_eps=1e-6, bos_token_id=1, eos_token_id=2, pad_token_id=0)


def write_hf_model(out_dir: Path, name: str, seed: int = 0, std: float = 0.08):
    """Save a random transformers model (every tensor random, norms and biases included)."""
    import transformers

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(hf_config(name), dtype=torch.float32,
                                                          attn_implementation="eager")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(std * torch.randn_like(p))
    model.save_pretrained(out_dir, safe_serialization=True)
    return model.eval()


def load_hf(out_dir: Path, dtype=torch.float32):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(
        out_dir, dtype=dtype, attn_implementation="eager").eval()
