"""The multi-node launch, as far as one machine allows: two torchrun agents (--nnodes 2,
--nproc_per_node 1, c10d rendezvous on 127.0.0.1, gloo) run one iteration of the loop. Both
nodes stop at the same chunk of the responses stage (a deterministic fault, as when a job is
killed), are started again, and end with the same data files and trained weights as one agent
with two processes. Only the writer rank writes the run directory."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from engine.selfalign.records import atomic_write_jsonl, read_jsonl, record_id

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "recipes" / "configs" / "tiny.toml"
RECIPE = ROOT / "recipes" / "isheep_qwen.py"
FILES = ("prompts.jsonl", "responses.jsonl", "assessed.jsonl", "train.jsonl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from engine.presets import write_tiny

    root = tmp_path_factory.mktemp("multinode")
    model = write_tiny(root / "model", seed=1)
    atomic_write_jsonl(root / "prompts" / "iter_01" / "prompts.jsonl",
                       [{"id": record_id(1, k), "instruction": f"Write a line about the number {k}.",
                         "input": ""} for k in range(8)])
    return root, model


def _args(root, model, run_dir):
    return [str(RECIPE), "--config", str(TINY), f"run.model={model}", f"run.run_dir={run_dir}",
            f"synthesis.prompts_from={root / 'prompts'}", "run.iterations=1", "eval.enabled=false",
            "response.max_tokens=16", "generation.chunk_size=2", "training.seq_len=256"]


def _env(fault=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("SHEEP_FAULT", None)
    if fault:
        env["SHEEP_FAULT"] = fault
    return env


def _two_agents(args, fault=None):
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2",
                               "--nproc_per_node", "1", "--rdzv_backend", "c10d",
                               "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", f"t{port}",
                               "--max_restarts", "0", *args], cwd=ROOT, env=_env(fault),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    return [p.returncode for p in procs], outs


def test_two_agents_resume_and_equal_one_agent_with_two_processes(inputs, tmp_path):
    root, model = inputs
    one = tmp_path / "one_agent"
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", *_args(root, model, one)], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]

    two = tmp_path / "two_agents"
    codes, logs = _two_agents(_args(root, model, two), fault="responses.jsonl:2:exit")
    assert all(c != 0 for c in codes), logs
    assert (two / "iter_01" / "responses.partial.jsonl").is_file()
    assert not (two / "iter_01" / "responses.jsonl").exists()
    codes, logs = _two_agents(_args(root, model, two))        # run both agents again
    assert codes == [0, 0], logs[0][-3000:] + logs[1][-3000:]

    for name in FILES:
        assert read_jsonl(two / "iter_01" / name) == read_jsonl(one / "iter_01" / name), name
    a = load_file(str(one / "iter_01" / "model" / "model.safetensors"))
    b = load_file(str(two / "iter_01" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k].float() - b[k].float()).abs().max().item() <= 1e-5, k
    # one writer: one entry per invocation, written by global rank 0 only
    import json
    assert len(json.loads((two / "environment.json").read_text())) == 2
