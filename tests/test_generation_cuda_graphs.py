"""The CUDA-graph decode path's data handling, on CPU: static buffers, padding to the captured
batch size (padding rows write no K/V), block-table copies. A stand-in "graph" replays the
eager forward on the static buffers, which is exactly what a captured graph would compute."""
import pytest
import torch

from engine.generation import LLM, SamplingParams
from engine.generation.cuda_graphs import DecodeGraphs, graph_batch_sizes
from hf_models import write_hf_model


class _EagerReplay:
    def __init__(self, graphs: DecodeGraphs, bs: int):
        self.graphs, self.bs = graphs, bs
        self.replays = 0

    def replay(self):
        g, bs = self.graphs, self.bs
        g.hidden[:bs] = g.model.forward_packed(g.input_ids[:bs], g.positions[:bs], g._meta(bs))
        self.replays += 1


def test_batch_sizes_cover_every_batch():
    assert graph_batch_sizes(1) == [1]
    assert graph_batch_sizes(40) == [1, 2, 4, 8, 16, 32, 40]
    sizes = graph_batch_sizes(256)
    assert sizes[-1] == 256 and all(any(s >= n for s in sizes) for n in range(1, 257))


def test_padded_static_buffer_decode_equals_eager(tmp_path):
    d = tmp_path / "qwen2"
    write_hf_model(d, "qwen2_gqa2_tied")
    prompts = [[5, 9, 200, 31], list(range(10, 47)), [77]]
    sp = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
    eager = LLM(d, dtype=torch.float32, max_num_seqs=8).generate(prompts, sp, use_tqdm=False)
    llm = LLM(d, dtype=torch.float32, max_num_seqs=8)
    runner = llm.runner
    graphs = DecodeGraphs(llm.model, runner.kv_caches, 8, runner.max_blocks_per_seq)
    graphs.graphs = {bs: _EagerReplay(graphs, bs) for bs in graphs.sizes}
    runner.graphs = graphs
    out = llm.generate(prompts, sp, use_tqdm=False)
    assert [o.token_ids for o in out] == [o.token_ids for o in eager]
    assert graphs.graphs[4].replays > 0          # 3 sequences padded to the size-4 graph


def test_failed_capture_raises_naming_the_batch_size(tmp_path, monkeypatch):
    """No silent eager fallback: a capture that fails raises GraphCaptureError."""
    from engine.generation.model_runner import GraphCaptureError

    d = tmp_path / "qwen2"
    write_hf_model(d, "qwen2_gqa2_tied")
    llm = LLM(d, dtype=torch.float32, max_num_seqs=8)

    class _FailingGraph:
        def __init__(self):
            raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "CUDAGraph", _FailingGraph)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: None)
    with pytest.raises(GraphCaptureError, match="batch size 8.*enforce_eager=True"):
        llm.runner._capture_graphs(8)
    assert llm.runner.graphs is None


# --- on a GPU only --------------------------------------------------------------------------------
def _gpu_pair(tmp_path, name):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    d = tmp_path / name
    write_hf_model(d, name)
    kw = dict(dtype=torch.float32, device="cuda", max_num_seqs=8, gpu_memory_utilization=0.3)
    return LLM(d, **kw), LLM(d, enforce_eager=True, **kw)


def test_gpu_graphs_are_captured(tmp_path):
    graphed, eager = _gpu_pair(tmp_path, "qwen2_gqa2_tied")
    assert graphed.runner.graphs is not None and set(graphed.runner.graphs.graphs) == set(
        graph_batch_sizes(graphed.scheduler.max_num_seqs))
    assert eager.runner.graphs is None


@pytest.mark.parametrize("name", ["qwen2_gqa2_tied", "llama_mha_untied"])
def test_gpu_greedy_tokens_under_graphs_equal_eager(tmp_path, name):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    prompts = [[5, 9, 200, 31], list(range(10, 47)), [77], list(range(3, 30))]
    sp = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)
    graphed, eager = _gpu_pair(tmp_path, name)
    got = graphed.generate(prompts, sp, use_tqdm=False)
    want = eager.generate(prompts, sp, use_tqdm=False)
    assert graphed.runner.graphs is not None
    assert [o.token_ids for o in got] == [o.token_ids for o in want]
