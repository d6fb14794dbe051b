"""The whole model on the Triton kernels (native on CUDA, the interpreter on CPU) against the
torch reference ops: same logits and gradients, and the same greedy generation through paged
attention."""
import pytest
import torch

from conftest import DEVICE
from engine import load_model, ops
from engine.attention import AttentionMetadata


@pytest.fixture
def backend():
    yield ops.set_backend
    ops.set_backend(None)


def _loss_and_grads(model, ids, positions, meta, labels):
    model.zero_grad()
    hidden = model.forward_packed(ids, positions, meta)
    logits = model.compute_logits(hidden)
    loss = ops.linear_cross_entropy(hidden, model.lm_head.weight, labels, reduction="mean")
    loss.backward()
    return logits.detach(), loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_packed_forward_and_gradients_match_torch_ops(backend, tmp_path):
    # qwen3 covers the q/k norms; the preset's head_dim 16 suits the attention kernel
    from engine.presets import write_tiny
    d = write_tiny(tmp_path / "m", model_type="qwen3", num_attention_heads=4, num_key_value_heads=2)
    model = load_model(d, dtype=torch.float32, device=DEVICE).train()
    lengths = [7, 1, 12]
    g = torch.Generator(device=DEVICE).manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (sum(lengths),), generator=g, device=DEVICE)
    positions = torch.cat([torch.arange(n) for n in lengths]).to(DEVICE)
    labels = ids.roll(-1).clone()
    labels[::3] = -100
    meta = AttentionMetadata.for_lengths(lengths, DEVICE)
    results = {}
    for name in ("torch", "triton"):
        backend(name)
        results[name] = _loss_and_grads(model, ids, positions, meta, labels)
    (lt, losst, gt), (lk, lossk, gk) = results["torch"], results["triton"]
    assert (lt - lk).abs().max().item() < 1e-4
    assert abs(losst.item() - lossk.item()) < 1e-5
    for n in gt:
        scale = gt[n].abs().max().item() + 1e-6
        assert (gt[n] - gk[n]).abs().max().item() / scale < 2e-3, n


def test_greedy_generation_matches_torch_ops(backend, tmp_path):
    from engine import LLM, SamplingParams
    from engine.presets import write_tiny
    d = write_tiny(tmp_path / "m", seed=3)
    prompts = ["Count the letters in garden.", "Reverse the word stone and then", "A"]
    params = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
    outs = {}
    for name in ("torch", "triton"):
        backend(name)
        llm = LLM(d, dtype=torch.float32, device=DEVICE, block_size=4, kv_cache_bytes=1 << 20)
        outs[name] = [o.token_ids for o in llm.generate(prompts, params, use_tqdm=False)]
        llm.close()
    assert outs["torch"] == outs["triton"]
