"""The training objective on packed batches, and LoRA, checked on one process (no FSDP)."""
import pytest
import torch
import torch.nn.functional as F

from engine import load_model
from engine.checkpoint import save_state_dict
from engine.presets import write_tiny
from engine.training.lora import LoRALinear, apply_lora, merged_state_dict
from engine.training.loss import CausalLMLoss
from engine.training.metrics import matmul_params, step_flops
from engine.training.optim import build_optimizer
from engine.training.packing import IGNORE_INDEX, TrainingSample, make_pack


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # untied head, so lm_head gets its own gradient and LoRA leaves a separate matrix alone
    return write_tiny(tmp_path_factory.mktemp("tiny"), seed=1, tie_word_embeddings=False)


def _sample(n: int, prompt: int, seed: int) -> TrainingSample:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 700, (n + 1,), generator=g).tolist()
    labels = [IGNORE_INDEX] * prompt + ids[prompt + 1:]
    return TrainingSample(ids[:n], labels, f"s{seed}")


def _loss(model: CausalLMLoss, samples: list[TrainingSample]) -> torch.Tensor:
    p = make_pack(samples)
    return model(p.input_ids, p.positions, p.metadata("cpu"), p.labels)


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_packed_loss_and_gradient_equal_unpacked(model_dir):
    model = CausalLMLoss(load_model(model_dir))
    samples = [_sample(7, 3, 0), _sample(12, 5, 1), _sample(5, 1, 2)]
    packed = _loss(model, samples)
    packed.backward()
    packed_grads = _grads(model)
    model.zero_grad()
    # reference: each sample alone through the dense path and torch's cross entropy
    reference = torch.zeros(())
    for s in samples:
        logits = model.lm(torch.tensor([s.input_ids]))[0]
        reference = reference + F.cross_entropy(logits, torch.tensor(s.labels), reduction="sum")
    reference.backward()
    torch.testing.assert_close(packed, reference, rtol=1e-5, atol=1e-5)
    for name, g in _grads(model).items():
        torch.testing.assert_close(packed_grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


def test_masked_tokens_contribute_no_gradient(model_dir):
    model = CausalLMLoss(load_model(model_dir))
    answered = _sample(9, 4, 3)
    unlabelled = TrainingSample(_sample(11, 0, 4).input_ids, [IGNORE_INDEX] * 11, "masked")
    alone = _loss(model, [answered])
    alone.backward()
    alone_grads = _grads(model)
    model.zero_grad()
    # the fully masked sample first: it must change neither the loss nor any gradient
    with_masked = _loss(model, [unlabelled, answered])
    with_masked.backward()
    torch.testing.assert_close(with_masked, alone, rtol=1e-6, atol=1e-6)
    grads = _grads(model)
    for name, g in grads.items():   # equal up to summation order
        torch.testing.assert_close(g, alone_grads[name], rtol=1e-5, atol=1e-6, msg=name)
    only_masked = sorted(set(unlabelled.input_ids) - set(answered.input_ids))
    assert grads["lm.model.embed_tokens.weight"][only_masked].abs().max() == 0
    # and the gradient reaching the final hidden state is exactly zero at every masked position
    p = make_pack([unlabelled, answered])
    hidden = model.lm.forward_packed(p.input_ids, p.positions, p.metadata("cpu"))
    hidden.retain_grad()
    F.cross_entropy(model.lm.compute_logits(hidden), p.labels, reduction="sum").backward()
    masked = p.labels == IGNORE_INDEX
    assert masked.sum() == 11 + 4 and hidden.grad[masked].abs().max() == 0
    assert hidden.grad[~masked].abs().max() > 0


def test_lora_starts_identical_trains_only_adapters_and_merges_exactly(model_dir, tmp_path):
    base = load_model(model_dir)
    lm = load_model(model_dir)
    adapted = apply_lora(lm, rank=4, alpha=8.0)
    assert len(adapted) == 7 * base.config.num_hidden_layers
    x = torch.randint(0, 700, (2, 10), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(lm(x), base(x))          # B = 0: the adapter adds exactly nothing
    model = CausalLMLoss(lm)
    opt = build_optimizer(model, lr=1e-2, weight_decay=0.1, betas=(0.9, 0.95), eps=1e-8,
                          device=torch.device("cpu"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    for step in range(3):
        _loss(model, [_sample(9, 2, 10 + step)]).backward()
        opt.step()
        opt.zero_grad()
    for name, p in base.named_parameters():
        assert torch.equal(lm.get_parameter(name), p), f"base parameter {name} changed"
    assert all(m.lora_B.abs().max() > 0 for m in lm.modules() if isinstance(m, LoRALinear))
    with torch.no_grad():
        adapter_logits = lm(x)
        assert (adapter_logits - base(x)).abs().max() > 1e-4
        save_state_dict(merged_state_dict(lm), lm.config, tmp_path)
        merged = load_model(tmp_path)
        assert not any(isinstance(m, LoRALinear) for m in merged.modules())
        torch.testing.assert_close(merged(x), adapter_logits, rtol=1e-5, atol=1e-5)


def test_flop_count_covers_every_matmul_weight(model_dir):
    lm = load_model(model_dir)
    weights = sum(m.weight.numel() for m in lm.modules() if isinstance(m, torch.nn.Linear))
    assert matmul_params(lm.config) == weights
    cfg = lm.config
    attention = 6 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.head_dim * (10**2 + 20**2)
    assert step_flops(cfg, [10, 20]) == 6 * weights * 30 + attention
    assert step_flops(cfg, [10, 20], full_finetune=False) == 4 * weights * 30 + attention
