"""Our model against transformers on random tiny configs, the same safetensors loaded both ways."""
import pytest
import torch

from engine import load_model
from engine.attention import AttentionMetadata
from hf_models import TINY_CONFIGS, load_hf, write_hf_model

FP32_TOL = 1e-4
BF16_TOL = 0.08   # bf16 has ~3 significant digits; logits here are O(1)


@pytest.fixture(scope="module", params=list(TINY_CONFIGS))
def checkpoint(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    write_hf_model(d, request.param)
    return d


def _tokens(vocab: int, b: int = 2, t: int = 37, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (b, t), generator=g)


def test_fp32_logits_match_transformers(checkpoint):
    ours = load_model(checkpoint, dtype=torch.float32)
    ref = load_hf(checkpoint)
    x = _tokens(ours.config.vocab_size)
    with torch.no_grad():
        diff = (ours(x) - ref(x).logits).abs().max().item()
    assert diff <= FP32_TOL


def test_bf16_logits_match_transformers(checkpoint):
    ours = load_model(checkpoint, dtype=torch.bfloat16)
    ref = load_hf(checkpoint, dtype=torch.bfloat16)
    x = _tokens(ours.config.vocab_size, t=20)
    with torch.no_grad():
        a, b = ours(x).float(), ref(x).logits.float()
    assert (a - b).abs().max().item() <= BF16_TOL
    # and both stay close to the fp32 truth
    truth = load_model(checkpoint, dtype=torch.float32)(x).detach()
    assert (a - truth).abs().max().item() <= BF16_TOL


def test_packed_varlen_equals_separate_dense_forwards(checkpoint):
    model = load_model(checkpoint, dtype=torch.float32)
    lengths = [5, 1, 13]
    seqs = [_tokens(model.config.vocab_size, 1, n, seed=i)[0] for i, n in enumerate(lengths)]
    positions = torch.cat([torch.arange(n) for n in lengths])
    meta = AttentionMetadata.for_lengths(lengths, "cpu")
    with torch.no_grad():
        packed = model.compute_logits(model.forward_packed(torch.cat(seqs), positions, meta))
        dense = torch.cat([model(s[None])[0] for s in seqs])
    assert (packed - dense).abs().max().item() <= 1e-5
