"""benchmarks/kernels.py --smoke (the GPU path's case functions on the CPU through the Triton
interpreter) and benchmarks/gpu_summary.py reading what it wrote: a crash in either, or a
kernel that disagrees with its reference, fails here instead of on the lease."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import gpu_summary  # noqa: E402

KERNELS = {"d2d_copy", "varlen_attention", "rms_norm", "add_rms_norm", "swiglu", "rope",
           "store_kvcache", "paged_decode", "prefix_prefill", "linear_cross_entropy"}


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory):
    from benchmarks import kernels as kernel_bench
    out = tmp_path_factory.mktemp("kernels_smoke")
    assert kernel_bench.main(["--smoke", "--out", str(out)]) == 0
    return out


def test_smoke_runs_every_kernel_and_matches_references(smoke_dir):
    data = json.loads((smoke_dir / "kernels.json").read_text())
    assert data["mode"] == "smoke" and data["page"] == 16
    records = data["records"]
    assert not [r for r in records if "error" in r or "skipped" in r]
    triton = {r["kernel"] for r in records if r["provider"] in ("triton", "torch")}
    assert KERNELS <= triton
    for r in records:
        assert r["ms"] > 0
        if "max_err" in r:
            assert r["max_err"] < 1e-4, r
    # attention and decode are timed beside SDPA, the memory-bound kernels beside the copy
    providers = {(r["kernel"], r["provider"]) for r in records}
    assert ("varlen_attention", "sdpa_flash") in providers
    assert all("of_copy_bw" in r for r in records if r["kernel"] == "rms_norm")
    # both torch.compile'd baselines went through the same case functions
    assert {("swiglu", "torch.compile"), ("rms_norm", "torch.compile")} <= providers
    assert {r["pass"] for r in records if r["kernel"] == "varlen_attention"} == {"fwd", "fwd+bwd"}


def test_summary_of_a_smoke_run_measures_kernels_and_names_the_missing_stages(smoke_dir):
    rows = {r["figure"]: r for r in gpu_summary.collect(smoke_dir)}
    attention = rows["attention fwd vs best SDPA at d128"]
    assert attention["value"] is None          # the smoke models have no head_dim 128
    memory = rows["memory-bound kernels, worst fraction of copy bw"]
    assert memory["value"] is not None and memory["ok"] is not None
    for figure in ("generation tokens/s vs transformers", "SFT MFU at 1.5B"):
        assert rows[figure]["value"] is None and rows[figure]["ok"] is None
    text = gpu_summary.render(list(rows.values()), gpu_summary.junit_counts(smoke_dir))
    assert "GPU tests: not measured" in text
    assert text.count(gpu_summary.NOT_MEASURED) >= 5


def _write(path: Path, data) -> None:
    path.write_text(json.dumps(data))


def test_summary_figures_and_verdicts_from_each_benchmark(tmp_path):
    _write(tmp_path / "generation.json", {
        "vs_hf": {"sheep": {"output_tokens_per_s": 6000.0},
                  "transformers": {"output_tokens_per_s": 1000.0}},
        "decode_b1": {"roofline_fraction": 0.5}})
    _write(tmp_path / "training.json", {"results": [
        {"model": "qwen2.5-0.5b", "engine": {"mfu": 0.9, "peak_mem_gb": 1.0},
         "transformers": {"peak_mem_gb": 10.0}},
        {"model": "qwen2.5-1.5b", "engine": {"mfu": 0.40, "peak_mem_gb": 12.0},
         "transformers": {"peak_mem_gb": 24.0}}]})
    kernel = dict(model="qwen2.5-1.5b", seqlens="4x2048", head_dim=128, kernel="varlen_attention",
                  **{"pass": "fwd"})
    _write(tmp_path / "kernels.json", {"records": [
        {**kernel, "provider": "triton", "ms": 1.0},
        {**kernel, "provider": "sdpa_flash", "ms": 0.95},
        {**kernel, "provider": "sdpa_cudnn", "ms": 0.85},
        {**kernel, "provider": "sdpa_efficient", "error": "RuntimeError: no kernel"},
        {**kernel, "head_dim": 64, "provider": "sdpa_flash", "ms": 0.1},     # not d128
        {"kernel": "rms_norm", "pass": "fwd", "provider": "triton", "of_copy_bw": 0.9},
        {"kernel": "rms_norm", "pass": "fwd", "provider": "triton", "of_copy_bw": 0.82},
        {"kernel": "swiglu", "pass": "fwd", "provider": "triton", "of_copy_bw": 0.7},
        {"kernel": "swiglu", "pass": "fwd", "provider": "torch", "of_copy_bw": 0.1},
        {"kernel": "swiglu", "pass": "fwd+bwd", "provider": "triton", "of_copy_bw": 0.2}]})
    (tmp_path / "pytest.xml").write_text(
        '<testsuites><testsuite tests="10" failures="1" errors="0" skipped="2"/></testsuites>')
    rows = {r["figure"]: r for r in gpu_summary.collect(tmp_path)}
    assert rows["generation tokens/s vs transformers"]["value"] == pytest.approx(6.0)
    assert rows["generation tokens/s vs transformers"]["ok"] is True
    assert rows["batch-1 decode, fraction of bandwidth roofline"]["ok"] is False
    assert rows["SFT MFU at 1.5B"]["value"] == pytest.approx(0.40)
    assert rows["SFT MFU at 1.5B"]["ok"] is False
    assert rows["SFT peak memory vs transformers at 1.5B"]["value"] == pytest.approx(0.5)
    assert rows["SFT peak memory vs transformers at 1.5B"]["ok"] is True
    assert rows["attention fwd vs best SDPA at d128"]["value"] == pytest.approx(0.85)
    assert rows["attention fwd vs best SDPA at d128"]["ok"] is False
    assert rows["memory-bound kernels, worst fraction of copy bw"]["value"] == pytest.approx(0.7)
    assert rows["  rms_norm fwd, fraction of copy bw"]["value"] == pytest.approx(0.82)
    assert gpu_summary.junit_counts(tmp_path) == {"tests": 10, "failures": 1, "errors": 0,
                                                  "skipped": 2}
    text = gpu_summary.render(list(rows.values()), gpu_summary.junit_counts(tmp_path))
    assert "GPU tests: 7 passed, 1 failed" in text
    assert text.splitlines()[-1].startswith("  swiglu fwd")


def test_summary_prefers_explicit_figures_and_survives_broken_files(tmp_path):
    _write(tmp_path / "generation.json", {"figures": {"generation_vs_transformers": 7.5},
                                          "vs_hf": {"sheep": {"output_tokens_per_s": 1.0},
                                                    "transformers": {"output_tokens_per_s": 1.0}}})
    (tmp_path / "training.json").write_text('{"results": [')        # killed mid-write
    rows = {r["figure"]: r for r in gpu_summary.collect(tmp_path)}
    assert rows["generation tokens/s vs transformers"]["value"] == 7.5
    assert rows["SFT MFU at 1.5B"]["value"] is None
    assert gpu_summary.main([str(tmp_path), "--json", str(tmp_path / "summary.json")]) == 0
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["tests"] is None and len(saved["figures"]) >= 6
