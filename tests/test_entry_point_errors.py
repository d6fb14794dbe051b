"""Every entry point turns a mistake a user can make into exactly one line on stderr and a
non-zero exit, before any run directory is made."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECIPE = [sys.executable, str(ROOT / "recipes" / "isheep_qwen.py"), "--config",
          str(ROOT / "recipes" / "configs" / "tiny.toml")]
SEED_LINE = '{"instruction": "Name a color.", "inpu'
DATA_LINE = '{"instruction": "x", "output": '

TRAIN = [sys.executable, "-m", "engine.train"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from engine.presets import write_tiny

    root = tmp_path_factory.mktemp("entry")
    model = write_tiny(root / "model")
    bad_seeds = root / "seeds.jsonl"
    bad_seeds.write_text('{"instruction": "Name a fruit.", "input": "", "output": "apple"}\n'
                         + SEED_LINE + "\n")
    bad_data = root / "data.jsonl"
    bad_data.write_text('{"instruction": "Say hi.", "output": "hi"}\n' + DATA_LINE + "\n")
    empty_dir = root / "not_a_model"
    empty_dir.mkdir()
    return {"root": root, "model": model, "bad_seeds": bad_seeds, "bad_data": bad_data,
            "empty_dir": empty_dir}


def _run(cmd, cwd):
    import os
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


CASES = {
    "recipe: wrong config path": (RECIPE + ["--config", "nope.toml"], r"config file nope\.toml does not exist"),
    "recipe: unknown key": (RECIPE + ["--model", "{model}", "assessment.levle=both"],
                            r"unknown setting 'assessment\.levle'; did you mean 'assessment\.level'"),
    "recipe: bad model dir": (RECIPE + ["--model", "{empty_dir}"], r"not a checkpoint directory"),
    "recipe: malformed seed line": (RECIPE + ["--model", "{model}", "synthesis.seeds_file={bad_seeds}"],
                                    r"seeds\.jsonl:2: malformed JSON \(Unterminated string starting at column "
                                    + str(SEED_LINE.index('"inpu') + 1) + r"\)"),
    "train: unknown key": (TRAIN + ["--model", "{model}", "--data", "{bad_data}", "--output", "{root}/out",
                                    "lrr=1"], r"unknown setting 'lrr'; did you mean 'lr'"),
    "train: bad model dir": (TRAIN + ["--model", "{empty_dir}", "--data", "{bad_data}", "--output",
                                      "{root}/out2"], r"not_a_model"),
    "train: malformed data line": (TRAIN + ["--model", "{model}", "--data", "{bad_data}", "--output",
                                            "{root}/out3"], r"data\.jsonl:2: malformed JSON .*at column "
                                            + str(len(DATA_LINE) + 1)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_line_and_a_non_zero_exit(case, files, tmp_path):
    import re
    cmd, pattern = CASES[case]
    cmd = [c.format(**files) for c in cmd] + (["--run-dir", str(tmp_path / "run")] if cmd[:4] == RECIPE else [])
    out = _run(cmd, tmp_path)
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0
    assert len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith("error: ") and re.search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "run").exists()
