"""The I-SHEEP loop: a pipeline of resumable stages over one run directory.

    M_0 measures -> for each iteration: prompts -> responses -> assessed -> train_data
                    -> model -> measures of M_i -> report

then, for each control arm in run.controls, the same pipeline in run_dir/controls/<arm>
answering the main arm's prompts. Under torchrun every rank runs this same code: generation
and scoring split the requests across ranks, training shards the model with FSDP2, and only
rank 0 writes files.
"""
from __future__ import annotations

import copy
import gc
import logging
import time
from pathlib import Path

import torch

from engine.distributed import barrier, init_process_group
from engine.files import atomic_write_json
from engine.selfalign import measures, stages
from engine.selfalign.run_directory import RunDirectory
from engine.selfalign.run_record import check_resume_settings, record_invocation, save_config
from engine.selfalign.selection import choose_start_model
from engine.selfalign.settings import IsheepConfig
from engine.settings import apply_overrides

log = logging.getLogger("sheep.isheep")

_current = {"stage": "start-up"}


def current_stage() -> str:
    """The stage this process is in (for the one-line message on Ctrl-C)."""
    return _current["stage"]


DATA_STAGES = (("prompts", stages.synthesize_prompts), ("responses", stages.generate_responses),
               ("assessed", stages.assess_pairs), ("train_data", stages.select_data))


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
            self.llm = LLM(str(model_dir), dtype=run_dtype(r), device=run_device(r),
                           kv_cache_bytes=g.kv_cache_bytes, gpu_memory_utilization=g.gpu_memory_utilization,
                           max_num_seqs=g.max_num_seqs, max_num_batched_tokens=g.max_num_batched_tokens,
                           truncate_prompts=True, seed=r.seed, data_parallel=True)
            self.path = model_dir
        return self.llm

    def release(self) -> None:
        if self.llm is None:
            return
        self.llm.close()
        self.llm, self.path = None, None
        gc.collect()        # the old model's memory back before the next one loads
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_device(r) -> str:
    if r.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return r.device


def run_dtype(r) -> str:
    if r.dtype != "auto":
        return r.dtype
    return "bfloat16" if run_device(r) == "cuda" else "float32"


def run_isheep(cfg: IsheepConfig) -> RunDirectory:
    """Run (or resume) the main arm, then every control arm; returns the main run directory."""
    rank, _ = init_process_group(run_device(cfg.run))
    cfg.run.run_dir = str(cfg.run_dir)       # config.toml records where the run lives
    if cfg.run.cpu_threads and run_device(cfg.run) == "cpu":
        torch.set_num_threads(cfg.run.cpu_threads)
    main = run_arm(cfg, rank)
    for name, overrides in cfg.run.controls.items():
        run_arm(control_config(cfg, name, overrides), rank, main=main)
    if rank == 0:
        from engine.selfalign.report import write_report
        write_report(cfg, main)
    barrier()
    return main


def control_config(cfg: IsheepConfig, name: str, overrides: list[str]) -> IsheepConfig:
    """The main config with the arm's overrides, in run_dir/controls/<name>, on the main
    arm's prompts."""
    arm = copy.deepcopy(cfg)
    apply_overrides(arm, overrides, source=f"run.controls.{name}")
    arm.run.run_dir = str(cfg.run_dir / "controls" / name)
    arm.run.name = f"{cfg.run.name}/{name}"
    arm.run.controls = {}
    arm.synthesis.prompts_from = str(cfg.run_dir)
    arm._extensions = cfg.extensions
    return arm


