"""KV-cache sizing on CUDA, with the device's memory figures faked on the CPU: the warmup's
activations are counted once (as headroom), not also as memory in use."""
import torch

from engine.generation import kv_cache

GB = 2**30


class _FakeDevice:
    """A caching allocator in miniature: freed activations stay reserved (not free on the
    device) until empty_cache hands them back."""

    def __init__(self, total: int, weights: int, activations: int):
        self.total, self.allocated, self.reserved = total, weights, weights
        self.peak, self.activations = weights, activations

    def warmup(self, *args):
        self.reserved = max(self.reserved, self.allocated + self.activations)
        self.peak = max(self.peak, self.allocated + self.activations)

    def empty_cache(self):
        self.reserved = self.allocated

    def mem_get_info(self, device=None):
        return self.total - self.reserved, self.total

    def memory_stats(self, device=None):
        return {"allocated_bytes.all.peak": self.peak, "allocated_bytes.all.current": self.allocated}


def test_warmup_activations_are_counted_once(monkeypatch):
    dev = _FakeDevice(total=80 * GB, weights=10 * GB, activations=6 * GB)
    monkeypatch.setattr(kv_cache, "warmup_forward", dev.warmup)
    monkeypatch.setattr(torch.cuda, "empty_cache", dev.empty_cache)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "mem_get_info", dev.mem_get_info)
    monkeypatch.setattr(torch.cuda, "memory_stats", dev.memory_stats)

    class _Model:
        device = torch.device("cpu")

    block = 2 * 2**20
    blocks = kv_cache.cuda_num_blocks(_Model(), block, 0.9, 8192, 4096, 256)
    # 0.9 * 80 - 10 (weights) - 6 (activation headroom) = 56 GB
    assert blocks == (72 * GB - 10 * GB - 6 * GB) // block

