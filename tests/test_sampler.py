"""The sampler on fixed logits: the right distribution, per-row seeds, greedy, the Triton race.

Tensors live on the test device, so on a GPU the draws go through the Triton race (the ops
switch picks it for CUDA tensors) and are checked against the same distributions."""
import pytest
import torch

from conftest import DEVICE
from engine import ops
from engine.generation import sampler
from kernels import cpu_sampling, sampling

VOCAB = 40


def _logits() -> torch.Tensor:
    return torch.randn(VOCAB, generator=torch.Generator().manual_seed(0)) * 2


def _reference_probs(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """transformers' warpers (temperature -> top-k -> top-p), then softmax."""
    from transformers.generation.logits_process import (TemperatureLogitsWarper, TopKLogitsWarper,
                                                        TopPLogitsWarper)
    x = logits[None].clone()
    x = TemperatureLogitsWarper(temperature)(None, x)
    if top_k > 0:
        x = TopKLogitsWarper(top_k)(None, x)
    if top_p < 1.0:
        x = TopPLogitsWarper(top_p)(None, x)
    return x.softmax(-1)[0]


def _draw(logits, n, temperature, top_k, top_p, seed0=0, step=0) -> torch.Tensor:
    batch = logits[None].expand(n, -1).to(DEVICE)
    return sampler.sample(batch, [temperature] * n, [top_k] * n, [top_p] * n,
                          list(range(seed0, seed0 + n)), [step] * n)


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, -1, 1.0), (0.7, -1, 0.8), (1.3, 10, 1.0),
                                                     (1.0, 12, 0.9)])
def test_draws_follow_the_filtered_distribution(temperature, top_k, top_p):
    logits = _logits()
    want = _reference_probs(logits, temperature, top_k, top_p)
    n = 40_000
    counts = torch.bincount(_draw(logits, n, temperature, top_k, top_p).cpu(), minlength=VOCAB).double()
    got = counts / n
    assert counts[want == 0].sum() == 0, "sampled a token the filters remove"
    # total variation: E[TV] ~ 0.5 * sum sqrt(2 p (1 - p) / (pi n)) <= 0.01 here
    assert 0.5 * (got - want).abs().sum().item() < 0.02
    # and a chi-square test over the kept tokens (df <= 39: the 1e-4 quantile is below 90)
    kept = want > 0
    chi2 = ((counts[kept] - n * want[kept]) ** 2 / (n * want[kept])).sum().item()
    assert chi2 < 90


def test_thresholds_keep_the_same_tokens_as_transformers():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(6, VOCAB, generator=g) * 3
    top_k = torch.tensor([-1, 5, 1, 40, 12, -1])
    top_p = torch.tensor([0.5, 1.0, 1.0, 0.3, 0.9, 0.999])
    thresholds = sampler.filter_thresholds(logits, top_k, top_p)
    for r in range(6):
        want = _reference_probs(logits[r], 1.0, int(top_k[r]), float(top_p[r])) > 0
        assert torch.equal(logits[r] >= thresholds[r], want)


def test_cpu_sort_gives_torch_sorts_values():
    """The threshold search sorts with numpy on the CPU: the same values, in the same order,
    as torch.sort, ties and infinities included (-0.0 and 0.0 may trade places: equal in
    every comparison and softmax the search makes)."""
    g = torch.Generator().manual_seed(4)
    rows = torch.cat([torch.randn(3, VOCAB, generator=g) * 4,
                      torch.randint(-3, 4, (3, VOCAB), generator=g).float()])  # many ties
    rows[3, :5] = -0.0
    rows[4, 7], rows[5, 2] = float("inf"), float("-inf")
    got = sampler.sorted_descending(rows)
    want = rows.sort(dim=-1, descending=True).values
    assert got.dtype == want.dtype and torch.equal(got, want)


def test_seeded_rows_do_not_depend_on_the_rest_of_the_batch():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(8, VOCAB, generator=g)
    temps, ks, ps = [1.0, 0.5, 0.0, 1.0, 2.0, 1.0, 0.8, 1.0], [-1, 5, -1, -1, 3, -1, -1, 7], [1.0] * 4 + [0.7] * 4
    seeds, steps = [11, 12, 13, 14, 15, 16, 17, 18], [0, 3, 1, 9, 2, 2, 5, 0]
    full = sampler.sample(logits, temps, ks, ps, seeds, steps)
    for r in range(8):
        alone = sampler.sample(logits[r:r + 1], temps[r:r + 1], ks[r:r + 1], ps[r:r + 1],
                               seeds[r:r + 1], steps[r:r + 1])
        assert alone.item() == full[r].item()
    # a different seed or step gives (almost surely somewhere) different draws
    other = sampler.sample(logits, temps, ks, ps, [s + 100 for s in seeds], steps)
    assert not torch.equal(other, full)