def run_arm(cfg: IsheepConfig, rank: int, main: RunDirectory | None = None) -> RunDirectory:
    run = RunDirectory(cfg.run_dir, is_writer=rank == 0)
    check_resume_settings(cfg, run)          # refuses changed decisions before any work
    if rank == 0:
        run.root.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run)
        record_invocation(cfg, run)
    barrier()
    handler = _log_to_run_dir(run) if rank == 0 else None
    from engine.tracking import make_tracker
    tracker = make_tracker(cfg.run.tracker, run.root / cfg.run.tracker, enabled=rank == 0,
                           run_name=cfg.run.name, config=cfg.flat())
    base_dir = Path(cfg.run.model)
    pool = ModelPool(cfg)
    log.info("I-SHEEP run %s: %d iterations, base model %s", run.root, cfg.run.iterations, base_dir)
    try:
        ctx0 = _context(cfg, run, 0, base_dir, base_dir, pool, rank)
        if main is not None:        # M_0 is shared: its measures are the main arm's
            _share_base_measures(main, run)
        else:
            _measure_stages(ctx0, base_dir, None)
        previous = base_dir
        for it in range(1, cfg.run.iterations + 1):
            ctx = _context(cfg, run, it, base_dir, previous, pool, rank)
            if rank == 0:
                run.iter_dir(it).mkdir(parents=True, exist_ok=True)
            barrier()
            for name, fn in DATA_STAGES:
                _stage(run, it, name, lambda fn=fn: fn(ctx))
            start = choose_start_model(cfg.training.start_from, base_dir, previous if it > 1 else None)
            if not run.stage_done(it, "model"):
                pool.release()       # training needs the memory the KV cache held
            _stage(run, it, "model", lambda: stages.finetune(ctx, start))
            model_dir = run.model_dir(it)
            _measure_stages(ctx, model_dir, previous)
            tracker.log(iteration_figures(run, it), step=it)
            if rank == 0:
                atomic_write_json(run.path(it, "stats.json"),
                                  {"iteration": it, "counts": run.all_counts().get(it, {}),
                                   "seconds": run.stage_seconds().get(it, {})})
                from engine.selfalign.report import write_report
                write_report(cfg, run)
            barrier()
            previous = model_dir
    finally:
        pool.release()
        tracker.close()
        if handler is not None:
            logging.getLogger("sheep").removeHandler(handler)
            handler.close()
    return run


def _context(cfg, run, it, base_dir, generator_dir, pool, rank) -> stages.IterationContext:
    from engine.selfalign.progress import stage_bar

    return stages.IterationContext(cfg, run, it, base_dir, generator_dir, pool.get, barrier,
                                   progress=lambda label, total: stage_bar(f"iter {it} {label}", total,
                                                                           rank == 0))


def _measure_stages(ctx: stages.IterationContext, model_dir: Path, previous: Path | None) -> None:
    """eval.json's parts for one model: IFEval, harness tasks, every extension's measures."""
    cfg, run, it = ctx.cfg, ctx.run, ctx.iteration
    jobs = []
    if cfg.eval.enabled:
        jobs.append(("eval", "ifeval", lambda: measures.ifeval_and_pairwise(ctx, model_dir, previous)))
    for task in cfg.eval.harness_tasks:
        jobs.append((f"harness:{task}", f"harness.{task}",
                     lambda task=task: measures.harness_task(ctx, model_dir, task)))
    for ext in cfg.extensions:
        jobs.append((ext.name, ext.name, lambda ext=ext: measures.extension_measures(ctx, ext, model_dir)))
    for stage, key, fn in jobs:
        def job(key=key, fn=fn):
            result = fn()
            measures.write_eval_part(run, it, key, result)
            return _headline(result)
        _stage(run, it, stage, job)


def iteration_figures(run: RunDirectory, it: int) -> dict[str, float]:
    """Every number of an iteration's counts and eval.json, flattened as "stage/key" (for a
    tracker)."""
    out: dict[str, float] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[prefix] = float(value)

    for stage, counts in run.all_counts().get(it, {}).items():
        walk(f"counts/{stage}", {k: v for k, v in counts.items() if k != "losses"})
    walk("eval", measures.read_eval(run, it))
    return out


def _headline(result: dict) -> dict:
    """The numbers of a measure worth a line in the manifest (not its whole tree)."""
    return {k: v for k, v in result.items() if isinstance(v, (int, float, str, bool)) or v is None}


def _share_base_measures(main: RunDirectory, run: RunDirectory) -> None:
    if run.is_writer and not run.stage_done(0, "shared"):
        measures_of_base = measures.read_eval(main, 0)
        for key, value in measures_of_base.items():
            measures.write_eval_part(run, 0, key, value)
        run.mark_done(0, "shared", {"from": str(main.root)}, 0.0)
    barrier()


def _stage(run: RunDirectory, it: int, name: str, fn) -> None:
    if run.stage_done(it, name):
        log.info("iteration %d: %s already done, skipped", it, name)
        return
    log.info("iteration %d: %s started", it, name)
    t0 = time.time()
    arm = f"control {run.root.name}, " if run.root.parent.name == "controls" else ""
    _current["stage"] = f"{arm}iteration {it} {name}"
    with run.timed_stage(it, name) as box:
        box["counts"] = fn()
    log.info("iteration %d: %s done in %.1fs: %s", it, name, time.time() - t0,
             {k: v for k, v in box["counts"].items() if k != "losses"})


def _log_to_run_dir(run: RunDirectory) -> logging.Handler:
    """run.log in the run directory: stage starts and ends, counts, warnings, errors; kept
    across resumes (appended)."""
    handler = logging.FileHandler(run.root / "run.log", mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger("sheep")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return handler
