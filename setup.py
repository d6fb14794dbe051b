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
        "test": ["pytest", "hypothesis", "transformers>=4.45", "rouge-score", "nltk"],
    },
)
