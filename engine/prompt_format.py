"""Prompt layouts: how an instruction and its input become the text a model reads.

(Minimal version; the fidelity work adds the release's layouts.)
"""
from __future__ import annotations


def raw_prompt(instruction: str, input: str = "", layout: str = "engine") -> str:
    """The base-model prompt: instruction, "\\n" + input when non-empty, then "\\n"."""
    if layout == "reference":
        return f"{instruction}{input}\n"
    return f"{instruction}\n{input}\n" if input else f"{instruction}\n"


def user_content(instruction: str, input: str = "", layout: str = "engine") -> str:
    """The text of the user turn for a chat model."""
    if layout == "reference":
        return f"{instruction}{input}"
    return f"{instruction}\n\n{input}" if input.strip() else instruction


def chat_prompt(tokenizer, content: str, layout: str = "engine", system: str | None = None) -> str:
    """One user message in the tokenizer's chat template, ready for the assistant's turn."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True)