def test_greedy_rows_take_the_first_argmax():
    logits = torch.zeros(2, VOCAB)
    logits[0, 7] = logits[0, 9] = 5.0
    logits[1, 3] = 1.0
    out = sampler.sample(logits, [0.0, 0.0], [-1, -1], [1.0, 1.0], [0, 1], [0, 0])
    assert out.tolist() == [7, 3]


def test_noise_is_uniform_enough():
    keys = torch.tensor(sampler.row_keys([5], [0]))
    u = sampling.gumbel_noise(keys, torch.arange(200_000))
    # Gumbel(0, 1): mean = Euler's gamma, variance = pi^2 / 6
    assert u.isfinite().all()
    assert abs(u.mean().item() - 0.5772) < 0.01
    assert abs(u.var().item() - 1.6449) < 0.03


@pytest.fixture
def restore_backend():
    yield
    ops.set_backend(None)


def test_triton_race_matches_reference(restore_backend):
    """The Triton kernel, reached through the ops switch, on the test device (compiled on a
    GPU, the interpreter on a CPU)."""
    g = torch.Generator().manual_seed(3)
    logits = (torch.randn(5, 1500, generator=g) * 3).to(DEVICE)
    inv_temp = torch.tensor([1.0, 2.0, 0.5, 1.0, 1.3], device=DEVICE)
    thresholds = torch.tensor([float("-inf"), 1.0, float("-inf"), 4.0, 0.0], device=DEVICE)
    keys = torch.tensor(sampler.row_keys([1, 2, 3, 4, 5], [0, 7, 2, 1, 0]), device=DEVICE)
    want = sampling.gumbel_argmax_reference(logits, inv_temp, thresholds, keys)
    ops.set_backend("triton")
    got = ops.gumbel_argmax(logits, inv_temp, thresholds, keys)
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("spread", [0.3, 3.0, 30.0])
def test_cpu_race_matches_reference_bit_for_bit(spread):
    """kernels/cpu_sampling.py hashes only the tokens within the noise's span of the best one:
    flat rows (every token a candidate), typical and peaked rows, thresholds, temperatures."""
    g = torch.Generator().manual_seed(4)
    b = 64
    logits = torch.randn(b, 1500, generator=g) * spread
    logits[3, 700] = 1e4                                  # one token far above the rest
    inv_temp = torch.rand(b, generator=g) * 3 + 0.1
    thresholds = torch.where(torch.rand(b, generator=g) < 0.5, torch.tensor(float("-inf")),
                             logits.float().max(-1).values * inv_temp - 2.0)
    keys = torch.tensor(sampler.row_keys(list(range(b)), [i % 5 for i in range(b)]))
    want = sampling.gumbel_argmax_reference(logits, inv_temp, thresholds, keys)
    assert torch.equal(cpu_sampling.gumbel_argmax(logits, inv_temp, thresholds, keys), want)


def test_noise_span_covers_every_noise_value():
    # the extreme hash outputs give the extreme noise: u = (0 + 0.5) / 2^23 and (2^23 - 0.5) / 2^23
    u = (torch.tensor([0.0, 2.0**23 - 1]) + 0.5) * (1.0 / 8388608.0)
    lo, hi = (-torch.log(-torch.log(u))).tolist()
    assert hi - lo < cpu_sampling.NOISE_SPAN - 0.5
    noise = sampling.gumbel_noise(torch.tensor([[5, 9], [123, 77]]), torch.arange(200000))
    assert lo <= noise.min().item() and noise.max().item() <= hi


def test_sampler_follows_the_ops_switch(restore_backend, monkeypatch):
    """SHEEP_OPS / set_backend decide which race runs (issue 12: not the tensor's device)."""
    calls = []
    table = ops._table("torch")
    monkeypatch.setitem(table, "gumbel_argmax", lambda *a: calls.append(a) or a[0].argmax(-1))
    ops.set_backend("torch")
    sampler.sample(torch.randn(2, VOCAB), [1.0, 1.0], [-1, -1], [1.0, 1.0], [0, 1], [0, 0])
    assert len(calls) == 1


def test_device_row_keys_equal_host_row_keys():
    g = torch.Generator().manual_seed(5)
    seeds = torch.randint(0, 2**62, (500,), generator=g).tolist() + [0, 2**63 - 1]
    steps = torch.randint(0, 2**20, (502,), generator=g).tolist()
    got = sampler.row_keys_tensor(torch.tensor(seeds, device=DEVICE), torch.tensor(steps, device=DEVICE))
    assert got.tolist() == [list(k) for k in sampler.row_keys(seeds, steps)]


def test_token_and_top_logprobs():
    logits = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(4))
    ref = logits.log_softmax(-1)
    targets = torch.tensor([0, 5, 39])
    assert torch.allclose(sampler.token_logprobs(logits, targets), ref[torch.arange(3), targets])
    values, ids = sampler.top_logprobs(logits, 4)
    assert torch.allclose(values, ref.topk(4).values) and torch.equal(ids, ref.topk(4).indices)
