"""benchmarks/generation.py --smoke: both suites' code paths (the CPU comparison and the GPU
workloads, on tiny shapes on the CPU), so a crash on the GPU path's functions fails CI."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_smoke_mode_runs_every_case_and_writes_its_figures(tmp_path):
    sys.path.insert(0, str(ROOT))
    from benchmarks import generation

    path = generation.main(["--smoke", "--out", str(tmp_path)])
    data = json.loads(Path(path).read_text())
    assert data["environment"]["torch"] and data["mode"] == "smoke"
    tiny = data["tiny"]
    # the engine and transformers ran the same greedy requests and agree token for token
    assert tiny["greedy_identical_requests"] == tiny["prompts"] == 4
    assert tiny["engine"]["output_tokens"] == tiny["transformers"]["output_tokens"] == 4 * 3
    assert tiny["score"]["max_abs_logprob_diff"] < 1e-4
    assert tiny["matmul_limit"]["seconds"] > 0 and tiny["score"]["matmul_limit"]["seconds"] > 0
    # the ceiling: transformers' time over the limit, which no engine can beat
    assert tiny["ceiling_over_transformers"] == (tiny["transformers"]["seconds"]
                                                 / tiny["matmul_limit"]["seconds"])
    # the roofline adds the decode steps' K/V reads: never faster than the FLOPs alone
    assert tiny["kv_read_limit"]["decode_kv_bytes"] > 0 and tiny["kv_read_limit"]["read_GBps"] > 0
    assert tiny["roofline_seconds"] >= tiny["matmul_limit"]["seconds"]
    # the forward's clock covers part of the engine's run, not more than all of it
    assert 0 < tiny["engine"]["forward_seconds"] < tiny["engine"]["seconds"]
    assert (tmp_path / "generation-decode-step-profile-tiny.txt").read_text().startswith(
        "2 decode steps of 4 sequences")
    # the GPU suite's cases, each recorded
    assert data["throughput"]["output_tokens"] > 0 and data["cuda_graphs"] is False
    assert data["decode_b1"]["seconds_per_step"] > 0
    assert data["vs_transformers"]["transformers"]["requests"] == 3
    assert [r["prefix_caching"] for r in data["prefix"]] == [True, False]
    assert data["prefix"][0]["cached_prompt_tokens"] > 0 == data["prefix"][1]["cached_prompt_tokens"]
