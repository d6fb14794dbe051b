"""The fine-tuning loop, as torchtitan splits it:

    forward_backward_step   one micro-batch: forward, backward of the scaled loss
    train_step              one optimizer step over this rank's packs: lr, accumulate, clip, update
    Checkpointer            (checkpointing.py) save every N steps, keep N, resume from the latest
    MetricsLogger           (metrics.py) per-step loss and grad norm, read at the log interval
    run_steps               the loop over steps

train(cfg) -> TrainResult is one function for one or many processes. Under torchrun each
process runs it with the same cfg; in a plain process (or inside a process group the caller
started) it runs as is. Every rank tokenizes the data and plans the same packs; each takes its
share of every step. The loss of a step is the token loss summed over every rank and
accumulation micro-batch, divided by the step's labelled-token count, so the gradient does not
depend on how the step is split across processes.

No host sync per step. The loss divisor and the token counts come from the pack schedule,
which every rank computes on the host; pack tensors go to the GPU from pinned memory without
blocking; the loss and the gradient norm stay on the device until the metrics logger reads
them, every `log_every` steps, before each checkpoint and at the end.

Divergence is therefore found asynchronously. A NaN/inf loss or gradient norm at step k is
seen at the first read at or after step k; the error names step k (the first bad one, not the
step of the read). Steps after k, up to the read, ran on broken weights, but nothing of them is
kept: no log line, no checkpoint, no export. The newest checkpoint is the last good one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.attention import AttentionMetadata
from engine.config import ModelConfig
from engine.dtypes import dtype_of
from engine.tokenizer import Tokenizer
from engine.tracking import check_installed, make_tracker
from engine.training.checkpointing import Checkpointer, export_hf_model, list_checkpoints
from engine.training.config import TrainConfig
from engine.training.data import DataError, load_sft_samples
from engine.training.loss import CausalLMLoss
from engine.training.lora import is_lora_param
from engine.training.metrics import MetricsLogger, StepFacts, peak_flops, step_flops
from engine.training.optim import WarmupCosine, build_optimizer, clip_grad_norm, set_lr
from engine.training.packing import Pack, PackSchedule, to_training_samples
from engine.training.parallel import DistContext, build_sharded_model, init_distributed

LOG_NAME = "train_log.jsonl"


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN or infinite; the message names the step."""


class ResumeError(RuntimeError):
    """An output directory that this run cannot (or was not told to) continue or replace."""


@dataclass
class TrainResult:
    final_loss: float | None            # mean token loss of the last step
    losses: list[float]                 # one per optimizer step, from step 1 (resumed runs too)
    output_dir: str
    model_dir: str | None               # exported HF model; None if stopped early / export off
    tokens: int                         # input tokens trained on, all ranks, all steps
    loss_tokens: int                    # of which carried a label
    steps: int                          # optimizer steps done
    stopped_early: bool = False         # stop_at_step ended the run before its plan
    data: dict = field(default_factory=dict)   # records, samples, truncated, dropped


@dataclass
class TrainState:
    """Progress a checkpoint restores besides weights, optimizer and RNG."""
    step: int = 0                       # optimizer steps done
    losses: list[float] = field(default_factory=list)   # every step up to the last metrics read
    tokens: int = 0                     # input tokens, all ranks
    loss_tokens: int = 0


# --- the step ------------------------------------------------------------------------------
def forward_backward_step(model: CausalLMLoss, pack: Pack, loss_scale: float,
                          device: torch.device) -> torch.Tensor:
    """One micro-batch: forward, then backward of loss * loss_scale (gradients accumulate).
    Returns the pack's summed token loss, a detached fp32 0-d tensor on `device`."""
    ids, positions, labels, meta = _on_device(pack, device)
    loss = model(ids, positions, meta, labels)
    (loss * loss_scale).backward()
    return loss.detach()


