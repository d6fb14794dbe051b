"""Tiny random models in HF layout, for the default run and the tests.

    python -m engine.presets tiny OUT_DIR [--seed N] [--model-type qwen2|llama|qwen3]

writes config.json, model.safetensors, generation_config.json, tokenizer.json and
tokenizer_config.json (ChatML template). The directory loads through exactly the path a
real checkpoint does. The byte-level BPE tokenizer is trained on text we wrote
(engine/data/tiny_corpus.txt).
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Regex
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, processors, trainers

from engine.config import ModelConfig
from engine.model import CausalLM

CORPUS = Path(__file__).parent / "data" / "tiny_corpus.txt"
QWEN2_SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                       r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Qwen-style ChatML with a default system turn, as Qwen2.5 checkpoints ship it
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int,
                        split_pattern: str = QWEN2_SPLIT_PATTERN) -> HFTokenizer:
    """Byte-level BPE over `texts`; the special tokens get ids 0, 1, 2.

    split_pattern: the pre-tokenizer's regex (default Qwen2's, which splits digits one by
    one); BPE merges never cross the pieces it cuts."""
    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return tok


def train_tiny_tokenizer(vocab_size: int = 700) -> HFTokenizer:
    return train_bpe_tokenizer(CORPUS.read_text().splitlines(keepends=True), vocab_size)


def tiny_config(vocab_size: int, model_type: str = "qwen2", eos_ids: list[int] | None = None,
                **overrides) -> ModelConfig:
    d = dict(model_type=model_type, vocab_size=vocab_size, hidden_size=64, intermediate_size=160,
             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
             rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
             max_position_embeddings=4096, eos_token_id=eos_ids, torch_dtype="float32")
    d.update(overrides)
    return ModelConfig.from_hf_dict(d, source="tiny preset")


@torch.no_grad()
def random_init(model: CausalLM, seed: int, std: float = 0.02) -> None:
    """HF-style init (normal(0, std) weights, zero biases, unit norms), deterministic by seed."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.fill_(1.0)
        elif name.endswith(".bias"):
            p.zero_()
        else:
            p.copy_(torch.randn(p.shape, generator=gen) * std)


def eos_ids_of(tok: HFTokenizer) -> list[int]:
    """The preset tokenizers' end-of-sequence ids: <|endoftext|> (raw text), <|im_end|> (chat)."""
    return [tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")]


def write_tiny(out_dir: str | Path, seed: int = 0, model_type: str = "qwen2", **overrides) -> Path:
    tok = train_tiny_tokenizer()
    cfg = tiny_config(tok.get_vocab_size(), model_type, eos_ids_of(tok), **overrides)
    return write_random_model_dir(out_dir, tok, cfg, seed)


def write_random_model_dir(out_dir: str | Path, tok: HFTokenizer, cfg: ModelConfig, seed: int) -> Path:
    """An HF-layout directory: cfg's model with random_init(seed), tok, and a ChatML
    tokenizer_config whose context is cfg.max_position_embeddings."""
    from engine.checkpoint import save_pretrained

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    model = CausalLM(cfg)
    random_init(model, seed)
    save_pretrained(model, out)
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": cfg.max_position_embeddings,
               "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "bos_token": None,
               "unk_token": None, "add_bos_token": False, "chat_template": QWEN_CHAT_TEMPLATE}
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2))
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m engine.presets", description=__doc__.split("\n\n")[0])
    p.add_argument("preset", choices=["tiny"])
    p.add_argument("out_dir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model-type", default="qwen2", choices=["qwen2", "llama", "qwen3"])
    args = p.parse_args(argv)
    out = write_tiny(args.out_dir, seed=args.seed, model_type=args.model_type)
    print(f"wrote tiny {args.model_type} model to {out}")


if __name__ == "__main__":
    main()
