"""The last table of a GPU check: each figure beside its goal, read from the JSON files that the
benchmarks wrote into one folder (gpu_check.sh's $OUT). A file that is missing, or that lacks a
figure, gives "not measured": a stage that died must not hide the others.

    python3 benchmarks/gpu_summary.py DIR [--json DIR/summary.json]

Where each figure comes from (the first of the listed places that holds a number):
- tests: DIR/pytest.xml (JUnit XML from pytest --junitxml);
- generation: DIR/generation*.json; ratio = its `figures.generation_vs_transformers`, else
  `vs_transformers.engine_over_transformers` (benchmarks/generation.py's field), else
  `vs_hf.speedup`, else `vs_hf.sheep.output_tokens_per_s / vs_hf.transformers.output_tokens_per_s`;
  decode = `figures.decode_b1_roofline_fraction`, else `decode_b1.roofline_fraction`;
- training: DIR/training*.json, the `results` row whose model names 1.5b: `engine.mfu` and
  `engine.peak_mem_gb / transformers.peak_mem_gb`;
- kernels: DIR/kernels*.json (benchmarks/kernels.py records): attention forward at head_dim
  128 against the fastest SDPA backend, memory-bound kernels' forward against copy bandwidth.
"""
from __future__ import annotations

import argparse
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

NOT_MEASURED = "not measured"
# kernels whose forward pass is memory-bound: judged against the device-to-device copy
MEMORY_BOUND = ("rms_norm", "add_rms_norm", "rope", "swiglu", "store_kvcache")


def _load(folder: Path, pattern: str) -> dict | None:
    """The newest JSON file matching pattern, or None (missing or unreadable)."""
    paths = sorted(folder.glob(pattern), key=lambda p: p.stat().st_mtime)
    for path in reversed(paths):
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return None