def train_step(model: CausalLMLoss, optimizer: torch.optim.Optimizer, packs: list[Pack], *,
               lr: float, loss_scale: float, max_grad_norm: float,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One optimizer step over this rank's packs (grad_accum of them). Returns (this rank's
    summed token loss, the global gradient norm before clipping): fp32 0-d device tensors,
    not read back, so the host runs ahead of the device."""
    set_lr(optimizer, lr)
    loss_sum = torch.zeros((), device=device)
    for pack in packs:
        loss_sum += forward_backward_step(model, pack, loss_scale, device)
    grad_norm = clip_grad_norm(model, max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, grad_norm


def _on_device(pack: Pack, device: torch.device):
    """(input_ids, positions, labels, attention metadata) of a pack on `device`; on CUDA the
    host tensors are pinned and copied non_blocking, so the host never waits for the GPU."""
    meta = AttentionMetadata.for_lengths(pack.lengths, "cpu")
    tensors = (pack.input_ids, pack.positions, pack.labels, meta.cu_seqlens_q)
    if device.type == "cuda":
        tensors = tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)
    ids, positions, labels, cu = tensors
    return ids, positions, labels, dataclasses.replace(meta, cu_seqlens_q=cu)


# --- the run -------------------------------------------------------------------------------
@dataclass
class TrainingRun:
    """Everything the loop needs, built once by `_prepare`."""
    cfg: TrainConfig
    ctx: DistContext
    model_cfg: ModelConfig
    schedule: PackSchedule
    model: CausalLMLoss
    optimizer: torch.optim.Optimizer
    lr_at: WarmupCosine
    checkpointer: Checkpointer
    state: TrainState
    plan: dict                          # what a resume must find unchanged
    total_steps: int
    end_step: int                       # this invocation's last step (stop_at_step)
    adapter_params: int


def train(cfg: TrainConfig) -> TrainResult:
    """Fine-tune cfg.model on cfg.data; see TrainConfig for every setting."""
    cfg.validate()
    check_installed(cfg.tracker)
    threads = torch.get_num_threads()
    ctx = init_distributed(cfg.device)
    try:
        if ctx.device.type == "cpu":
            torch.set_num_threads(cpu_threads(cfg.cpu_threads))
        return _train(cfg, ctx)
    finally:
        torch.set_num_threads(threads)
        ctx.close()


def cpu_threads(setting: int) -> int:
    """Torch threads for CPU training: the setting, else $OMP_NUM_THREADS, else 1. One thread
    is the default because the small models trained on CPUs lose more to thread hand-offs
    (and to neighbours on a shared machine) than extra threads win."""
    if setting > 0:
        return setting
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else 1


def _train(cfg: TrainConfig, ctx: DistContext) -> TrainResult:
    out = Path(cfg.output)
    data = plan_data(cfg, ctx)
    finished = check_output_dir(cfg, ctx, data.plan)
    if finished is not None:
        return finished
    run, data_stats = _prepare(cfg, ctx, data), data.stats
    resumed = run.state.step > 0
    metrics = MetricsLogger(
        out / LOG_NAME, ctx, run.end_step, run.state.step, log_every=cfg.log_every,
        peak_flops=peak_flops(ctx.device), progress=cfg.progress, append=resumed,
        tracker=make_tracker(cfg.tracker, out / cfg.tracker, enabled=ctx.is_main,
                             run_name=out.name, config=cfg.to_dict()))
    metrics.event(event="resume" if resumed else "start", step=run.state.step,
                  total_steps=run.total_steps, world_size=ctx.world_size, **data_stats,
                  config=cfg.to_dict())
    model_dir = None
    try:
        run_steps(run, metrics)
        stopped_early = run.state.step < run.total_steps
        if cfg.export and not stopped_early:
            model_dir = out / "model"
            export_dtype = _dtype(cfg.export_dtype, run.model_cfg.torch_dtype)
            export_hf_model(run.model.lm, run.model_cfg, Path(cfg.model), model_dir, ctx, export_dtype)
            metrics.event(event="export", path=str(model_dir), dtype=str(export_dtype))
        result = TrainResult(
            final_loss=run.state.losses[-1] if run.state.losses else None, losses=run.state.losses,
            output_dir=str(out), model_dir=str(model_dir) if model_dir else None,
            tokens=run.state.tokens, loss_tokens=run.state.loss_tokens, steps=run.state.step,
            stopped_early=stopped_early, data=data_stats)
        if not stopped_early:   # marks the directory finished (see check_output_dir)
            metrics.event(event="end", plan=run.plan, result=dataclasses.asdict(result))
    finally:
        metrics.close()
    return result


def run_steps(run: TrainingRun, metrics: MetricsLogger) -> None:
    """The loop: a step, its metrics left on the device, a read of them at the log interval
    (where divergence is caught), a checkpoint when due."""
    cfg, ctx, state = run.cfg, run.ctx, run.state
    while state.step < run.end_step:
        step = state.step
        metrics.start_step()
        loss_tokens = run.schedule.step_loss_tokens(step)
        # FSDP averages gradients over ranks; scaling by world_size makes that a sum
        loss_sum, grad_norm = train_step(
            run.model, run.optimizer, run.schedule.rank_packs(step, ctx.rank), lr=run.lr_at(step),
            loss_scale=ctx.world_size / max(loss_tokens, 1), max_grad_norm=cfg.max_grad_norm,
            device=ctx.device)
        lengths = run.schedule.step_sample_lengths(step)
        state.step += 1
        state.tokens += sum(lengths)
        state.loss_tokens += loss_tokens
        flops = step_flops(run.model_cfg, lengths, run.adapter_params, full_finetune=not cfg.lora)
        metrics.record(StepFacts(state.step, run.schedule.locate(step)[0], run.lr_at(step),
                                 sum(lengths), loss_tokens, flops), loss_sum, grad_norm)
        save = run.checkpointer.due(state.step)
        if save or metrics.due(state.step) or state.step == run.end_step:
            read_metrics(run, metrics)
        if save:
            path = run.checkpointer.save(state.step, _trainer_state(run))
            metrics.event(event="checkpoint", step=state.step, path=str(path))


def read_metrics(run: TrainingRun, metrics: MetricsLogger) -> None:
    """Read the pending steps' losses and norms (one sync), log the good ones, and stop at the
    first non-finite one: every rank reads the same numbers, so every rank stops together."""
    records = metrics.read()
    bad = next((i for i, r in enumerate(records)
                if not (math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]))), None)
    good = records if bad is None else records[:bad]
    metrics.write(good)
    run.state.losses.extend(r["loss"] for r in good)
    if bad is not None:
        r = records[bad]
        what = f"loss is {r['loss']}" if not math.isfinite(r["loss"]) else f"gradient norm is {r['grad_norm']}"
        raise TrainingDiverged(
            f"{what} at step {r['step']} (found when reading metrics after step {records[-1]['step']}); "
            f"nothing from step {r['step']} on was saved. Last good checkpoint: "
            f"{run.checkpointer.last or 'none written yet'}. Try a lower lr (it was "
            f"{r['lr']:.3g}) or max_grad_norm.")


def _trainer_state(run: TrainingRun) -> dict:
    epoch, step_in_epoch = run.schedule.locate(run.state.step - 1)
    return {**dataclasses.asdict(run.state), "plan": run.plan,
            "data_position": {"epoch": epoch, "steps_done_in_epoch": step_in_epoch + 1}}


@dataclass
class PlannedData:
    """The tokenized data and the packs of every step (the same on every rank)."""
    schedule: PackSchedule
    plan: dict                          # what a resume must find unchanged
    stats: dict                         # records, samples, truncated, dropped


def plan_data(cfg: TrainConfig, ctx: DistContext) -> PlannedData:
    tokenizer = Tokenizer.from_pretrained(cfg.model)
    records = load_sft_samples(cfg.data, tokenizer, cfg.prompt_format, cfg.layout)
    samples, overlong = to_training_samples(records, cfg.seq_len, cfg.overlong)
    if not samples:
        raise DataError(f"no sample fits seq_len={cfg.seq_len} with overlong={cfg.overlong!r} "
                        f"({overlong.dropped} of {len(records)} dropped)")
    filler = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else samples[0].input_ids[0]
    schedule = PackSchedule(samples, cfg.seq_len, cfg.seed, cfg.epochs, ctx.world_size,
                            cfg.grad_accum, filler)
    total_steps = min(schedule.total_steps, cfg.max_steps or schedule.total_steps)
    plan = {"packs_per_step": schedule.packs_per_step, "total_steps": total_steps,
            "data_fingerprint": _fingerprint(samples)}
    stats = {"records": len(records), "samples": len(samples),
             "truncated": overlong.truncated, "dropped": overlong.dropped}
    return PlannedData(schedule, plan, stats)


def _prepare(cfg: TrainConfig, ctx: DistContext, data: PlannedData) -> TrainingRun:
    """The sharded model, the optimizer, and the state restored from the latest checkpoint
    when resuming."""
    model_cfg = ModelConfig.from_file(cfg.model)
    torch.manual_seed(cfg.seed + ctx.rank)      # LoRA dropout: a different stream per rank
    compute_dtype = _dtype(cfg.param_dtype, "bfloat16" if ctx.device.type == "cuda" else "float32")
    lora = (dict(targets=cfg.lora_targets, rank=cfg.lora_rank, alpha=cfg.lora_alpha,
                 dropout=cfg.lora_dropout) if cfg.lora else None)
    model = build_sharded_model(cfg.model, ctx, compute_dtype, lora=lora,
                                activation_checkpointing=cfg.activation_checkpointing,
                                compile=cfg.compile, seed=cfg.seed)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.adam_beta1, cfg.adam_beta2),
                                cfg.adam_eps, ctx.device)
    checkpointer = Checkpointer(Path(cfg.output) / "checkpoints", model, optimizer, ctx,
                                every=cfg.checkpoint_every, keep=cfg.keep_checkpoints,
                                stop_at=cfg.stop_at_step)
    state = TrainState()
    if checkpointer.latest() is not None:       # check_output_dir allowed it: resume=true
        saved = checkpointer.load_latest()
        _check_same_plan(saved["plan"], data.plan, checkpointer.last)
        state = TrainState(saved["step"], saved["losses"], saved["tokens"], saved["loss_tokens"])
    total_steps = data.plan["total_steps"]
    return TrainingRun(cfg, ctx, model_cfg, data.schedule, model, optimizer,
                       WarmupCosine(cfg.lr, cfg.min_lr, cfg.warmup_steps, total_steps), checkpointer,
                       state, data.plan, total_steps, min(total_steps, cfg.stop_at_step or total_steps),
                       sum(p.numel() for n, p in model.named_parameters() if is_lora_param(n)))


# --- the output directory ------------------------------------------------------------------
def check_output_dir(cfg: TrainConfig, ctx: DistContext, plan: dict) -> TrainResult | None:
    """Refuse to mix runs in one output directory (every rank checks the shared filesystem).

    - overwrite=true: the trainer's files there (checkpoints/, model/, train_log.jsonl, the
      tracker's folder) are removed and the run starts over.
    - a finished run (an `end` record in train_log.jsonl, or an exported model/): refused;
      with resume=true and the same plan (data, batch, length) its recorded result is
      returned: there is nothing left to do.
    - checkpoints: refused unless resume=true (then _prepare continues the latest).
    Returns the finished run's result, or None to train."""
    out = Path(cfg.output)
    ckpt_dir, model_dir, log = out / "checkpoints", out / "model", out / LOG_NAME
    if cfg.overwrite:
        if ctx.is_main:
            for path in (ckpt_dir, model_dir, out / "tensorboard", out / "wandb"):
                shutil.rmtree(path, ignore_errors=True)
            log.unlink(missing_ok=True)
        ctx.barrier()
        return None
    end = _end_record(log)
    if end is not None or model_dir.is_dir():
        if cfg.resume and end is not None:
            _check_same_plan(end["plan"], plan, log)
            return TrainResult(**end["result"])
        what = "a finished run" + (f" ({LOG_NAME} ends it)" if end else f" (exported {model_dir})")
        raise ResumeError(f"{out} already holds {what}: pass overwrite=true to replace it, "
                          "or choose another output directory")
    ckpts = list_checkpoints(ckpt_dir)
    if ckpts and not cfg.resume:
        raise ResumeError(f"{ckpt_dir} already holds {ckpts[-1].name}: pass resume=true to "
                          "continue that run, overwrite=true to start over, or choose another "
                          "output directory")
    return None


def _end_record(log: Path) -> dict | None:
    if not log.is_file():
        return None
    for line in reversed(log.read_text().splitlines()):
        record = json.loads(line)
        if record.get("event") in ("start", "resume"):
            return None
        if record.get("event") == "end":
            return record
    return None


def _dtype(name: str, auto: str) -> torch.dtype:
    return dtype_of(auto if name == "auto" else name)


def _fingerprint(samples) -> str:
    """Identifies the tokenized data, so a resume on different data is refused."""
    h = hashlib.sha256()
    for s in samples:
        h.update(len(s).to_bytes(4, "little"))
        h.update(str(s.input_ids[:8]).encode())
    return h.hexdigest()[:16]


def _check_same_plan(saved: dict, now: dict, path: Path) -> None:
    for key, why in (("data_fingerprint", "the data (or seq_len, overlong, prompt_format) changed"),
                     ("packs_per_step", "world_size x grad_accum (the global batch) changed"),
                     ("total_steps", "the planned length (epochs, max_steps) changed")):
        if saved.get(key) != now[key]:
            raise ResumeError(f"cannot resume from {path}: {why} "
                               f"({key}: saved {saved.get(key)}, now {now[key]})")
