"""I-SHEEP settings: one dataclass tree on the project's settings system (engine.settings).

Every ablation the paper compares is a setting: the judge (self, base, or an extension's
oracle), the assessment level and threshold, sampled-and-parsed versus log-prob scoring,
training from the base or the previous model, on the latest or cumulative data, full or LoRA.
Every decision the authors' release takes differently from our defaults is a setting too,
and `run.profile = "reference"` presets them all to the release's choices (docs/FIDELITY.md).

Reading order: defaults, then the profile's preset, then the TOML file, then the
`section.key=value` overrides. Extensions named in `run.extensions` add their own section.
Everything is checked when read, before any model loads.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from engine.selfalign.extension import ExtensionError, LoopExtension, load_extension
from engine.settings import (SettingsError, apply_mapping, apply_overrides, check, describe,
                             flatten, parse_override, read_toml, setting, to_toml)
from engine.training.config import TrainHyperparams

__all__ = ["IsheepConfig", "SettingsError", "load_config", "PROFILES", "settings_help"]

LAYOUTS = ("engine", "reference")


@dataclass
class RunSettings:
    """What runs, where, on which model."""
    name: str = setting("isheep", "run name; the run directory defaults to runs/<name>")
    run_dir: str = setting("", "where the run lives (default runs/<name>); relative to the "
                           "current directory", mutable=True)
    model: str = setting("", "the base model M_0: an HF checkpoint directory (required)", path=True)
    iterations: int = setting(3, "number of iterations (more can be added to a finished run)",
                              ge=1, mutable=True)
    seed: int = setting(0, "run seed: every request's seed derives from it")
    profile: str = setting("engine", "engine: our defaults; reference: the authors' release's "
                           "decisions at every step (docs/FIDELITY.md)", choices=LAYOUTS)
    device: str = setting("auto", "auto: cuda when available, else cpu", choices=("auto", "cpu", "cuda"))
    dtype: str = setting("auto", "auto: bf16 on GPU, fp32 on CPU",
                         choices=("auto", "float32", "bfloat16", "float16"))
    cpu_threads: int = setting(1, "torch threads on a CPU run (0: torch's default; one thread is "
                               "fastest for small models on a busy machine)", ge=0, mutable=True)
    extensions: list[str] = setting([], "modules that plug into the loop (measures, filters), "
                                    "e.g. engine.world.extension")
    controls: dict[str, list[str]] = setting({}, "control arms: name -> overrides; each answers "
                                             "the main arm's prompts in run_dir/controls/<name>")
    tracker: str = setting("none", "experiment tracker for per-iteration figures",
                           choices=("none", "tensorboard", "wandb"), mutable=True)


@dataclass
class GenerationSettings:
    """Engine knobs shared by every generation stage (speed and memory only)."""
    kv_cache_bytes: int = setting(256 * 2**20, "KV cache budget on the CPU", ge=1, mutable=True)
    gpu_memory_utilization: float = setting(0.85, "share of GPU memory for weights + KV cache",
                                            gt=0, le=1, mutable=True)
    max_num_seqs: int = setting(256, "sequences per step", ge=1, mutable=True)
    max_num_batched_tokens: int = setting(8192, "tokens per step", ge=1, mutable=True)
    chunk_size: int = setting(256, "requests per resumable chunk written to disk", ge=1, mutable=True)


@dataclass
class SynthesisSettings:
    """Steps 1-3: new prompts from the meta-prompt, heuristic and novelty filters."""
    num_prompts: int = setting(10000, "kept prompts wanted per iteration", ge=1)
    seeds_file: str = setting("", "seed tasks JSONL (\"\" = our default seed set)", path=True)
    tasks_per_meta_prompt: int = setting(5, "seed tasks shown in each meta-prompt", ge=1)
    meta_prompts_per_round: int = setting(256, "meta-prompts sampled per round", ge=1)
    max_rounds: int = setting(200, "rounds before giving up on num_prompts", ge=1)
    temperature: float = setting(1.0, "sampling temperature", ge=0)
    top_p: float = setting(0.95, "nucleus sampling mass", gt=0, le=1)
    max_tokens: int = setting(1000, "new tokens per meta-prompt", ge=1)
    stop: list[str] = setting([], "stop strings ([] = the number after the list's last item)")
    rouge_threshold: float = setting(0.7, "drop a prompt whose ROUGE-L F1 to the pool is above",
                                     gt=0, le=1)
    novelty_pool: str = setting("run", "run: seeds + every prompt kept in the run so far; call: "
                                "seeds + prompts kept in the current round (the release)",
                                choices=("run", "call"))
    output_requirement: bool = setting(False, "keep the release's requirement that outputs be "
                                       "under 100 words in the meta-prompt")
    drop_last: str = setting("length", "drop the last parsed item: on a length stop, or always "
                             "(the release)", choices=("length", "always"))
    drop_output_items: bool = setting(False, "drop items that carry an Output field (the release)")
    prompt_rules: str = setting("engine", "heuristic prompt filters", choices=LAYOUTS)
    prompts_from: str = setting("", "a run directory whose prompts each iteration reuses "
                                "instead of writing its own (controls use the main arm's)")


@dataclass
class ResponseSettings:
    """Steps 4-5: answers and the rule filters on them."""
    template: str = setting("auto", "auto: raw text for the base model, chat afterwards",
                            choices=("auto", "raw", "chat"))
    layout: str = setting("engine", "prompt layouts (engine/prompt_format.py)", choices=LAYOUTS)
    temperature: float = setting(1.0, "sampling temperature", ge=0)
    top_p: float = setting(0.95, "nucleus sampling mass", gt=0, le=1)
    max_tokens: int = setting(1000, "new tokens per answer", ge=1)
    n: int = setting(1, "answers sampled per prompt (identical answers to a prompt count once)", ge=1)
    rules: str = setting("engine", "rule filters on answers", choices=LAYOUTS)
    pair_rules: str = setting("engine", "engine: instruction rules run on prompts; reference: "
                              "the release's step_2_1 rules on pairs after answering",
                              choices=LAYOUTS)


@dataclass
class AssessmentSettings:
    """Steps 6-7: self-assessment and the threshold."""
    judge: str = setting("base", "base: M_0 (the released scripts); self: M_{i-1} (the paper's "
                         "words); oracle: an extension's checker", choices=("base", "self", "oracle"))
    level: str = setting("both", "which scores must clear the threshold",
                         choices=("none", "quality", "following", "both"))
    threshold: float = setting(8.0, "keep scores strictly above", ge=1, le=10)
    mode: str = setting("sample", "sample: parse the judge's text; logprob: expected score over "
                        "\"1\"..\"10\"; both: compare (sample decides)",
                        choices=("sample", "logprob", "both"))
    judge_format: str = setting("score_first", "score_first: '<score>||<explanation>' (the paper); "
                                "explain_first: reasoning, then 'Score: <n>'",
                                choices=("score_first", "explain_first"))
    temperature: float = setting(0.0, "judge sampling temperature (0 = greedy; the release samples "
                                 "at 1.0)", ge=0)
    top_p: float = setting(1.0, "judge nucleus mass", gt=0, le=1)
    max_tokens: int = setting(64, "new tokens per judgement", ge=1)
    template: str = setting("auto", "judge prompt: raw text, chat, or auto (chat unless the judge "
                            "is the base model)", choices=("auto", "raw", "chat"))


@dataclass
class TrainingSettings(TrainHyperparams):
    """Step 8: which data trains which model, and how (every engine.train setting too)."""
    start_from: str = setting("base", "base: fine-tune M_0 (the release); previous: M_{i-1}",
                              choices=("base", "previous"))
    data: str = setting("latest", "latest: this iteration's pairs; cumulative: all iterations'",
                        choices=("latest", "cumulative"))
    method: str = setting("full", "full fine-tuning or LoRA (merged at export)",
                          choices=("full", "lora"))
    min_examples: int = setting(1, "fewer kept pairs than this: skip training, keep the model", ge=0)
    max_per_prompt: int = setting(0, "cap on kept pairs per prompt, best scores first (0: none)",
                                  ge=0)


@dataclass
class EvalSettings:
    """Step 9: benchmarks of M_0 and every M_i."""
    enabled: bool = setting(True, "IFEval-style checks and the pairwise win rate", mutable=True)
    ifeval_data: str = setting("", "IFEval input_data.jsonl (\"\" = our prompt set)", path=True)
    max_prompts: int = setting(0, "cap on evaluation prompts (0 = all)", ge=0)
    max_tokens: int = setting(512, "new tokens per evaluation answer", ge=1)
    pairwise: bool = setting(True, "M_i against M_{i-1}, judged by M_0 in both orders")
    judge_mode: str = setting("logprob", "pairwise judge", choices=("generate", "logprob"))
    harness_tasks: list[str] = setting([], "lm-evaluation-harness tasks for every model",
                                       mutable=True)
    harness_num_fewshot: int | None = setting(None, "few-shot examples (None: the task's default)",
                                              ge=0)
    harness_limit: int | None = setting(None, "documents per task (None: all)", ge=1)
    harness_include_path: str = setting("", "directory of local task YAMLs", path=True)
    harness_chat_template: bool = setting(False, "apply the chat template to harness requests")


@dataclass
class IsheepConfig:
    run: RunSettings = field(default_factory=RunSettings)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    synthesis: SynthesisSettings = field(default_factory=SynthesisSettings)
    response: ResponseSettings = field(default_factory=ResponseSettings)
    assessment: AssessmentSettings = field(default_factory=AssessmentSettings)
    training: TrainingSettings = field(default_factory=TrainingSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)

    @property
    def run_dir(self) -> Path:
        return Path(self.run.run_dir or f"runs/{self.run.name}")

    @property
    def extensions(self) -> list[LoopExtension]:
        """The configured extensions, each with its validated settings section."""
        return getattr(self, "_extensions", [])

    def to_toml(self) -> str:
        return to_toml(self)

    def flat(self) -> dict:
        return flatten(self)


# The release's decision at every step where our default differs (docs/FIDELITY.md).
PROFILES: dict[str, dict[str, object]] = {
    "engine": {},
    "reference": {
        "synthesis.output_requirement": True,
        "synthesis.drop_last": "always",
        "synthesis.drop_output_items": True,
        "synthesis.stop": ["17"],
        "synthesis.prompt_rules": "reference",
        "synthesis.novelty_pool": "call",
        "response.layout": "reference",
        "response.rules": "reference",
        "response.pair_rules": "reference",
        "assessment.temperature": 1.0,
        "assessment.top_p": 0.95,
        "assessment.max_tokens": 1000,
        "training.epochs": 2,
    },
}


def _config_class(extensions: list[LoopExtension]) -> type:
    """IsheepConfig plus one section per extension that has settings."""
    extra = [(e.name, e.settings_class, field(default_factory=e.settings_class))
             for e in extensions if e.settings_class is not None]
    if not extra:
        return IsheepConfig
    return dataclasses.make_dataclass("IsheepConfigWithExtensions", extra, bases=(IsheepConfig,))


def _prescan(data: dict, overrides: list[str], section: str, key: str, default):
    value = data.get(section, {}).get(key, default) if isinstance(data.get(section), dict) else default
    for item in overrides:
        dotted, v = parse_override(item)
        if dotted == f"{section}.{key}":
            value = v
    return value


def load_config(path: str | Path | None = None, overrides: list[str] = (),
                require_model: bool = True) -> IsheepConfig:
    """Defaults, the profile's preset, the TOML file, then `section.key=value` overrides.

    Raises SettingsError naming the key and its source for anything wrong, before any model
    loads (extension modules named in run.extensions are imported to read their sections).
    """
    overrides = list(overrides)
    data = read_toml(path) if path is not None else {}
    source = str(path) if path is not None else "defaults"
    names = _prescan(data, overrides, "run", "extensions", [])
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    try:
        extensions = [load_extension(str(n)) for n in names]
    except ExtensionError as e:
        raise SettingsError(f"{source}: {e}") from None
    cfg = _config_class(extensions)()
    profile = _prescan(data, overrides, "run", "profile", "engine")
    if profile not in PROFILES:
        raise SettingsError(f"{source}: 'run.profile' = {profile!r}: expected one of "
                            f"{', '.join(PROFILES)}")
    sources = apply_overrides(cfg, [f"{k}={_literal(v)}" for k, v in PROFILES[profile].items()],
                              source=f"profile {profile}")
    apply_mapping(cfg, data, source, sources)
    apply_overrides(cfg, overrides, sources)
    check(cfg, sources)
    _check_together(cfg, sources, extensions, require_model)
    for ext in extensions:
        ext.configure(getattr(cfg, ext.name) if ext.settings_class else None)
    cfg._extensions = extensions
    cfg._sources = sources
    return cfg


def _literal(value) -> str:
    import json
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


def _check_together(cfg: IsheepConfig, sources: dict, extensions: list, require_model: bool) -> None:
    """What one setting alone cannot tell."""
    def where(key: str) -> str:
        return sources.get(key, "default")

    a = cfg.assessment
    if a.judge_format == "explain_first" and a.mode != "sample" and a.level != "none":
        raise SettingsError(f"{where('assessment.judge_format')}: 'assessment.judge_format' = "
                            f"'explain_first' needs 'assessment.mode' = 'sample' (now {a.mode!r})")
    if a.judge == "oracle" and not any(type(e).oracle_scores is not LoopExtension.oracle_scores
                                       for e in extensions):
        raise SettingsError(f"{where('assessment.judge')}: 'assessment.judge' = 'oracle' needs an "
                            "extension with a checker in 'run.extensions'")
    if require_model:
        if not cfg.run.model:
            raise SettingsError(f"{where('run.model')}: no base model: set 'run.model' in the "
                                "config or pass --model DIR")
        if not (Path(cfg.run.model) / "config.json").is_file():
            raise SettingsError(f"{where('run.model')}: 'run.model' = {cfg.run.model}: not a "
                                "checkpoint directory (no config.json)")
        if cfg.run.device == "cuda":
            import torch
            if not torch.cuda.is_available():
                raise SettingsError(f"{where('run.device')}: 'run.device' = 'cuda' but this "
                                    "machine has no CUDA device")
    for arm, arm_overrides in cfg.run.controls.items():
        trial = copy.deepcopy(cfg)
        try:
            apply_overrides(trial, arm_overrides, source=f"run.controls.{arm}")
            check(trial)
        except SettingsError as e:
            raise SettingsError(f"{where('run.controls')}: {e}") from None
        if any(o.split("=", 1)[0].strip().startswith("run.") for o in arm_overrides):
            raise SettingsError(f"{where('run.controls')}: control {arm!r} may not change run.* "
                                "settings")
    if cfg.eval.harness_tasks:
        from engine.eval.harness import check_tasks
        try:
            check_tasks(cfg.eval.harness_tasks, cfg.eval.harness_include_path or None)
        except Exception as e:      # unknown task, or lm-eval not installed
            raise SettingsError(f"{where('eval.harness_tasks')}: {e}") from None


def mutable_keys(cfg: IsheepConfig) -> set[str]:
    """Settings a resumed run may change: they decide nothing already on disk."""
    from engine.settings import leaves
    return {key for key, _, f in leaves(cfg) if f.metadata.get("mutable")}


def settings_help(cfg_class: type = IsheepConfig) -> str:
    return "\n".join(describe(cfg_class)).strip("\n")
