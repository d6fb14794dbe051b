"""What a fine-tuning run leaves behind and when it refuses: a finished output directory,
divergence found at the metrics read, the trackers' files, the CPU thread default."""
import json
from pathlib import Path

import pytest
import torch

from engine.presets import write_tiny
from engine.training import TrainConfig, TrainingDiverged, train
from engine.training.trainer import ResumeError, cpu_threads

WORDS = ["apple", "river", "stone", "cloud", "green", "tiger", "music", "paper"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    model_dir = write_tiny(root / "tiny", seed=0)
    data = root / "words.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Say word number {i}.", "input": "",
                                        "output": f"The word is {w}."}) + "\n" for i, w in enumerate(WORDS)))
    return model_dir, data


def _cfg(files, output, **kw) -> TrainConfig:
    model_dir, data = files
    # 8 samples of ~50 tokens, 2 per 112-token pack, 2 packs per step: 2 steps per epoch
    settings = dict(seq_len=112, lr=1e-2, epochs=2, seed=3, grad_accum=2, progress=False)
    return TrainConfig(model=str(model_dir), data=[str(data)], output=str(output), **{**settings, **kw})


def _step_records(output) -> list[dict]:
    return [r for r in map(json.loads, (Path(output) / "train_log.jsonl").read_text().splitlines())
            if "loss" in r]


def test_finished_output_dir_is_refused_unless_overwrite(files, tmp_path):
    out = tmp_path / "run"
    first = train(_cfg(files, out))
    assert first.steps == 4 and (out / "model").is_dir()
    exported = (out / "model" / "model.safetensors").read_bytes()
    with pytest.raises(ResumeError, match=r"already holds a finished run.*overwrite=true"):
        train(_cfg(files, out, lr=5e-3))
    assert (out / "model" / "model.safetensors").read_bytes() == exported    # untouched
    assert len(_step_records(out)) == 4
    # resume=true on a finished run has nothing left to do: its recorded result comes back
    again = train(_cfg(files, out, resume=True))
    assert again.losses == first.losses and again.model_dir == first.model_dir
    with pytest.raises(ResumeError, match="total_steps"):
        train(_cfg(files, out, resume=True, epochs=3))
    # overwrite=true trains again from scratch, into a fresh log
    second = train(_cfg(files, out, lr=5e-3, overwrite=True))
    assert second.steps == 4 and second.losses[0] == first.losses[0]    # same start, other lr
    assert second.losses[1:] != first.losses[1:]
    assert [r["step"] for r in _step_records(out)] == [1, 2, 3, 4]
    assert (out / "model" / "model.safetensors").read_bytes() != exported


def test_exported_model_without_a_log_counts_as_finished(files, tmp_path):
    out = tmp_path / "run"
    (out / "model").mkdir(parents=True)
    with pytest.raises(ResumeError, match=r"finished run \(exported .*model\)"):
        train(_cfg(files, out))


def test_divergence_is_reported_at_its_own_step_when_read_later(files, tmp_path):
    """log_every=4: losses are read after step 4 only. Step 1's update with an absurd lr makes
    step 2's loss NaN; the error names step 2 (the first bad step), not the step of the read,
    and nothing from step 2 on is logged or checkpointed."""
    out = tmp_path / "diverged"
    cfg = _cfg(files, out, lr=1e30, log_every=4, checkpoint_every=1, keep_checkpoints=5)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 2 \(found when reading metrics after step 2\)"):
        train(cfg)     # checkpoint_every=1 reads every step, so the read is at step 2
    out2 = tmp_path / "diverged_late"
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 2 \(found when reading metrics "
                                               r"after step 4\).*Last good checkpoint: none written yet"):
        train(_cfg(files, out2, lr=1e30, log_every=4))
    assert [r["step"] for r in _step_records(out2)] == [1]
    assert not (out2 / "checkpoints").exists() and not (out2 / "model").exists()


def test_log_every_changes_no_number(files, tmp_path):
    """Reading the device every step or every 3 steps gives the same per-step log."""
    every = train(_cfg(files, tmp_path / "a", log_every=1, export=False))
    sparse = train(_cfg(files, tmp_path / "b", log_every=3, export=False))
    assert sparse.losses == every.losses and len(every.losses) == 4
    a, b = _step_records(tmp_path / "a"), _step_records(tmp_path / "b")
    for key in ("step", "loss", "grad_norm", "lr", "tokens", "loss_tokens", "flops"):
        assert [r[key] for r in a] == [r[key] for r in b], key


