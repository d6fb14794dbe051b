"""Whole fine-tuning runs on a tiny model: FSDP2 on 1 vs 2 processes, resume, LoRA, export,
divergence. Runs on the CPU with gloo; the 2-process run goes through torchrun and the CLI."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from engine import load_model
from engine.presets import write_tiny
from engine.tokenizer import Tokenizer
from engine.train import main as cli_main
from engine.training import TrainConfig, TrainingDiverged, apply_overrides, train

REPO = Path(__file__).resolve().parents[1]
WORDS = ["apple", "river", "stone", "cloud", "green", "tiger", "music", "paper"]
# 8 chat samples of ~52 tokens: 2 per 112-token pack, 4 packs per epoch, and with
# 2 packs per step (grad_accum=2 on 1 process, or 2 processes) 2 steps per epoch: 12 steps
COMMON = ["seq_len=112", "lr=1e-2", "warmup_steps=2", "min_lr=1e-3", "epochs=6", "seed=3",
          "weight_decay=0.01", "max_grad_norm=1.0", "progress=false"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    model_dir = write_tiny(root / "tiny", seed=0)
    data = root / "words.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Say word number {i}.", "input": "" if i % 2 else "now",
                                        "output": f"The word is {w}."}) + "\n" for i, w in enumerate(WORDS)))
    return model_dir, data, root


def _cfg(files, output, *overrides) -> TrainConfig:
    model_dir, data, root = files
    return apply_overrides(TrainConfig(model=str(model_dir), data=[str(data)], output=str(root / output)),
                           COMMON + list(overrides))


def _log(output) -> list[dict]:
    return [r for r in map(json.loads, (Path(output) / "train_log.jsonl").read_text().splitlines())
            if "loss" in r]


def _dcp_model(step_dir: Path, tmp: Path) -> dict[str, torch.Tensor]:
    dcp_to_torch_save(step_dir, tmp / "ckpt.pt")
    return torch.load(tmp / "ckpt.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def reference(files):
    """The uninterrupted single-process run the other runs are compared with."""
    return train(_cfg(files, "reference", "grad_accum=2", "checkpoint_every=6", "keep_checkpoints=1"))


def test_loss_falls_and_export_matches_transformers_and_final_checkpoint(reference, files, tmp_path):
    import transformers

    assert reference.steps == 12 and len(reference.losses) == 12
    assert reference.losses[-1] < 0.5 * reference.losses[0]
    export = Path(reference.model_dir)
    ours = load_model(export)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(export, dtype=torch.float32).eval()
    x = torch.randint(0, ours.config.vocab_size, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs(x).logits, ours(x), rtol=0, atol=1e-4)
    assert Tokenizer.from_pretrained(export).encode("The word is apple.") == \
        Tokenizer.from_pretrained(files[0]).encode("The word is apple.")
    # the export is the trained model: bit-equal to the model tensors of the last checkpoint
    ckpts = Path(reference.output_dir) / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_12"]       # keep_checkpoints=1
    saved = _dcp_model(ckpts / "step_12", tmp_path)
    exported = load_file(export / "model.safetensors")
    assert set(exported) == {k.removeprefix("lm.") for k in saved} - {"lm_head.weight"}  # tied
    for name, t in exported.items():
        assert torch.equal(t, saved["lm." + name]), name
    log = _log(reference.output_dir)
    assert [r["step"] for r in log] == list(range(1, 13)) and log[0]["mfu"] is None
    assert all(r["tokens_per_s"] > 0 and r["grad_norm"] > 0 for r in log)


def test_two_processes_match_one_process(reference, files):
    """torchrun --nproc_per_node 2 with grad_accum=1 runs the same packs per step as one process
    with grad_accum=2. Tolerance: losses 1e-5 relative, final weights 1e-5 absolute (observed
    ~1e-6: only summation order differs, in the sharded grad norm and thread blocking)."""
    model_dir, data, root = files
    out = root / "two_procs"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "engine.train", "--model", str(model_dir), "--data", str(data), "--output", str(out),
           *COMMON, "grad_accum=1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two, one = _log(out), _log(reference.output_dir)
    assert len(two) == len(one) == 12
    torch.testing.assert_close(torch.tensor([r["loss"] for r in two]), torch.tensor(reference.losses),
                               rtol=1e-5, atol=0)
    # the clipped norm is the global one (a per-shard norm would be ~30% off): the first steps
    # agree to 1e-5; later, 1e-6 weight differences move the small gradients by up to ~1e-4
    torch.testing.assert_close(torch.tensor([r["grad_norm"] for r in two[:5]]),
                               torch.tensor([r["grad_norm"] for r in one[:5]]), rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor([r["grad_norm"] for r in two]),
                               torch.tensor([r["grad_norm"] for r in one]), rtol=1e-3, atol=0)
    assert [r["tokens"] for r in two] == [r["tokens"] for r in one]
    a, b = load_file(out / "model" / "model.safetensors"), load_file(Path(reference.model_dir) / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-5, msg=name)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["steps"] == 12


def test_resume_after_interruption_reproduces_the_loss_curve(reference, files):
    first = train(_cfg(files, "resumed", "grad_accum=2", "stop_at_step=5"))
    assert first.stopped_early and first.steps == 5 and first.model_dir is None
    assert first.losses == reference.losses[:5]
    with pytest.raises(RuntimeError, match="already holds step_5: pass resume=true"):
        train(_cfg(files, "resumed", "grad_accum=2"))
    second = train(_cfg(files, "resumed", "grad_accum=2", "resume=true"))
    assert second.steps == 12 and second.tokens == reference.tokens
    torch.testing.assert_close(torch.tensor(second.losses), torch.tensor(reference.losses), rtol=1e-6, atol=0)
    assert [r["step"] for r in _log(second.output_dir)] == list(range(1, 13))   # one log, continued
    a = load_file(Path(second.model_dir) / "model.safetensors")
    b = load_file(Path(reference.model_dir) / "model.safetensors")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_lora_trains_only_adapters_resumes_with_dropout_and_exports_merged(files, tmp_path):
    lora = ["lora=true", "lora_rank=4", "lora_alpha=8", "lora_dropout=0.1", "epochs=2", "lr=1e-2",
            "grad_accum=2", "checkpoint_every=4"]
    whole = train(_cfg(files, "lora", *lora))
    # interrupted and resumed, with activation checkpointing: dropout masks must replay exactly
    train(_cfg(files, "lora_resumed", *lora, "stop_at_step=2", "activation_checkpointing=true"))
    resumed = train(_cfg(files, "lora_resumed", *lora, "resume=true", "activation_checkpointing=true"))
    torch.testing.assert_close(torch.tensor(resumed.losses), torch.tensor(whole.losses), rtol=1e-6, atol=0)
    assert whole.losses[-1] < whole.losses[0]

    adapters = _dcp_model(Path(whole.output_dir) / "checkpoints" / "step_4", tmp_path)
    assert adapters and all(k.endswith(("lora_A", "lora_B")) for k in adapters)   # base not saved
    source = load_file(files[0] / "model.safetensors")
    exported = load_file(Path(whole.model_dir) / "model.safetensors")
    assert set(exported) == set(source)
    for name, w in source.items():
        module = "lm." + name.removesuffix(".weight")
        if module + ".lora_A" in adapters:
            a, b = adapters[module + ".lora_A"], adapters[module + ".lora_B"]
            assert b.abs().max() > 0
            torch.testing.assert_close(exported[name], w + (8 / 4) * b @ a, rtol=0, atol=1e-6, msg=name)
        else:
            assert torch.equal(exported[name], w), f"{name} is not adapted and must not change"


def test_nan_loss_stops_with_the_step_and_keeps_the_last_checkpoint(files):
    # an absurd learning rate blows the weights up in the first update; step 2's loss is NaN
    cfg = _cfg(files, "diverged", "lr=1e30", "warmup_steps=0", "min_lr=0", "grad_accum=2",
               "checkpoint_every=1")
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 2.*checkpoints/step_1"):
        train(cfg)
    ckpts = Path(cfg.output) / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["step_1"]
    assert json.loads((ckpts / "step_1" / "trainer_state.json").read_text())["step"] == 1
    assert [r["step"] for r in _log(cfg.output)] == [1]


def test_cli_reports_unknown_settings_and_bad_lines(files, capsys):
    model_dir, data, root = files
    args = ["--model", str(model_dir), "--data", str(data), "--output", str(root / "cli")]
    assert cli_main(args + ["learning_rate=1e-4"]) == 2
    assert "unknown setting 'learning_rate'" in capsys.readouterr().err
    bad = root / "bad.jsonl"
    bad.write_text(data.read_text().splitlines()[0] + '\n{"instruction": "x", "output": 5}\n')
    assert cli_main(["--model", str(model_dir), "--data", str(bad), "--output", str(root / "cli")]) == 2
    assert f"{bad}:2: 'output' must be a string" in capsys.readouterr().err


def test_train_inside_a_process_group_the_caller_started_leaves_it_open(reference, files, tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        result = train(_cfg(files, "in_group", "grad_accum=2", "max_steps=2", "export=false"))
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
    # a shorter plan changes no learning rate before step 2 (warmup), so the losses agree
    assert result.losses == reference.losses[:2] and result.model_dir is None
