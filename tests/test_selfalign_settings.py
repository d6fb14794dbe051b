"""Settings: one system for the loop and the trainer; every key checked with its type when
read, with an error that names the key, its source and the nearest valid key."""
import subprocess
import sys
from pathlib import Path

import pytest

from engine.selfalign.settings import PROFILES, SettingsError, load_config, settings_help
from engine.settings import read_toml

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "recipes" / "configs"


def test_overrides_apply_after_file_with_types(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[run]\nname = "x"\niterations = 4\n[assessment]\nthreshold = 8.0\n[training]\nlr = 0.01\n')
    cfg = load_config(f, ["assessment.threshold=7", "run.iterations=2", "training.lr=0.001",
                          "training.lora_targets=q_proj,v_proj"], require_model=False)
    assert cfg.run.name == "x" and cfg.run.iterations == 2
    assert cfg.assessment.threshold == 7.0 and isinstance(cfg.assessment.threshold, float)
    assert cfg.training.lr == 0.001
    assert cfg.training.lora_targets == ["q_proj", "v_proj"]


def test_resolved_config_round_trips_through_toml(tmp_path):
    cfg = load_config(None, ["assessment.level=quality", "training.epochs=2",
                             'run.controls={a=["assessment.level=none"]}'], require_model=False)
    f = tmp_path / "resolved.toml"
    f.write_text(cfg.to_toml())
    again = load_config(f, require_model=False)
    assert again.flat() == cfg.flat()


@pytest.mark.parametrize("override, message", [
    ("training.lrr=1e-4", r"unknown setting 'training\.lrr'; did you mean 'training\.lr'\?"),
    ("assessment.treshold=8", r"unknown setting 'assessment\.treshold'; did you mean 'assessment\.threshold'\?"),
    ("synthesis.num_prompts=ten", r"'synthesis\.num_prompts' = 'ten' is not an integer"),
    ("assessment.level=most", r"'assessment\.level' = 'most': expected one of none, quality, following, both"),
    ("training.lr=-1", r"'training\.lr' = -1\.0 must be > 0"),
    ("assessment.threshold=11", r"'assessment\.threshold' = 11\.0 must be <= 10"),
    ("synthesis.top_p=0", r"'synthesis\.top_p' = 0\.0 must be > 0"),
    ("response.n=0", r"'response\.n' = 0 must be >= 1"),
    ("nosuch.key=1", r"unknown setting 'nosuch'"),
    ("threshold", r"'threshold' is not of the form key=value"),
])
def test_bad_overrides_name_the_key_and_its_source(override, message):
    with pytest.raises(SettingsError, match=message) as e:
        load_config(None, [override], require_model=False)
    assert str(e.value).startswith("command line: ")


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[training]\nepochs = 'three'\n")
    with pytest.raises(SettingsError, match=r"c\.toml: 'training\.epochs' = 'three' is not an integer"):
        load_config(f, require_model=False)
    f.write_text("[run\nname = 1")
    with pytest.raises(SettingsError, match="c.toml"):
        load_config(f, require_model=False)


def test_paths_in_a_file_resolve_against_its_directory(tmp_path):
    (tmp_path / "cfgs").mkdir()
    f = tmp_path / "cfgs" / "c.toml"
    f.write_text('[synthesis]\nseeds_file = "../data/seeds.jsonl"\n')
    cfg = load_config(f, require_model=False)
    assert Path(cfg.synthesis.seeds_file) == (tmp_path / "cfgs" / ".." / "data" / "seeds.jsonl").resolve() \
        or Path(cfg.synthesis.seeds_file).resolve() == (tmp_path / "data" / "seeds.jsonl").resolve()


def test_a_config_without_a_model_or_with_cuda_on_a_cpu_machine_fails(tmp_path):
    with pytest.raises(SettingsError, match="no base model"):
        load_config(None, [])
    with pytest.raises(SettingsError, match="not a checkpoint directory"):
        load_config(None, [f"run.model={tmp_path}"])
    import torch
    if not torch.cuda.is_available():
        from engine.presets import write_tiny
        model = write_tiny(tmp_path / "m")
        with pytest.raises(SettingsError, match="'run.device' = 'cuda' but this machine has no CUDA"):
            load_config(None, [f"run.model={model}", "run.device=cuda"])


def test_the_reference_profile_presets_individual_settings_and_explicit_ones_win():
    ref = load_config(None, ["run.profile=reference"], require_model=False)
    for key, value in PROFILES["reference"].items():
        section, name = key.split(".")
        assert getattr(getattr(ref, section), name) == value, key
    ours = load_config(None, ["run.profile=reference", "training.epochs=5"], require_model=False)
    assert ours.training.epochs == 5 and ours.assessment.temperature == 1.0


def test_controls_are_checked_when_read():
    with pytest.raises(SettingsError, match=r"run\.controls\.x: unknown setting 'assessment\.lvl'"):
        load_config(None, ['run.controls={x=["assessment.lvl=none"]}'], require_model=False)
    with pytest.raises(SettingsError, match="needs an extension with a checker"):
        load_config(None, ["assessment.judge=oracle"], require_model=False)


def test_shipped_configs_load():
    configs = sorted(CONFIGS.glob("*.toml"))
    assert len(configs) >= 4
    for f in configs:
        cfg = load_config(f, require_model=False)
        if cfg.run.profile == "reference":   # the real-model configs take the release's decisions
            assert cfg.synthesis.num_prompts == 10000 and cfg.assessment.threshold == 8.0
            assert cfg.synthesis.temperature == 1.0 and cfg.synthesis.top_p == 0.95
            assert cfg.synthesis.max_tokens == 1000 and cfg.synthesis.rouge_threshold == 0.7
            assert cfg.assessment.temperature == 1.0 and cfg.training.epochs == 2


def test_help_lists_every_setting_with_its_default():
    text = settings_help()
    for key in ("training.lr", "assessment.threshold", "synthesis.novelty_pool", "response.n",
                "run.profile", "eval.harness_tasks"):
        assert f"  {key} = " in text, key


@pytest.mark.parametrize("override", ["training.lrr=1e-4", "assessment.treshold=8",
                                      "synthesis.num_prompts=ten"])
def test_the_recipe_fails_fast_with_one_line_before_any_model_loads(tmp_path, override):
    run_dir = tmp_path / "run"
    out = subprocess.run([sys.executable, str(ROOT / "recipes" / "isheep_qwen.py"), "--run-dir",
                          str(run_dir), override], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: command line: "), out.stderr
    assert not run_dir.exists()          # nothing is created until the inputs check out


def test_default_config_names_the_shipped_world_model():
    data = read_toml(CONFIGS / "world_default.toml")
    cfg = load_config(CONFIGS / "world_default.toml")
    assert Path(cfg.run.model, "config.json").is_file()
    assert "engine.world.extension" in data["run"]["extensions"]


def test_the_engine_checks_its_settings_with_the_same_system_before_loading(tmp_path):
    from engine.generation import LLM
    with pytest.raises(SettingsError, match=r"'gpu_memory_utilization' = 1\.5 must be <= 1"):
        LLM(tmp_path / "no_model_here", gpu_memory_utilization=1.5)
    with pytest.raises(SettingsError, match=r"'block_size' = 0 must be >= 1"):
        LLM(tmp_path / "no_model_here", block_size=0)
