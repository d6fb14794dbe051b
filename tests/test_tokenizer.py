"""Tokenizer and chat templates against transformers' rendering."""
import json

import pytest

from engine import Tokenizer
from engine.presets import write_tiny

CONVERSATIONS = [
    [{"role": "user", "content": "hi"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue."}, {"role": "user", "content": "Another?"}],
    [{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": "1, 2, 3"}],
]

# Written here in the Llama 3 layout: BOS, header-delimited roles, <|eot_id|> after each turn.
LLAMA3_STYLE_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def llama3_style_dir(tmp_path_factory, tiny_dir):
    from tokenizers import Tokenizer as HFTokenizer
    d = tmp_path_factory.mktemp("llama3tok")
    tok = HFTokenizer.from_file(str(tiny_dir / "tokenizer.json"))
    tok.add_special_tokens(["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"])
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>", "chat_template": LLAMA3_STYLE_TEMPLATE}))
    return d


@pytest.mark.parametrize("which", ["tiny_dir", "llama3_style_dir"])
@pytest.mark.parametrize("conv", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("gen_prompt", [False, True])
def test_chat_template_matches_transformers(which, conv, gen_prompt, request):
    import transformers
    d = request.getfixturevalue(which)
    ours = Tokenizer.from_pretrained(d)
    ref = transformers.AutoTokenizer.from_pretrained(d)
    msgs = CONVERSATIONS[conv]
    expected = ref.apply_chat_template(msgs, add_generation_prompt=gen_prompt, tokenize=False)
    assert ours.apply_chat_template(msgs, add_generation_prompt=gen_prompt) == expected
    ids = ours.apply_chat_template(msgs, add_generation_prompt=gen_prompt, tokenize=True)
    assert ids == ref(expected, add_special_tokens=False)["input_ids"]


def test_encode_decode_round_trip_and_eos_ids(tiny_dir):
    tok = Tokenizer.from_pretrained(tiny_dir)
    text = "Reverse the word garden, then count its letters: ünïcode too."
    assert tok.decode(tok.encode(text)) == text
    assert tok.eos_token_ids == sorted({tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|im_end|>")})


def test_fallback_is_chatml_when_checkpoint_has_no_template(tiny_dir, tmp_path):
    import shutil
    shutil.copy(tiny_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    tok = Tokenizer.from_pretrained(tmp_path)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_missing_tokenizer_json_is_named(tmp_path):
    from engine.tokenizer import TokenizerError
    with pytest.raises(TokenizerError, match="no tokenizer.json"):
        Tokenizer.from_pretrained(tmp_path)


def test_preset_loads_through_the_real_checkpoint_path(tiny_dir):
    import torch
    from engine import load_model
    model = load_model(tiny_dir)
    tok = Tokenizer.from_pretrained(tiny_dir)
    assert model.config.vocab_size == tok.vocab_size
    assert model.config.eos_token_id == tok.eos_token_ids
    logits = model(torch.tensor([tok.encode("Hello there")]))
    assert logits.shape[-1] == tok.vocab_size and torch.isfinite(logits).all()
