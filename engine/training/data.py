"""SFT data: JSONL records -> token ids with a per-token "is a target" mask.

Three record forms are read:
  Alpaca    {"instruction": str, "input": str (optional), "output": str}
  messages  {"messages": [{"role": str, "content": str}, ...]}   (at least one assistant turn)
  text      {"text": str}: a pretraining document, in either format: its tokens (no special
            tokens added) and one EOS, loss on every token. Other keys are ignored.
  completion {"prompt": str, "completion": str}: plain text in either format, tokenized the
            way LLM.score() reads a prompt and its continuation (encode(prompt) with special
            tokens, then encode(completion) without, then EOS); loss on completion + EOS.

Alpaca and messages records are rendered one of two ways, in a prompt layout of
engine.prompt_format ("engine" or "reference"), the same functions the loop answers with:
  "raw"   the base-model format of the I-SHEEP loop: raw_prompt(instruction, input, layout)
          followed by output + EOS; loss on output + EOS only. Alpaca records only.
  "chat"  render_conversation(layout): the tokenizer's chat template (engine) or the release's
          fixed ChatML (reference), an Alpaca record's user turn being user_content(...);
          loss on each assistant turn's content and the token that ends the turn
          (e.g. <|im_end|>), nothing else.
A malformed line raises DataError naming the file and line number.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.jsonl import json_records
from engine.prompt_format import check_layout, raw_prompt, render_conversation, user_content
from engine.tokenizer import Tokenizer


class DataError(ValueError):
    """A data file or record that cannot be used; the message names the file and line."""


@dataclass
class TokenizedSample:
    tokens: list[int]          # the whole rendered sample
    is_target: list[bool]      # per token: the model is trained to produce it
    where: str                 # "file:line", for messages about this sample


def load_sft_samples(paths: list[str | Path], tokenizer: Tokenizer, prompt_format: str = "chat",
                     layout: str = "engine") -> list[TokenizedSample]:
    """Read and tokenize every record of the JSONL files, in file and line order.

    layout: the engine.prompt_format layout ("engine" | "reference") of raw and chat renderings.
    """
    if prompt_format not in ("chat", "raw"):
        raise DataError(f"prompt_format {prompt_format!r}: expected 'chat' or 'raw'")
    try:
        check_layout(layout)
    except ValueError as err:
        raise DataError(str(err)) from None
    eos_id = _raw_eos_id(tokenizer) if prompt_format == "raw" else None
    samples = []
    for path, line_no, record in read_jsonl_records(paths):
        where = f"{path}:{line_no}"
        if "text" in record:
            eos_id = _raw_eos_id(tokenizer) if eos_id is None else eos_id
            tokens = tokenizer.encode(record["text"], add_special_tokens=False) + [eos_id]
            target = [True] * len(tokens)
        elif "completion" in record:
            eos_id = _raw_eos_id(tokenizer) if eos_id is None else eos_id
            prompt = tokenizer.encode(record["prompt"], add_special_tokens=True)
            completion = tokenizer.encode(record["completion"], add_special_tokens=False) + [eos_id]
            tokens, target = prompt + completion, [False] * len(prompt) + [True] * len(completion)
        elif prompt_format == "raw":
            tokens, target = _render_raw(record, tokenizer, eos_id, where, layout)
        else:
            tokens, target = _render_chat(record, tokenizer, where, layout)
        samples.append(TokenizedSample(tokens, target, where))
    if not samples:
        raise DataError(f"no records in {', '.join(str(p) for p in paths)}")
    return samples


def read_jsonl_records(paths: list[str | Path]):
    """Yield (path, line number, validated record); blank lines are skipped."""
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise DataError(f"data file {p} does not exist")
        for line_no, record in json_records(p, DataError):
            _validate(record, f"{p}:{line_no}")
            yield p, line_no, record


def _validate(record: dict, where: str) -> None:
    if "text" in record:
        if not isinstance(record["text"], str) or not record["text"]:
            raise DataError(f"{where}: 'text' must be a non-empty string")
        return
    if "completion" in record:
        for key in ("prompt", "completion"):
            if not isinstance(record.get(key), str):
                raise DataError(f"{where}: a completion record needs string 'prompt' and "
                                f"'completion', got {key}={json.dumps(record.get(key))[:80]}")
        if not record["completion"]:
            raise DataError(f"{where}: 'completion' is empty, so nothing to train on")
        return
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise DataError(f"{where}: 'messages' must be a non-empty list")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) \
                    or not isinstance(m.get("content"), str):
                raise DataError(f"{where}: messages[{i}] must be an object with string "
                                f"'role' and 'content', got {json.dumps(m)[:80]}")
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(f"{where}: no assistant message, so nothing to train on")
        return
    for key in ("instruction", "output"):
        if key not in record:
            raise DataError(f"{where}: missing key '{key}' (Alpaca records need 'instruction' "
                            "and 'output'; or give 'messages' or 'text')")
    for key in ("instruction", "input", "output"):
        if key in record and not isinstance(record[key], str):
            raise DataError(f"{where}: '{key}' must be a string, got {type(record[key]).__name__}")


def _raw_eos_id(tokenizer: Tokenizer) -> int:
    eos = tokenizer.special_tokens.get("eos_token")
    if eos is not None and tokenizer.token_to_id(eos) is not None:
        return tokenizer.token_to_id(eos)
    if tokenizer.eos_token_ids:
        return tokenizer.eos_token_ids[0]
    raise DataError("the tokenizer has no EOS token, which the raw format appends to each output "
                    "and a text record to its document")


def _render_raw(record: dict, tok: Tokenizer, eos_id: int, where: str,
                layout: str) -> tuple[list[int], list[bool]]:
    if "messages" in record:
        raise DataError(f"{where}: messages records need prompt_format='chat'")
    prompt = tok.encode(raw_prompt(record["instruction"], record.get("input", ""), layout),
                        add_special_tokens=True)
    answer = tok.encode(record["output"], add_special_tokens=False) + [eos_id]
    return prompt + answer, [False] * len(prompt) + [True] * len(answer)


def _as_messages(record: dict, layout: str) -> list[dict]:
    if "messages" in record:
        return [{"role": m["role"], "content": m["content"]} for m in record["messages"]]
    user = user_content(record["instruction"], record.get("input", ""), layout)
    return [{"role": "user", "content": user}, {"role": "assistant", "content": record["output"]}]


def _render_chat(record: dict, tok: Tokenizer, where: str,
                 layout: str) -> tuple[list[int], list[bool]]:
    """Render through the layout's template; find each assistant reply as the text the template
    adds after the generation prompt, so the mask follows whatever the template emits."""
    messages = _as_messages(record, layout)

    def render(msgs: list[dict], add_generation_prompt: bool = False) -> str:
        return render_conversation(tok, msgs, layout, add_generation_prompt)

    full = render(messages)
    tokens: list[int] = []
    target: list[bool] = []

    def add(text: str, is_target: bool) -> None:
        ids = tok.encode(text, add_special_tokens=False) if text else []
        tokens.extend(ids)
        target.extend([is_target] * len(ids))

    done = 0    # characters of `full` already tokenized
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(messages[:i], add_generation_prompt=True)
        through = render(messages[:i + 1])
        if not (through.startswith(before) and full.startswith(through) and len(before) >= done):
            raise DataError(f"{where}: the chat template does not render this conversation "
                            "turn by turn (a prefix of the messages is not a prefix of the text), "
                            "so assistant turns cannot be located; use prompt_format='raw'")
        add(full[done:len(before)], False)
        reply = full[len(before):len(through)]
        # train on the reply through the content and the one token that ends the turn;
        # what the template writes after that (usually "\n") is context, not a target
        cut = reply.find(m["content"]) + len(m["content"]) if m["content"] in reply else len(reply)
        add(reply[:cut], True)
        rest = tok.encode(reply[cut:], add_special_tokens=False) if reply[cut:] else []
        tokens.extend(rest)
        target.extend([True] * min(1, len(rest)) + [False] * (len(rest) - 1))
        done = len(through)
    add(full[done:], False)
    return tokens, target
