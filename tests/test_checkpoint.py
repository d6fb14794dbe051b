"""HF checkpoints in and out: round trips through transformers, sharding, clear errors."""
import json

import pytest
import torch

from engine import load_model, save_pretrained
from engine.checkpoint import CheckpointError
from engine.config import ConfigError
from hf_models import load_hf, write_hf_model


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("qwen2")
    write_hf_model(d, "qwen2_gqa2_tied")
    return d


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("llama")
    write_hf_model(d, "llama_mha_untied")
    return d


def _x(vocab):
    return torch.randint(0, vocab, (2, 11), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("shard", [None, 20_000])
@pytest.mark.parametrize("which", ["hf_dir", "llama_dir"])
def test_save_pretrained_round_trip_through_transformers(which, shard, request, tmp_path):
    src = request.getfixturevalue(which)
    model = load_model(src)
    kwargs = {} if shard is None else {"max_shard_size": shard}
    save_pretrained(model, tmp_path, **kwargs)
    if shard is not None:
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert len(set(index["weight_map"].values())) > 1
        assert not (tmp_path / "model.safetensors").exists()
    x = _x(model.config.vocab_size)
    with torch.no_grad():
        expected = model(x)
        assert (load_hf(tmp_path)(x).logits - expected).abs().max().item() <= 1e-5
        assert torch.equal(load_model(tmp_path)(x), expected)


def test_tied_embeddings_share_one_tensor(hf_dir):
    model = load_model(hf_dir)
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_dtype_cast_on_load(hf_dir):
    model = load_model(hf_dir, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="nope.*does not exist"):
        load_model(tmp_path / "nope")


def _copy(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


def _rewrite_weights(d, edit):
    from safetensors.torch import load_file, save_file
    tensors = load_file(str(d / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(d / "model.safetensors"))


def test_missing_tensor_is_named(hf_dir, tmp_path):
    d = _copy(hf_dir, tmp_path / "m")
    _rewrite_weights(d, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError, match=r"missing tensors: model\.layers\.1\.mlp\.up_proj\.weight"):
        load_model(d)


def test_wrong_shape_is_named(hf_dir, tmp_path):
    d = _copy(hf_dir, tmp_path / "m")

    def shrink(t):
        t["model.layers.0.self_attn.k_proj.weight"] = t["model.layers.0.self_attn.k_proj.weight"][:-1]
    _rewrite_weights(d, shrink)
    with pytest.raises(CheckpointError, match=r"model\.layers\.0\.self_attn\.k_proj\.weight has shape"):
        load_model(d)


def test_unexpected_tensor_is_named(hf_dir, tmp_path):
    d = _copy(hf_dir, tmp_path / "m")
    _rewrite_weights(d, lambda t: t.__setitem__("model.extra.weight", torch.zeros(2)))
    with pytest.raises(CheckpointError, match=r"unexpected tensors: model\.extra\.weight"):
        load_model(d)


def test_truncated_safetensors_is_named(hf_dir, tmp_path):
    d = _copy(hf_dir, tmp_path / "m")
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated or corrupt"):
        load_model(d)


def test_unsupported_model_type_is_named(hf_dir, tmp_path):
    d = _copy(hf_dir, tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"config\.json: unsupported model_type 'gpt2'"):
        load_model(d)


def test_inconsistent_heads_are_named(hf_dir, tmp_path):
    d = _copy(hf_dir, tmp_path / "m")
    cfg = json.loads((d / "config.json").read_text())
    cfg["num_key_value_heads"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"'num_key_value_heads' = 3 does not divide num_attention_heads = 4"):
        load_model(d)


def test_pickle_checkpoints_are_refused(tmp_path, hf_dir):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text((hf_dir / "config.json").read_text())
    (d / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*safetensors only"):
        load_model(d)


def test_save_pretrained_with_tokenizer_gives_a_directory_llm_generates_from(tmp_path):
    from engine import LLM, SamplingParams, Tokenizer
    from engine.presets import write_tiny

    src = write_tiny(tmp_path / "src", seed=1)
    tok = Tokenizer.from_pretrained(src)
    save_pretrained(load_model(src), tmp_path / "out", tokenizer=tok)
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in (tmp_path / "out").iterdir()}
    saved = Tokenizer.from_pretrained(tmp_path / "out")
    chat = [{"role": "user", "content": "hi"}]
    assert saved.apply_chat_template(chat, add_generation_prompt=True) == \
        tok.apply_chat_template(chat, add_generation_prompt=True)
    greedy = SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True)
    kwargs = dict(dtype="float32", device="cpu", kv_cache_bytes=8 * 2**20)
    [out] = LLM(tmp_path / "out", **kwargs).generate(["The word is"], greedy)
    [ref] = LLM(src, **kwargs).generate(["The word is"], greedy)
    assert len(out.token_ids) == 6 and out.token_ids == ref.token_ids and out.text == ref.text


def test_sharded_save_of_tied_weights_stores_the_embedding_once(hf_dir, tmp_path):
    save_pretrained(load_model(hf_dir), tmp_path, max_shard_size=20_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert "lm_head.weight" not in index["weight_map"]
    assert "model.embed_tokens.weight" in index["weight_map"]
    # a later single-file save into the same directory leaves no shard or index behind
    save_pretrained(load_model(hf_dir), tmp_path)
    assert sorted(p.name for p in tmp_path.glob("model*")) == ["model.safetensors"]
