"""Data-parallel generation under `torchrun --nproc_per_node 2` (gloo, CPU): with
data_parallel=True each rank takes a strided share, every rank gets all results in input order,
equal to one process's results; without it (the default) one rank alone can generate."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.generation import LLM, SamplingParams
from engine.presets import write_tiny

WORKER = r'''
import json, sys
import torch
import torch.distributed as dist
torch.set_num_threads(1)
dist.init_process_group("gloo")
sys.path.insert(0, sys.argv[3])
from test_generation_dp import run_workload
result = run_workload(sys.argv[1])
gathered = [None] * dist.get_world_size()
dist.all_gather_object(gathered, result)
if dist.get_rank() == 0:
    with open(sys.argv[2], "w") as f:
        json.dump({"results": gathered}, f)
dist.destroy_process_group()
'''


def run_workload(model_dir: str) -> dict:
    """The same calls in one process or under torchrun; sampling with and without seeds."""
    llm = LLM(model_dir, dtype=torch.float32, device="cpu", data_parallel=True)
    prompts = ["one", "two three", "four five six seven", "eight", "nine ten eleven"]
    params = [SamplingParams(temperature=0.0, max_tokens=6, ignore_eos=True),
              SamplingParams(temperature=1.0, max_tokens=8, seed=5, ignore_eos=True),
              SamplingParams(temperature=1.0, top_p=0.9, max_tokens=5, n=2, ignore_eos=True),
              SamplingParams(temperature=0.0, max_tokens=3, ignore_eos=True),
              SamplingParams(temperature=0.7, max_tokens=7, ignore_eos=True)]
    outs = llm.generate(prompts, params, use_tqdm=False)
    prompt_tokens_here = llm.stats.num_prompt_tokens
    scores = llm.score(prompts, [" a", " b c", " d", " e f g", " h"])
    return {"generate": [[o.index, [c.token_ids for c in o.outputs], [c.text for c in o.outputs]]
                         for o in outs],
            "score": [s.token_logprobs for s in scores], "prompt_tokens_here": prompt_tokens_here}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("tiny_dp"), seed=2)


def _torchrun(worker: str, tmp_path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    script = tmp_path / "worker.py"
    script.write_text(worker)
    tests_dir = str(Path(__file__).parent)
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parent.parent), tests_dir,
                                           os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script), *args, tests_dir]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_two_ranks_return_one_process_results_in_order(tiny, tmp_path):
    out = tmp_path / "out.json"
    proc = _torchrun(WORKER, tmp_path, str(tiny), str(out), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = json.loads(out.read_text())["results"]
    single = json.loads(json.dumps(run_workload(str(tiny))))
    assert ranks[0]["generate"] == ranks[1]["generate"] == single["generate"]
    # each rank ran only its share
    assert 0 < ranks[0]["prompt_tokens_here"] < single["prompt_tokens_here"]
    assert ranks[0]["prompt_tokens_here"] + ranks[1]["prompt_tokens_here"] == single["prompt_tokens_here"]
    for r in ranks:
        for got, want in zip(r["score"], single["score"]):
            assert got == pytest.approx(want, abs=1e-5)


RANK0_WORKER = r'''
import json, sys
import torch
import torch.distributed as dist
torch.set_num_threads(1)
dist.init_process_group("gloo")
from engine.generation import LLM, SamplingParams
if dist.get_rank() == 0:      # only rank 0 generates (the default LLM does not shard)
    llm = LLM(sys.argv[1], dtype=torch.float32, device="cpu")
    outs = llm.generate(["one", "two three", "four"],
                        SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True), use_tqdm=False)
    with open(sys.argv[2], "w") as f:
        json.dump([o.token_ids for o in outs], f)
dist.barrier()
dist.destroy_process_group()
'''


def test_rank0_only_generate_does_not_wait_for_other_ranks(tiny, tmp_path):
    out = tmp_path / "rank0.json"
    # the timeout is a safety net for the hang this test guards against, not a race
    proc = _torchrun(RANK0_WORKER, tmp_path, str(tiny), str(out), timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    llm = LLM(str(tiny), dtype=torch.float32, device="cpu")
    want = llm.generate(["one", "two three", "four"],
                        SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True), use_tqdm=False)
    assert json.loads(out.read_text()) == [o.token_ids for o in want]