def test_tensorboard_events_hold_the_logged_losses(files, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    result = train(_cfg(files, out, tracker="tensorboard", export=False, log_every=3))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    logged = _step_records(out)
    for tag, key in (("train/loss", "loss"), ("train/lr", "lr"), ("train/grad_norm", "grad_norm"),
                     ("train/tokens_per_s", "tokens_per_s")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [r["step"] for r in logged] == [1, 2, 3, 4]
        # event files store float32
        torch.testing.assert_close(torch.tensor([s.value for s in scalars]),
                                   torch.tensor([r[key] for r in logged], dtype=torch.float32), rtol=0, atol=0)
    assert "train/mfu" not in events.Tags()["scalars"]      # None on a CPU: left out
    assert [r["loss"] for r in logged] == result.losses


def test_wandb_offline_writes_its_run_files(files, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(_cfg(files, tmp_path / "wb", tracker="wandb", export=False, max_steps=2))
    runs = list((tmp_path / "wandb_dir" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    assert list(runs[0].glob("*.wandb")), f"no .wandb history file in {runs[0]}"


def test_missing_tracker_package_fails_first_naming_the_extra(monkeypatch, tmp_path):
    import sys

    from engine.tracking import TrackerError, make_tracker
    monkeypatch.setitem(sys.modules, "wandb", None)      # as if wandb were not installed
    with pytest.raises(TrackerError, match=r"pip install 'sheep-engine\[wandb\]'"):
        make_tracker("wandb", tmp_path)
    # before anything is read: the model directory does not even exist
    cfg = TrainConfig(model=str(tmp_path / "no_model"), data=["x.jsonl"], output=str(tmp_path / "o"),
                      tracker="wandb")
    with pytest.raises(TrackerError, match="needs the wandb package"):
        train(cfg)
    assert not (tmp_path / "o").exists()


def test_cpu_threads_default_is_one_unless_told(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_threads(0) == 1
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads(0) == 3
    assert cpu_threads(2) == 2


def test_training_on_cpu_uses_the_thread_setting_and_restores_the_callers(files, tmp_path, monkeypatch):
    seen = []
    import engine.training.trainer as trainer
    real = trainer.run_steps
    monkeypatch.setattr(trainer, "run_steps", lambda *a: (seen.append(torch.get_num_threads()), real(*a)))
    before = torch.get_num_threads()
    train(_cfg(files, tmp_path / "threads", cpu_threads=2, export=False, max_steps=1))
    assert seen == [2] and torch.get_num_threads() == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host-device syncs exist only with CUDA")
def test_train_step_makes_no_host_sync_on_cuda(files):
    """After a warm-up step (FSDP lazy init, kernel compilation), a training step on repeated
    shapes runs with CUDA sync debugging set to error: any blocking device->host read raises."""
    from engine.training.optim import build_optimizer
    from engine.training.packing import make_pack, to_training_samples
    from engine.training.data import load_sft_samples
    from engine.training.parallel import build_sharded_model, init_distributed
    from engine.training.trainer import train_step
    from engine.tokenizer import Tokenizer

    model_dir, data = files
    ctx = init_distributed("cuda")
    try:
        model = build_sharded_model(model_dir, ctx, torch.bfloat16)
        optimizer = build_optimizer(model, 1e-3, 0.0, (0.9, 0.95), 1e-8, ctx.device)
        samples, _ = to_training_samples(load_sft_samples([data], Tokenizer.from_pretrained(model_dir), "chat"), 112)
        packs = [make_pack(samples[:2]), make_pack(samples[2:4])]
        step = dict(lr=1e-3, loss_scale=0.01, max_grad_norm=1.0, device=ctx.device)
        train_step(model, optimizer, packs, **step)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            losses = [train_step(model, optimizer, packs, **step)[0] for _ in range(2)]
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert all(torch.isfinite(loss).item() for loss in losses)
    finally:
        ctx.close()