def _get(data: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def _number(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _first(data: dict | None, *paths: str) -> float | None:
    for path in paths:
        value = _number(_get(data, path))
        if value is not None:
            return value
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def junit_counts(folder: Path) -> dict | None:
    """{tests, failures, errors, skipped} summed over the JUnit XML's test suites."""
    try:
        root = ET.parse(folder / "pytest.xml").getroot()
    except (OSError, ET.ParseError):
        return None
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    return {k: sum(int(s.get(k, 0)) for s in suites)
            for k in ("tests", "failures", "errors", "skipped")}


def generation_figures(data: dict | None) -> dict[str, float | None]:
    speedup = _first(data, "figures.generation_vs_transformers", "vs_transformers.engine_over_transformers",
                     "vs_hf.speedup")
    if speedup is None:
        speedup = _ratio(_first(data, "vs_hf.sheep.output_tokens_per_s"),
                         _first(data, "vs_hf.transformers.output_tokens_per_s"))
    decode = _first(data, "figures.decode_b1_roofline_fraction", "decode_b1.roofline_fraction")
    return {"generation_vs_transformers": speedup, "decode_b1_roofline_fraction": decode}


def training_figures(data: dict | None, model: str = "1.5b") -> dict[str, float | None]:
    rows = _get(data, "results") or []
    row = next((r for r in rows if isinstance(r, dict) and model in str(r.get("model", ""))), None)
    return {"sft_mfu_1.5b": _first(row, "engine.mfu"),
            "sft_memory_vs_transformers_1.5b": _ratio(_first(row, "engine.peak_mem_gb"),
                                                      _first(row, "transformers.peak_mem_gb"))}


def _records(data: dict | None) -> list[dict]:
    records = (_get(data, "records") or _get(data, "results")) if data else None
    return [r for r in records or [] if isinstance(r, dict)]


def attention_vs_sdpa(records: list[dict], head_dim: int = 128) -> float | None:
    """Worst case over the d128 shapes of (fastest SDPA backend's ms) / (Triton forward's ms)."""
    shapes: dict[tuple, dict[str, float]] = {}
    for r in records:
        ms = _number(r.get("ms"))
        if r.get("kernel") == "varlen_attention" and r.get("pass") == "fwd" and ms \
                and r.get("head_dim") == head_dim:
            key = (r.get("model"), r.get("seqlens"))
            shapes.setdefault(key, {})[r["provider"]] = ms
    ratios = []
    for times in shapes.values():
        sdpa = [ms for provider, ms in times.items() if provider.startswith("sdpa")]
        if "triton" in times and sdpa:
            ratios.append(min(sdpa) / times["triton"])
    return min(ratios) if ratios else None


def memory_bound_vs_copy(records: list[dict]) -> dict[str, float]:
    """Per memory-bound kernel, the worst forward fraction of copy bandwidth over its shapes."""
    worst: dict[str, float] = {}
    for r in records:
        frac = _number(r.get("of_copy_bw"))
        if r.get("kernel") in MEMORY_BOUND and r.get("provider") == "triton" \
                and r.get("pass") == "fwd" and frac is not None:
            worst[r["kernel"]] = min(frac, worst.get(r["kernel"], frac))
    return worst


def collect(folder: Path) -> list[dict]:
    """Rows {figure, value, goal, ok}: value None means not measured."""
    gen = generation_figures(_load(folder, "generation*.json"))
    train = training_figures(_load(folder, "training*.json"))
    kernel_records = _records(_load(folder, "kernels*.json"))
    mem = memory_bound_vs_copy(kernel_records)
    rows = [
        ("generation tokens/s vs transformers", gen["generation_vs_transformers"], ">=", 5.0, "x"),
        ("batch-1 decode, fraction of bandwidth roofline", gen["decode_b1_roofline_fraction"],
         ">=", 0.70, "%"),
        ("SFT MFU at 1.5B", train["sft_mfu_1.5b"], ">=", 0.45, "%"),
        ("SFT peak memory vs transformers at 1.5B", train["sft_memory_vs_transformers_1.5b"],
         "<=", 0.60, "x"),
        ("attention fwd vs best SDPA at d128", attention_vs_sdpa(kernel_records), ">=", 0.90, "%"),
        ("memory-bound kernels, worst fraction of copy bw", min(mem.values()) if mem else None,
         ">=", 0.80, "%"),
    ]
    rows += [(f"  {name} fwd, fraction of copy bw", value, ">=", 0.80, "%")
             for name, value in sorted(mem.items())]
    out = []
    for figure, value, op, goal, unit in rows:
        ok = None if value is None else (value >= goal if op == ">=" else value <= goal)
        out.append({"figure": figure, "value": value, "goal": f"{op} {_fmt(goal, unit)}",
                    "unit": unit, "ok": ok})
    return out


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return NOT_MEASURED
    return f"{100 * value:.1f}%" if unit == "%" else f"{value:.2f}x"


def render(rows: list[dict], tests: dict | None) -> str:
    lines = []
    if tests is None:
        lines.append(f"GPU tests: {NOT_MEASURED}")
    else:
        passed = tests["tests"] - tests["failures"] - tests["errors"] - tests["skipped"]
        lines.append(f"GPU tests: {passed} passed, {tests['failures']} failed, "
                     f"{tests['errors']} errors, {tests['skipped']} skipped")
    width = max(len(r["figure"]) for r in rows)
    lines.append(f"{'figure':{width}s}  {'measured':>13s}  {'goal':>9s}  verdict")
    for r in rows:
        verdict = "-" if r["ok"] is None else "MET" if r["ok"] else "MISSED"
        lines.append(f"{r['figure']:{width}s}  {_fmt(r['value'], r['unit']):>13s}  "
                     f"{r['goal']:>9s}  {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    rows, tests = collect(args.folder), junit_counts(args.folder)
    print(render(rows, tests))
    if args.json:
        args.json.write_text(json.dumps({"tests": tests, "figures": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
