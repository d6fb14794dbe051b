"""Packing: tokenized samples -> micro-batches of at most `seq_len` tokens.

A sample of T tokens becomes T-1 (input, next-token label) pairs; labels are IGNORE_INDEX
where the next token is not a target. Samples are laid end to end in one flat stream with
positions restarting at 0 per sample and cu_seqlens marking the boundaries, so attention
never crosses samples. The order is a permutation drawn from (seed, epoch): every rank
computes the same packs and takes its own share.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from engine.attention import AttentionMetadata
from engine.training.data import TokenizedSample

IGNORE_INDEX = -100


@dataclass
class TrainingSample:
    input_ids: list[int]       # [T-1] tokens fed to the model
    labels: list[int]          # [T-1] next-token targets, IGNORE_INDEX where no loss
    where: str

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class OverlongStats:
    truncated: int = 0         # cut to seq_len
    dropped: int = 0           # longer than seq_len with overlong="drop", or no target left


@dataclass
class Pack:
    """One micro-batch: a flat token stream of whole samples."""
    input_ids: torch.Tensor    # [N] int64
    labels: torch.Tensor       # [N] int64, IGNORE_INDEX where no loss
    positions: torch.Tensor    # [N] int64, 0.. per sample
    lengths: list[int] = field(default_factory=list)   # tokens of each sample, sum N

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.numel())

    @property
    def num_loss_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    def metadata(self, device: torch.device | str) -> AttentionMetadata:
        return AttentionMetadata.for_lengths(self.lengths, device)

    def to(self, device: torch.device | str) -> "Pack":
        return Pack(self.input_ids.to(device, non_blocking=True), self.labels.to(device, non_blocking=True),
                    self.positions.to(device, non_blocking=True), self.lengths)


def to_training_samples(samples: list[TokenizedSample], seq_len: int,
                        overlong: str = "truncate") -> tuple[list[TrainingSample], OverlongStats]:
    """Shift tokens into (input, label) pairs and fit each sample into seq_len.

    overlong="truncate" keeps the first seq_len pairs; "drop" discards the sample. A sample
    left without any target (all-prompt after truncation, or an empty reply) is dropped too.
    """
    out, stats = [], OverlongStats()
    for s in samples:
        inputs = s.tokens[:-1]
        labels = [t if keep else IGNORE_INDEX for t, keep in zip(s.tokens[1:], s.is_target[1:])]
        cut = len(inputs) > seq_len
        if cut and overlong == "drop":
            stats.dropped += 1
            continue
        inputs, labels = inputs[:seq_len], labels[:seq_len]
        if all(label == IGNORE_INDEX for label in labels):
            stats.dropped += 1
            continue
        stats.truncated += cut
        out.append(TrainingSample(inputs, labels, s.where))
    return out, stats


def epoch_order(num_samples: int, seed: int, epoch: int) -> list[int]:
    """A permutation of the samples, fixed by (seed, epoch)."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=gen).tolist()


def pack_layout(lengths: list[int], seq_len: int) -> list[list[int]]:
    """Group consecutive items (by index) into packs of at most seq_len tokens (next fit)."""
    packs, current, used = [], [], 0
    for i, n in enumerate(lengths):
        if n > seq_len:
            raise ValueError(f"item {i} of {n} tokens exceeds seq_len {seq_len}")
        if current and used + n > seq_len:
            packs.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        packs.append(current)
    return packs


def make_pack(samples: list[TrainingSample]) -> Pack:
    """Concatenate samples into one Pack (positions restart at 0 for each)."""
    ids = [t for s in samples for t in s.input_ids]
    labels = [t for s in samples for t in s.labels]
    positions = [p for s in samples for p in range(len(s))]
    return Pack(torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long),
                torch.tensor(positions, dtype=torch.long), [len(s) for s in samples])


def filler_pack(token_id: int) -> Pack:
    """A one-token pack with no loss: keeps every rank in step when the packs of an epoch do
    not divide evenly over ranks x accumulation steps (FSDP needs all ranks in each collective)."""
    return Pack(torch.tensor([token_id]), torch.tensor([IGNORE_INDEX]), torch.tensor([0]), [1])


class PackSchedule:
    """Which packs each rank runs at each optimizer step, for the whole run.

    Each epoch shuffles the samples by (seed, epoch) and packs them in that order. Step s of an
    epoch owns packs [s*G, (s+1)*G) with G = world_size * grad_accum; rank r runs packs
    s*G + r*grad_accum + a, a = 0..grad_accum-1. So one process with grad_accum=2 and two
    processes with grad_accum=1 run the same packs at every step.
    """

    def __init__(self, samples: list[TrainingSample], seq_len: int, seed: int, epochs: int,
                 world_size: int, grad_accum: int, filler_token: int):
        self.samples, self.filler_token = samples, filler_token
        self.world_size, self.grad_accum = world_size, grad_accum
        self.packs_per_step = world_size * grad_accum
        lengths = [len(s) for s in samples]
        self.epoch_packs: list[list[list[int]]] = []   # epoch -> pack -> sample indices
        for epoch in range(epochs):
            order = epoch_order(len(samples), seed, epoch)
            layout = pack_layout([lengths[i] for i in order], seq_len)
            self.epoch_packs.append([[order[j] for j in pack] for pack in layout])
        # a different order packs a little differently, so epochs can differ in length
        self.steps_per_epoch = [-(-len(p) // self.packs_per_step) for p in self.epoch_packs]
        self._loss_tokens = [sum(label != IGNORE_INDEX for label in s.labels) for s in samples]

    @property
    def total_steps(self) -> int:
        return sum(self.steps_per_epoch)

    def locate(self, step: int) -> tuple[int, int]:
        """Global step (0-based) -> (epoch, step within the epoch)."""
        for epoch, n in enumerate(self.steps_per_epoch):
            if step < n:
                return epoch, step
            step -= n
        raise IndexError("step beyond the planned run")

    def step_layout(self, step: int) -> list[list[int]]:
        """Sample indices of all G packs of one optimizer step; [] is a filler pack."""
        epoch, index = self.locate(step)
        chosen = self.epoch_packs[epoch][index * self.packs_per_step:(index + 1) * self.packs_per_step]
        return chosen + [[]] * (self.packs_per_step - len(chosen))

    def rank_packs(self, step: int, rank: int) -> list[Pack]:
        """The grad_accum packs that `rank` runs at `step`."""
        mine = self.step_layout(step)[rank * self.grad_accum:(rank + 1) * self.grad_accum]
        return [make_pack([self.samples[i] for i in pack]) if pack else filler_pack(self.filler_token)
                for pack in mine]

    def step_sample_lengths(self, step: int) -> list[int]:
        """Lengths of every sample in the step, over all ranks (for token counts and FLOPs)."""
        return [len(self.samples[i]) for pack in self.step_layout(step) for i in pack]

    def step_loss_tokens(self, step: int) -> int:
        """Tokens with a label in the whole step, all ranks and accumulation steps: the loss
        divisor, so the gradient does not depend on how the step is split over ranks."""
        return sum(self._loss_tokens[i] for pack in self.step_layout(step) for i in pack)
