"""The loop's extension point: a toy world, a benchmark or extra prompt filters plug in here,
and the loop imports none of them.

A run names its extensions by module in its config:

    [run]
    extensions = ["engine.world.extension"]

Each module has a module-level `EXTENSION`, an instance of a LoopExtension subclass. Its
settings (a dataclass, `settings_class`) are the config section named `name`, validated with
every other setting when the config is read, before any model loads. The loop calls it at
fixed points and never asks what it is:

  filter_prompt        after the heuristic prompt filters: a drop reason or None
  describe_prompts     after synthesis: counts merged into the prompts stage (e.g. a task mix)
  oracle_scores        the judge when `assessment.judge = "oracle"`: a checker, if it has one
  measure_model        for M_0 and every M_i: its measures -> eval.json["<name>"]
  measure_iteration    for iteration i's own files (answered, assessed, trained pairs)
                       -> eval.json["<name>"]["data"]
  summary_lines / report_section   the report's plain summary and the extension's section

Data flows one way: the extension may import engine.selfalign, never the reverse.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


class ExtensionError(ValueError):
    """An extension module that cannot be loaded; the message names it."""


@dataclass
class ExtensionContext:
    """What the loop lends an extension for one call.

    run          the RunDirectory (read the iteration's files with run.read(it, name))
    iteration    0 for M_0, else the iteration whose files / model are measured
    llm_for      model dir -> the loop's pooled engine.LLM (one model is loaded at a time)
    answer_prompt  (instruction, input, model_dir) -> the prompt text the loop's response
                 stage gives that model (raw for the base model, its chat layout later)
    judge        (model_dir, [(instruction, input, response)]) -> [score or None], the lowest
                 score over the configured assessment kinds, scored exactly as the loop's
                 assessment stage scores (format, mode, temperature, seeds)
    seed         the run seed
    """
    cfg: Any
    run: Any
    iteration: int
    base_dir: Path
    llm_for: Callable
    answer_prompt: Callable
    judge: Callable
    seed: int = 0
    extra: dict = field(default_factory=dict)


class LoopExtension:
    name: str = ""                      # config section, eval.json key, report heading
    settings_class: type | None = None  # dataclass of the [name] section (None: no settings)

    def __init__(self) -> None:
        self.settings = self.settings_class() if self.settings_class else None

    def configure(self, settings) -> None:
        """Called once with the validated [name] section before the run starts."""
        self.settings = settings

    def filter_prompt(self, instruction: str, input: str) -> str | None:
        return None

    def describe_prompts(self, prompts: list[dict]) -> dict:
        return {}

    def oracle_scores(self, pairs: list[dict]) -> list[float | None] | None:
        """pairs: {"instruction", "input", "response"}; None: this extension has no oracle."""
        return None

    def measure_model(self, ctx: ExtensionContext, model_dir: Path) -> dict:
        return {}

    def measure_iteration(self, ctx: ExtensionContext) -> dict:
        return {}

    def summary_lines(self, results: dict[str, dict[int, dict]]) -> list[str]:
        """results[arm][iteration] = eval.json[name] of that arm ("main" and any controls)."""
        return []

    def report_section(self, results: dict[str, dict[int, dict]], plots_dir: Path) -> list[str]:
        return []


def load_extension(module_name: str) -> LoopExtension:
    """The EXTENSION object of a module named in `run.extensions`."""
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ExtensionError(f"run.extensions: cannot import {module_name!r}: {e}") from None
    ext = getattr(module, "EXTENSION", None)
    if not isinstance(ext, LoopExtension):
        raise ExtensionError(f"run.extensions: module {module_name!r} has no EXTENSION "
                             "(a LoopExtension instance)")
    if not ext.name:
        raise ExtensionError(f"run.extensions: {module_name}.EXTENSION has no name")
    return ext
