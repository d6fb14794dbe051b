"""benchmarks/gpu_check.sh: its stages fit one 10-minute command with margin, run in the order
of their value, and on a machine without a GPU it still tees its log into $OUT and prints the
summary last, each missing figure as "not measured"."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
KILL_GRACE_S = 5


def _stages() -> list[tuple[str, int]]:
    return [(name, int(limit)) for name, limit in
            re.findall(r"run_stage (\w+) (\d+) ", SCRIPT.read_text())]


def test_stages_fit_one_command_in_value_order():
    stages = _stages()
    assert [name for name, _ in stages] == ["env", "tests", "training", "generation", "kernels",
                                            "summary"]
    worst = sum(limit + KILL_GRACE_S for _, limit in stages)
    assert worst <= 570, f"stages can take {worst} s of the 600 s command"
    assert f"timeout -k {KILL_GRACE_S}" in SCRIPT.read_text()
    text = SCRIPT.read_text()
    assert "python " not in text.replace("python3 ", "")      # python3 everywhere
    assert "benchmarks/results" not in re.sub(r"#.*", "", text)   # never copies committed results


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                    reason="needs bash and coreutils timeout")
def test_without_a_gpu_it_logs_into_out_and_ends_with_the_summary(tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["OUT"] = str(out)
    proc = subprocess.run(["bash", str(SCRIPT), "kernels", "summary"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    log = (out / "gpu_check.log").read_text()
    assert log == proc.stdout                         # everything printed went to $OUT too
    assert "stage kernels" in log and "no CUDA device" in log   # the stage failed, loudly
    tail = log.strip().splitlines()
    summary_start = next(i for i, line in enumerate(tail) if line.startswith("GPU tests:"))
    assert "not measured" in tail[summary_start]
    assert all("not measured" in line for line in tail[summary_start + 2:summary_start + 8])
    assert tail[-1].startswith("memory-bound kernels")     # the table is the last output
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.log", "summary.json"]


def test_summary_reads_the_generation_and_training_benchmarks_own_json(tmp_path):
    """The figures come from the JSON the generation and training scripts write (their smoke
    modes use the GPU path's layout)."""
    import json
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(root / "benchmarks" / "generation.py"), "--smoke", "--out",
                    str(tmp_path)], check=True, env=env, capture_output=True, timeout=300)
    data = json.loads(next(tmp_path.glob("generation*.json")).read_text())
    sys.path.insert(0, str(root))
    from benchmarks.gpu_summary import generation_figures
    figures = generation_figures(data)
    assert figures["generation_vs_transformers"] == data["vs_transformers"]["engine_over_transformers"]
    assert figures["decode_b1_roofline_fraction"] == data["decode_b1"]["roofline_fraction"]
