"""Prompt layouts: the one place that turns an instruction and its input into the text a model
reads, for answering and for training alike.

Two layouts (the loop's `response.layout`):

  engine     user turn "instruction\\ninput" ("instruction" when there is no input);
             raw (base model): the user turn + "\\n"; chat: the tokenizer's own chat template.
  reference  the I-SHEEP release: user turn "{instruction}{input}", no separator
             (seed_ppl/generate_output_iter2.py:43,46); raw: "{instruction}{input}\\n"
             (seed_ppl/generate_output.py:34,37); chat: a fixed ChatML conversation with the
             system message "You are a helpful assistant." whatever the tokenizer's template
             says (generate_output_iter2.py:41-48). ChatML's tags are Qwen's special tokens; a
             tokenizer without them reads the tags as plain text, as the release would.

The engine joins instruction and input with one "\\n" in both raw and chat, so a base model and
its fine-tuned successors read the same user text, and the trainer's data has always used it.

Answering formats a prompt with `chat_prompt`; the trainer renders whole conversations with
`render_conversation`, of which `chat_prompt` is the one-user-turn case with the generation
prompt, so a model is trained on exactly the text it is later asked with.
"""

from __future__ import annotations

from collections.abc import Sequence

LAYOUTS = ("engine", "reference")
REFERENCE_SYSTEM = "You are a helpful assistant."


def check_layout(layout: str) -> str:
    """`layout` itself, or a ValueError naming the allowed values."""
    if layout not in LAYOUTS:
        raise ValueError(f"prompt layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def user_content(instruction: str, input: str = "", layout: str = "engine") -> str:
    """The user turn's text for an (instruction, input) pair."""
    if check_layout(layout) == "reference":
        return f"{instruction}{input}"
    return f"{instruction}\n{input}" if input else instruction


def raw_prompt(instruction: str, input: str = "", layout: str = "engine") -> str:
    """The base-model prompt: the user turn's text and one "\\n" (in both layouts)."""
    return user_content(instruction, input, layout) + "\n"


def render_conversation(tokenizer, messages: Sequence[dict], layout: str = "engine",
                        add_generation_prompt: bool = False) -> str:
    """A conversation ([{"role", "content"}, ...]) as text.

    engine: the tokenizer's chat template. reference: ChatML turns
    "<|im_start|>{role}\\n{content}<|im_end|>\\n", opened by the system message
    "You are a helpful assistant." unless the first message is a system message; with
    `add_generation_prompt`, "<|im_start|>assistant\\n" follows.
    """
    if check_layout(layout) == "engine":
        return tokenizer.apply_chat_template(list(messages),
                                             add_generation_prompt=add_generation_prompt)
    messages = list(messages)
    if not messages or messages[0]["role"] != "system":
        messages = [{"role": "system", "content": REFERENCE_SYSTEM}] + messages
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if add_generation_prompt else "")


def chat_prompt(tokenizer, content: str, layout: str = "engine",
                system: str | None = None) -> str:
    """One user turn `content` (optionally after a system message) with the generation prompt:
    the text a chat model answers."""
    messages = ([{"role": "system", "content": system}] if system is not None else [])
    messages.append({"role": "user", "content": content})
    return render_conversation(tokenizer, messages, layout, add_generation_prompt=True)
