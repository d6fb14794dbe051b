"""Standard benchmarks through lm-evaluation-harness, computed by our engine.

    check_tasks(["gsm8k", "ifeval"])                     # unknown names fail here, no model yet
    results = evaluate_tasks("path/to/model", ["gsm8k"], limit=100)
    results["results"]["gsm8k"]["exact_match,strict-match"]

lm-eval (``pip install -e ".[eval]"``) is an optional extra: nothing here imports it until a
function is called, and a missing install raises one ImportError naming the extra. The
model class itself (``SheepLM``, registered in lm-eval as ``sheep``) is in
``engine.eval.harness_lm``.

Task data comes from the harness's own loading (the Hugging Face hub, or the local datasets
cache with ``HF_DATASETS_OFFLINE=1``); ``include_path`` adds a folder of task YAMLs.
"""
from __future__ import annotations

import contextlib
import functools
import json
import random
from pathlib import Path

EXTRA_INSTALL = 'pip install -e ".[eval]"'


def require_lm_eval():
    """The lm_eval module, or an ImportError that says which extra to install."""
    try:
        import lm_eval
    except ImportError as err:
        raise ImportError(f"lm-evaluation-harness is not installed; it is the engine's 'eval' "
                          f"extra: {EXTRA_INSTALL} (or pip install 'lm-eval>=0.4,<0.5')") from err
    return lm_eval


@functools.lru_cache(maxsize=8)
def _task_manager(include_path: str | None, include_defaults: bool):
    from lm_eval.tasks import TaskManager

    if include_path is not None and not Path(include_path).is_dir():
        raise FileNotFoundError(f"include_path {include_path}: no such folder of task YAMLs")
    return TaskManager(include_path=include_path, include_defaults=include_defaults)


def task_manager(task_names: list[str], include_path: str | None = None):
    """An lm-eval TaskManager that knows ``task_names``. Indexing lm-eval's few thousand
    built-in YAMLs takes seconds (one index is kept per include path), so tasks that are all
    in ``include_path`` get an index of that folder alone."""
    require_lm_eval()
    path = None if include_path is None else str(Path(include_path).resolve())
    if path is not None:
        local = _task_manager(path, False)
        if all(name in local.all_subtasks for name in task_names):
            return local
    return _task_manager(path, True)


def check_tasks(task_names: list[str], include_path: str | None = None) -> None:
    """Raise ValueError naming the first task (or group, tag, YAML file) lm-eval does not know.

    Runs before any model loads: no dataset is downloaded and no task is built.
    """
    require_lm_eval()
    if isinstance(task_names, str) or not task_names:
        raise ValueError(f"harness tasks must be a non-empty list of names, got {task_names!r}")
    known = set(task_manager(task_names, include_path).all_tasks)
    unknown = [t for t in task_names if t not in known and not Path(t).is_file()]
    if unknown:
        where = f"lm-eval's tasks or {include_path}" if include_path else "lm-eval's tasks"
        more = f" (and {len(unknown) - 1} more: {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
        raise ValueError(f"unknown lm-eval task {unknown[0]!r}{more}: not in {where} "
                         "(`lm-eval ls tasks` lists them; --include-path adds a folder of YAMLs)")


def evaluate_tasks(llm_or_model_dir, task_names: list[str], *, num_fewshot: int | None = None,
                   limit: int | float | None = None, include_path: str | None = None,
                   chat_template: bool = False, log_samples: bool = False,
                   bootstrap_iters: int = 100000, **llm_kwargs) -> dict | None:
    """Run lm-eval's ``simple_evaluate`` on ``task_names`` with our engine as the model.

    ``llm_or_model_dir`` is an engine ``LLM`` (used as is) or a model directory (loaded once,
    with ``llm_kwargs`` such as dtype / device). Under torchrun every rank must call this;
    the engine shards each batch of requests over the ranks.

    Returns the harness's results dict made JSON-safe (``results`` per task and metric,
    ``n-shot``, ``configs``, ``versions``, ``n-samples``, ``samples`` with log_samples, ...)
    plus ``sheep``: {"truncated_requests": {request type: count}, "max_length": tokens}.
    Returns None on ranks other than local rank 0 (lm-eval's own rule). The python, numpy
    and torch random states are as they were before the call (lm-eval seeds them globally).
    """
    check_tasks(task_names, include_path)
    lm_eval = require_lm_eval()
    from lm_eval.utils import handle_non_serializable

    from engine.eval.harness_lm import SheepLM

    if isinstance(llm_or_model_dir, (str, Path)):
        lm = SheepLM(str(llm_or_model_dir), **llm_kwargs)
    else:
        lm = SheepLM(llm=llm_or_model_dir, **llm_kwargs)
    with _callers_random_state():
        results = lm_eval.simple_evaluate(
            model=lm, tasks=list(task_names), num_fewshot=num_fewshot, limit=limit,
            task_manager=task_manager(task_names, include_path), apply_chat_template=chat_template,
            log_samples=log_samples, bootstrap_iters=bootstrap_iters)
    if results is None:
        return None
    results = json.loads(json.dumps(results, default=handle_non_serializable))
    results["sheep"] = {"truncated_requests": dict(lm.truncated), "max_length": lm.max_length}
    return results


@contextlib.contextmanager
def _callers_random_state():
    """simple_evaluate seeds python, numpy and torch globally; a caller's own draws (the
    loop's sampling and shuffles) must not depend on whether an evaluation ran in between."""
    import numpy as np
    import torch

    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
