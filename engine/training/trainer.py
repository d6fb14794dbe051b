"""The fine-tuning loop: train(cfg) -> TrainResult, one function for one or many processes.

Under torchrun each process runs train() with the same cfg; in a plain process (or inside a
process group the caller started) it runs as is. Every rank tokenizes the data and plans the
same packs; each takes its share of every step. The loss of a step is the token loss summed
over every rank and accumulation micro-batch, divided by the step's labelled-token count, so
the gradient does not depend on how the step is split across processes.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from engine.config import ModelConfig
from engine.tokenizer import Tokenizer
from engine.training.checkpointing import (export_hf_model, list_checkpoints, load_checkpoint,
                                           save_checkpoint)
from engine.training.config import TrainConfig
from engine.training.data import DataError, load_sft_samples
from engine.training.lora import is_lora_param
from engine.training.metrics import TrainLogger, peak_flops, peak_memory_gb, peak_rss_gb, step_flops
from engine.training.optim import WarmupCosine, build_optimizer, clip_grad_norm, set_lr
from engine.training.packing import PackSchedule, to_training_samples
from engine.training.parallel import DistContext, build_sharded_model, init_distributed

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class TrainingDiverged(RuntimeError):
    """The loss or gradient norm became NaN or infinite; the message names the step."""


class ResumeError(RuntimeError):
    """Checkpoints in the output directory that this run cannot (or was not told to) continue."""


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


def train(cfg: TrainConfig) -> TrainResult:
    """Fine-tune cfg.model on cfg.data; see TrainConfig for every setting."""
    cfg.validate()
    ctx = init_distributed(cfg.device)
    try:
        return _train(cfg, ctx)
    finally:
        ctx.close()


def _train(cfg: TrainConfig, ctx: DistContext) -> TrainResult:
    out = Path(cfg.output)
    ckpt_root = out / "checkpoints"
    model_cfg = ModelConfig.from_file(cfg.model)
    tokenizer = Tokenizer.from_pretrained(cfg.model)

    # --- data: the same packs on every rank ------------------------------------------------
    records = load_sft_samples(cfg.data, tokenizer, cfg.prompt_format, cfg.layout)
    samples, overlong = to_training_samples(records, cfg.seq_len, cfg.overlong)
    if not samples:
        raise DataError(f"no sample fits seq_len={cfg.seq_len} with overlong={cfg.overlong!r} "
                        f"({overlong.dropped} of {len(records)} dropped)")
    filler = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else samples[0].input_ids[0]
    schedule = PackSchedule(samples, cfg.seq_len, cfg.seed, cfg.epochs, ctx.world_size,
                            cfg.grad_accum, filler)
    total_steps = min(schedule.total_steps, cfg.max_steps or schedule.total_steps)
    end_step = min(total_steps, cfg.stop_at_step or total_steps)
    data_stats = {"records": len(records), "samples": len(samples),
                  "truncated": overlong.truncated, "dropped": overlong.dropped}

    # --- model and optimizer ---------------------------------------------------------------
    torch.manual_seed(cfg.seed + ctx.rank)      # LoRA dropout: a different stream per rank
    compute_dtype = _dtype(cfg.param_dtype, "bfloat16" if ctx.device.type == "cuda" else "float32")
    lora = (dict(targets=cfg.lora_targets, rank=cfg.lora_rank, alpha=cfg.lora_alpha,
                 dropout=cfg.lora_dropout) if cfg.lora else None)
    model = build_sharded_model(cfg.model, ctx, compute_dtype, lora=lora,
                                activation_checkpointing=cfg.activation_checkpointing,
                                compile=cfg.compile, seed=cfg.seed)
    optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.adam_beta1, cfg.adam_beta2),
                                cfg.adam_eps, ctx.device)
    lr_at = WarmupCosine(cfg.lr, cfg.min_lr, cfg.warmup_steps, total_steps)
    adapter_params = sum(p.numel() for n, p in model.named_parameters() if is_lora_param(n))
    peak = peak_flops(ctx.device)

    # --- resume ----------------------------------------------------------------------------
    plan = {"packs_per_step": schedule.packs_per_step, "total_steps": total_steps,
            "data_fingerprint": _fingerprint(samples)}
    step, losses, tokens_seen, loss_tokens_seen = 0, [], 0, 0
    last_checkpoint = None
    found = list_checkpoints(ckpt_root)
    if found and not cfg.resume:
        raise ResumeError(f"{ckpt_root} already holds {found[-1].name}: pass resume=true to "
                           "continue that run, or choose another output directory")
    if found:
        last_checkpoint = found[-1]
        state = load_checkpoint(last_checkpoint, model, optimizer, ctx)
        _check_same_plan(state["plan"], plan, last_checkpoint)
        step, losses = state["step"], state["losses"]
        tokens_seen, loss_tokens_seen = state["tokens"], state["loss_tokens"]

    log = TrainLogger(out / "train_log.jsonl", ctx.is_main, end_step, step, cfg.progress,
                      append=step > 0)
    log.event(event="resume" if step else "start", step=step, total_steps=total_steps,
              world_size=ctx.world_size, **data_stats, config=cfg.to_dict())
    try:
        # --- the loop ----------------------------------------------------------------------
        while step < end_step:
            t0 = time.perf_counter()
            epoch, step_in_epoch = schedule.locate(step)
            lr = lr_at(step)
            set_lr(optimizer, lr)
            step_loss_tokens = schedule.step_loss_tokens(step)
            # FSDP averages gradients over ranks; scaling by world_size makes that a sum
            scale = ctx.world_size / max(step_loss_tokens, 1)
            loss_sum = torch.zeros((), device=ctx.device)
            for pack in schedule.rank_packs(step, ctx.rank):
                pack = pack.to(ctx.device)
                loss = model(pack.input_ids, pack.positions, pack.metadata(ctx.device), pack.labels)
                (loss * scale).backward()
                loss_sum += loss.detach()
            # every rank gets the same numbers below, so every rank stops together
            loss_value = float(ctx.all_reduce_sum(loss_sum)) / max(step_loss_tokens, 1)
            if not math.isfinite(loss_value):
                raise _diverged(f"loss is {loss_value}", step, lr, last_checkpoint)
            grad_norm = clip_grad_norm(model, cfg.max_grad_norm)
            if not math.isfinite(grad_norm):
                raise _diverged(f"gradient norm is {grad_norm}", step, lr, last_checkpoint)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ctx.device.type == "cuda":
                torch.cuda.synchronize(ctx.device)
            seconds = time.perf_counter() - t0

            lengths = schedule.step_sample_lengths(step)
            step += 1
            losses.append(loss_value)
            tokens_seen += sum(lengths)
            loss_tokens_seen += step_loss_tokens
            flops = step_flops(model_cfg, lengths, adapter_params, full_finetune=not cfg.lora)
            log.step({"step": step, "epoch": epoch, "loss": loss_value, "grad_norm": grad_norm,
                      "lr": lr, "tokens": sum(lengths), "loss_tokens": step_loss_tokens,
                      "step_time_s": seconds, "tokens_per_s": sum(lengths) / seconds,
                      "mfu": flops / (seconds * ctx.world_size * peak) if peak else None,
                      "peak_mem_gb": peak_memory_gb(ctx.device), "peak_rss_gb": peak_rss_gb()})

            if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step == cfg.stop_at_step:
                state = {"step": step, "losses": losses, "tokens": tokens_seen,
                         "loss_tokens": loss_tokens_seen, "plan": plan,
                         "data_position": {"epoch": epoch, "steps_done_in_epoch": step_in_epoch + 1}}
                last_checkpoint = save_checkpoint(ckpt_root, step, model, optimizer, state, ctx,
                                                  cfg.keep_checkpoints)
                log.event(event="checkpoint", step=step, path=str(last_checkpoint))

        # --- export ------------------------------------------------------------------------
        stopped_early = step < total_steps
        model_dir = None
        if cfg.export and not stopped_early:
            model_dir = out / "model"
            export_dtype = _dtype(cfg.export_dtype, model_cfg.torch_dtype)
            export_hf_model(model.lm, model_cfg, Path(cfg.model), model_dir, ctx, export_dtype)
            log.event(event="export", path=str(model_dir), dtype=str(export_dtype))
    finally:
        log.close()
    return TrainResult(final_loss=losses[-1] if losses else None, losses=losses, output_dir=str(out),
                       model_dir=str(model_dir) if model_dir else None, tokens=tokens_seen,
                       loss_tokens=loss_tokens_seen, steps=step, stopped_early=stopped_early,
                       data=data_stats)


def _diverged(what: str, step: int, lr: float, last_checkpoint: Path | None) -> TrainingDiverged:
    return TrainingDiverged(
        f"{what} at step {step + 1}; stopped before updating the weights. Last good checkpoint: "
        f"{last_checkpoint or 'none written yet'}. Try a lower lr (now {lr:.3g}) or max_grad_norm.")


def _dtype(name: str, auto: str) -> torch.dtype:
    name = auto if name == "auto" else name
    name = name.replace("torch.", "")
    if name not in _DTYPES:
        raise ValueError(f"dtype {name!r}: expected one of {', '.join(_DTYPES)}")
    return _DTYPES[name]


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
