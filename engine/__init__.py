"""sheep-engine: one model implementation for generation, self-scoring and fine-tuning.

Public API (stable names): load_model, save_pretrained, Tokenizer, LLM, SamplingParams.
Imports are lazy so that `import engine` stays cheap and the pieces load independently.
"""

_EXPORTS = {
    "load_model": "engine.checkpoint",
    "save_pretrained": "engine.checkpoint",
    "Tokenizer": "engine.tokenizer",
    "LLM": "engine.generation",
    "SamplingParams": "engine.generation",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
