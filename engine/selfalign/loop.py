"""The I-SHEEP loop: N iterations of synthesis, answers, self-assessment, fine-tuning and
evaluation over one run directory, resumable at any point.

Under torchrun every rank runs this same code: generation and scoring split the requests
across ranks (engine.generation gathers the results back in order on every rank), training
shards the model with FSDP2, and only rank 0 writes files.
"""
from __future__ import annotations

import gc
import json
import logging
import os
import time
from pathlib import Path

import torch

from engine.selfalign.records import atomic_write_json
from engine.selfalign.run_directory import RunDirectory
from engine.selfalign.selection import choose_start_model
from engine.selfalign.settings import IsheepConfig
from engine.selfalign import stages

log = logging.getLogger("sheep.isheep")


def init_distributed() -> tuple[int, int]:
    """(rank, world size); joins the torchrun process group when there is one."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


class ModelPool:
    """Keeps one engine.LLM loaded at a time: the stages switch models rarely, and a second
    model (with its KV cache) would not fit next to the first on a large checkpoint."""

    def __init__(self, cfg: IsheepConfig):
        self.cfg = cfg
        self.path: Path | None = None
        self.llm = None

    def get(self, model_dir: Path):
        model_dir = Path(model_dir).resolve()
        if self.path != model_dir:
            self.release()
            from engine.generation import LLM

            g, r = self.cfg.generation, self.cfg.run
            self.llm = LLM(str(model_dir), dtype=_dtype(r), device=_device(r),
                           kv_cache_bytes=g.kv_cache_bytes, gpu_memory_utilization=g.gpu_memory_utilization,
                           max_num_seqs=g.max_num_seqs, max_num_batched_tokens=g.max_num_batched_tokens,
                           truncate_prompts=True, seed=r.seed)
            self.path = model_dir
        return self.llm

    def release(self) -> None:
        self.llm, self.path = None, None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _device(r) -> str:
    if r.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return r.device


def _dtype(r) -> str:
    if r.dtype != "auto":
        return r.dtype
    return "bfloat16" if _device(r) == "cuda" else "float32"


def prepare_base_model(cfg: IsheepConfig, run: RunDirectory) -> Path:
    """M_0: the configured checkpoint, or the tiny random preset written into the run."""
    if cfg.run.model:
        path = Path(cfg.run.model)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"run.model = {path}: not a checkpoint directory (no config.json)")
        return path
    path = run.root / "base_model"
    if run.is_writer and not (path / "model.safetensors").is_file():
        from engine.presets import write_tiny

        tmp = run.root / "base_model.tmp"
        write_tiny(tmp, seed=cfg.run.seed)
        if path.exists():
            import shutil
            shutil.rmtree(path)
        tmp.rename(path)
    _barrier()
    return path


def run_isheep(cfg: IsheepConfig) -> RunDirectory:
    rank, world = init_distributed()
    if cfg.run.cpu_threads and _device(cfg.run) == "cpu":
        torch.set_num_threads(cfg.run.cpu_threads)
    run = RunDirectory(cfg.run_dir, is_writer=rank == 0)
    if rank == 0:
        run.root.mkdir(parents=True, exist_ok=True)
        _save_config(cfg, run)
    _barrier()
    base_dir = prepare_base_model(cfg, run)
    pool = ModelPool(cfg)
    log.info("I-SHEEP run %s: %d iterations, base model %s, %d rank(s)", run.root, cfg.run.iterations,
             base_dir, world)
    if cfg.eval.enabled and not run.stage_done(0, "eval"):
        ctx0 = stages.IterationContext(cfg, run, 0, base_dir, base_dir, pool.get, _barrier)
        with run.timed_stage(0, "eval") as box:
            box["counts"] = stages.evaluate_iteration(ctx0, base_dir, None)
            _write_eval(run, 0, box["counts"])
    if cfg.world.enabled and not run.stage_done(0, "world"):
        ctx0 = stages.IterationContext(cfg, run, 0, base_dir, base_dir, pool.get, _barrier)
        with run.timed_stage(0, "world") as box:
            box["counts"] = stages.world_metrics(ctx0, base_dir)
    previous = base_dir
    for it in range(1, cfg.run.iterations + 1):
        ctx = stages.IterationContext(cfg, run, it, base_dir, previous, pool.get, _barrier)
        if rank == 0:
            run.iter_dir(it).mkdir(parents=True, exist_ok=True)
        _barrier()
        _stage(run, it, "prompts", lambda: stages.synthesize_prompts(ctx))
        _stage(run, it, "responses", lambda: stages.generate_responses(ctx))
        _stage(run, it, "assessed", lambda: stages.assess_pairs(ctx))
        _stage(run, it, "train_data", lambda: stages.select_data(ctx))
        start = choose_start_model(cfg.training.start_from, base_dir, previous if it > 1 else None)
        if not run.stage_done(it, "model"):
            pool.release()       # training needs the memory the KV cache held
        _stage(run, it, "model", lambda: stages.finetune(ctx, start))
        model_dir = run.model_dir(it)
        if cfg.eval.enabled:
            def do_eval():
                metrics = stages.evaluate_iteration(ctx, model_dir, previous)
                _write_eval(run, it, metrics)
                return metrics
            _stage(run, it, "eval", do_eval)
        if cfg.world.enabled:
            _stage(run, it, "world", lambda: stages.world_metrics(ctx, model_dir))
        if rank == 0:
            _write_stats(run, it)
            from engine.selfalign.report import write_report
            write_report(cfg, run)
        _barrier()
        previous = model_dir
    pool.release()
    return run


def _stage(run: RunDirectory, it: int, name: str, fn) -> None:
    if run.stage_done(it, name):
        log.info("iteration %d: %s already done, skipped", it, name)
        return
    t0 = time.time()
    with run.timed_stage(it, name) as box:
        box["counts"] = fn()
    log.info("iteration %d: %s done in %.1fs: %s", it, name, time.time() - t0,
             {k: v for k, v in box["counts"].items() if k != "losses"})


def _write_eval(run: RunDirectory, it: int, metrics: dict) -> None:
    if run.is_writer:
        path = run.root / "base_eval.json" if it == 0 else run.path(it, "eval.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, metrics)


def _write_stats(run: RunDirectory, it: int) -> None:
    stats = {"iteration": it, "counts": run.all_counts().get(it, {}),
             "seconds": run.stage_seconds().get(it, {})}
    atomic_write_json(run.path(it, "stats.json"), stats)


def _save_config(cfg: IsheepConfig, run: RunDirectory) -> None:
    path = run.root / "config.toml"
    tmp = path.with_name("config.toml.tmp")
    tmp.write_text(cfg.to_toml())
    os.replace(tmp, path)
    (run.root / "environment.json").write_text(json.dumps({
        "torch": torch.__version__, "cuda": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}, indent=2))
