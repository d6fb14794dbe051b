from setuptools import find_packages, setup

setup(
    name="sheep-engine",
    version="0.1.0",
    description="A from-scratch LLM engine for I-SHEEP iterative self-alignment",
    python_requires=">=3.10",
    packages=find_packages(include=["engine", "engine.*", "kernels", "kernels.*"]),
    package_data={"engine": ["data/*"], "engine.eval": ["data/*.jsonl"],
                  "engine.selfalign": ["data/*.jsonl"],
                  "engine.world": ["data/*.json", "data/*.jsonl", "data/base_model/*"]},
    install_requires=[
        "torch>=2.6",
        "triton>=3.2",
        "safetensors>=0.4",
        "tokenizers>=0.19",
        "huggingface_hub>=0.24",   # save_torch_state_dict: sharded safetensors + index (comes with tokenizers)
        "numpy",
        "jinja2>=3.1",
        "tqdm",
        "rapidfuzz>=3.0",
        "matplotlib",
        "langdetect",
        "tomli; python_version < '3.11'",
        "tomli-w",
    ],
    extras_require={
        "flash": ["flash-attn"],
        "tensorboard": ["tensorboard"],   # tracker = "tensorboard"
        "wandb": ["wandb"],               # tracker = "wandb"
        # lm-evaluation-harness backend (engine.eval.harness); never needed by the engine itself.
        # transformers 5.25 pulls in Hugging Face's `kernels` package, whose name our top-level
        # `kernels` package shadows (transformers then fails to import its models): stay below it.
        "eval": ["lm-eval>=0.4,<0.5", "transformers<5.25"],
        # trackers, and lm-eval with accelerate: the harness tests compare with lm-eval's hf backend
        "test": ["pytest", "hypothesis", "transformers>=4.45,<5.25", "rouge-score", "nltk", "tensorboard",
                 "wandb", "lm-eval>=0.4,<0.5", "accelerate>=0.26"],
    },
)
