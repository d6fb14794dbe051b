"""Settings: TOML + overrides, validation errors that name the key."""
import pytest

from engine.selfalign.settings import SettingsError, load_config


def test_overrides_apply_after_file_with_types(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[run]\nname = "x"\niterations = 4\n[assessment]\nthreshold = 8.0\n')
    cfg = load_config(f, ["assessment.threshold=7", "run.iterations=2", "synthesis.relax_filters=true",
                          "training.overrides.lr=0.001"])
    assert cfg.run.name == "x" and cfg.run.iterations == 2
    assert cfg.assessment.threshold == 7.0 and isinstance(cfg.assessment.threshold, float)
    assert cfg.synthesis.relax_filters is True
    assert cfg.training.overrides == {"lr": 0.001}


def test_resolved_config_round_trips_through_toml(tmp_path):
    cfg = load_config(None, ["assessment.level=quality", "training.overrides.epochs=2"])
    f = tmp_path / "resolved.toml"
    f.write_text(cfg.to_toml())
    assert load_config(f) == cfg


@pytest.mark.parametrize("override, message", [
    ("assessment.levle=both", "unknown key assessment.levle"),
    ("nosuch.key=1", r"unknown section \[nosuch\]"),
    ("assessment.level=most", "assessment.level = 'most': expected one of none, quality, following, both"),
    ("run.iterations=two", "run.iterations must be a int"),
    ("threshold", "expected section.key=value"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(SettingsError, match=message):
        load_config(None, [override])


def test_bad_file_is_named(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[run\nname = 1")
    with pytest.raises(SettingsError, match="bad.toml"):
        load_config(f)


def test_shipped_configs_load():
    from pathlib import Path
    configs = sorted((Path(__file__).parent.parent / "recipes" / "configs").glob("*.toml"))
    assert len(configs) >= 4
    for f in configs:
        cfg = load_config(f)
        if f.stem not in ("tiny", "world"):   # world.toml fits the toy world (its comments say how)
            # the reference settings of the authors
            assert cfg.synthesis.num_prompts == 10000 and cfg.assessment.threshold == 8.0
            assert cfg.synthesis.temperature == 1.0 and cfg.synthesis.top_p == 0.95
            assert cfg.synthesis.max_tokens == 1000 and cfg.synthesis.rouge_threshold == 0.7
