"""Tokenizer: `tokenizers` for the text <-> ids work, jinja2 for the checkpoint's chat template.

The chat template is rendered the way transformers renders it (sandboxed jinja2 with
trim_blocks / lstrip_blocks, loop controls, `raise_exception`, `tojson`, `strftime_now`, the
`{% generation %}` tag), so a prompt is byte-identical to what users get there.
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer as HFTokenizer

# Used when a checkpoint has no chat template of its own.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")


class TokenizerError(ValueError):
    """A tokenizer directory that cannot be used; the message names the file."""


class _GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}` marks assistant text for masks; we render its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt):
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def _compile_template(source: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_GenerationTag, loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


def _token_text(value) -> str | None:
    if isinstance(value, dict):       # serialized AddedToken
        return value.get("content")
    return value


class Tokenizer:
    def __init__(self, tokenizer: HFTokenizer, config: dict | None = None,
                 eos_token_ids: list[int] | None = None, source_dir: Path | None = None):
        self._tok = tokenizer
        self.config = dict(config or {})
        self.source_dir = source_dir
        self.special_tokens = {k: _token_text(self.config.get(k)) for k in _SPECIAL_KEYS
                               if _token_text(self.config.get(k)) is not None}
        self.chat_template: str = self.config.get("chat_template") or CHATML_TEMPLATE
        if isinstance(self.chat_template, list):     # named templates: take "default"
            named = {t["name"]: t["template"] for t in self.chat_template}
            self.chat_template = named.get("default", next(iter(named.values())))
        ids = list(eos_token_ids or [])
        eos = self.special_tokens.get("eos_token")
        if eos is not None and self._tok.token_to_id(eos) is not None:
            ids.append(self._tok.token_to_id(eos))
        self.eos_token_ids: list[int] = sorted(set(ids))
        bos = self.special_tokens.get("bos_token")
        self.bos_token_id = self._tok.token_to_id(bos) if bos else None
        pad = self.special_tokens.get("pad_token")
        self.pad_token_id = self._tok.token_to_id(pad) if pad else None

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "Tokenizer":
        d = Path(path)
        tok_file = d / "tokenizer.json"
        if not tok_file.is_file():
            raise TokenizerError(f"{d}: no tokenizer.json (sheep-engine needs the fast-tokenizer file)")
        try:
            tok = HFTokenizer.from_file(str(tok_file))
        except Exception as e:
            raise TokenizerError(f"{tok_file}: cannot be read ({e})") from None
        config = _read_json(d / "tokenizer_config.json")
        jinja_file = d / "chat_template.jinja"
        if jinja_file.is_file():
            config["chat_template"] = jinja_file.read_text()
        gen = _read_json(d / "generation_config.json")
        eos = gen.get("eos_token_id")
        eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        return cls(tok, config, eos_ids, d)

    def save_pretrained(self, path: str | Path) -> None:
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(d / "tokenizer.json"))
        config = dict(self.config)
        config.setdefault("chat_template", self.chat_template)
        (d / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))

    # --- text <-> ids -------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of `text`; with add_special_tokens the tokenizer's post-processor adds BOS where
        the checkpoint wants it, never a second one if the text already starts with it."""
        ids = self._tok.encode(text, add_special_tokens=add_special_tokens).ids
        if add_special_tokens and self.bos_token_id is not None and ids[:2] == [self.bos_token_id] * 2:
            ids = ids[1:]
        return ids

    def encode_batch(self, texts: list[str], add_special_tokens: bool = True) -> list[list[int]]:
        return [self.encode(t, add_special_tokens) for t in texts]

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, idx: int) -> str | None:
        return self._tok.id_to_token(idx)

    # --- chat ---------------------------------------------------------------------------
    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = False,
                            tokenize: bool = False, **kwargs) -> str | list[int]:
        """Render `messages` ([{"role", "content"}]) with the checkpoint's template."""
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m:
                raise TokenizerError(f"message {i} must be a dict with 'role' and 'content', got {m!r}")
        variables = dict(self.special_tokens)
        variables.update(kwargs)
        text = _compile_template(self.chat_template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **variables)
        # templates that emit BOS themselves must not get another one from the post-processor
        return self.encode(text, add_special_tokens=False) if tokenize else text


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise TokenizerError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None


def copy_tokenizer_files(src: str | Path, dst: str | Path) -> None:
    """Copy the tokenizer files of a checkpoint directory verbatim."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (Path(src) / name).is_file():
            shutil.copy2(Path(src) / name, Path(dst) / name)
