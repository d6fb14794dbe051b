"""SFT data: rendering and loss masks, malformed lines, overlong samples, packing, settings."""
import json

import pytest
import torch

from engine.presets import write_tiny
from engine.tokenizer import Tokenizer
from engine.training.config import ConfigError, TrainConfig, apply_overrides, load_toml
from engine.prompt_format import raw_prompt as format_raw_prompt
from engine.training.data import DataError, load_sft_samples
from engine.training.optim import WarmupCosine, param_groups
from engine.training.packing import (IGNORE_INDEX, PackSchedule, TrainingSample, epoch_order,
                                     make_pack, to_training_samples)


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return Tokenizer.from_pretrained(write_tiny(tmp_path_factory.mktemp("tiny")))


def _write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _targets(tok, sample):
    return tok.decode([t for t, keep in zip(sample.tokens, sample.is_target) if keep],
                      skip_special_tokens=False)


def test_format_raw_prompt():
    assert format_raw_prompt("Add the numbers.", "2 and 3") == "Add the numbers.\n2 and 3\n"
    assert format_raw_prompt("Name a color.", "") == "Name a color.\n"
    assert format_raw_prompt("Name a color.") == "Name a color.\n"


def test_raw_format_trains_on_output_and_eos_only(tok, tmp_path):
    f = _write(tmp_path / "a.jsonl", [{"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}])
    [s] = load_sft_samples([f], tok, "raw")
    prompt = tok.encode("Add the numbers.\n2 and 3\n")
    eos = tok.token_to_id("<|endoftext|>")
    assert s.tokens == prompt + tok.encode("5", add_special_tokens=False) + [eos]
    assert s.is_target == [False] * len(prompt) + [True, True]


def test_chat_format_trains_on_each_assistant_reply_and_its_end_token(tok, tmp_path):
    conv = {"messages": [{"role": "user", "content": "Hi there"},
                         {"role": "assistant", "content": "Hello friend"},
                         {"role": "user", "content": "And now?"},
                         {"role": "assistant", "content": "Still here"}]}
    f = _write(tmp_path / "c.jsonl", [conv])
    [s] = load_sft_samples([f], tok, "chat")
    assert tok.decode(s.tokens, skip_special_tokens=False) == tok.apply_chat_template(conv["messages"])
    assert _targets(tok, s) == "Hello friend<|im_end|>Still here<|im_end|>"


def test_alpaca_record_in_chat_format_is_one_user_turn(tok, tmp_path):
    f = _write(tmp_path / "a.jsonl", [{"instruction": "Add.", "input": "2 and 3", "output": "5"}])
    [s] = load_sft_samples([f], tok, "chat")
    text = tok.decode(s.tokens, skip_special_tokens=False)
    assert "<|im_start|>user\nAdd.\n2 and 3<|im_end|>" in text
    assert _targets(tok, s) == "5<|im_end|>"


def test_completion_record_is_tokenized_like_llm_score_and_trains_on_completion(tok, tmp_path):
    # prompt ends with a space, as the judge prompts do: the continuation is encoded apart
    f = _write(tmp_path / "p.jsonl", [{"prompt": "The score is: ", "completion": "9||Right."}])
    for prompt_format in ("raw", "chat"):
        [s] = load_sft_samples([f], tok, prompt_format)
        prompt = tok.encode("The score is: ", add_special_tokens=True)
        eos = tok.token_to_id("<|endoftext|>")
        assert s.tokens == prompt + tok.encode("9||Right.", add_special_tokens=False) + [eos]
        assert _targets(tok, s) == "9||Right.<|endoftext|>"


@pytest.mark.parametrize("line, problem", [
    ({"prompt": "x", "completion": ""}, "'completion' is empty"),
    ({"prompt": 3, "completion": "y"}, "needs string 'prompt'"),
    ('{"instruction": "x", "output": ', "malformed JSON"),
    ({"instruction": "x"}, "missing key 'output'"),
    ({"instruction": "x", "output": 3}, "'output' must be a string"),
    ({"instruction": "x", "input": ["a"], "output": "y"}, "'input' must be a string"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant message"),
    ({"messages": [{"role": "user"}]}, r"messages\[0\]"),
    (["not", "an", "object"], "expected a JSON object"),
])
def test_malformed_line_is_named_by_file_and_line(tok, tmp_path, line, problem):
    good = {"instruction": "Say hi.", "output": "hi"}
    f = _write(tmp_path / "bad.jsonl", [good, "", good, line])
    with pytest.raises(DataError, match=rf"bad\.jsonl:4: .*{problem}"):
        load_sft_samples([f], tok, "chat")


def test_messages_record_needs_chat_format(tok, tmp_path):
    f = _write(tmp_path / "m.jsonl", [{"messages": [{"role": "user", "content": "a"},
                                                    {"role": "assistant", "content": "b"}]}])
    with pytest.raises(DataError, match=r"m\.jsonl:1: .*prompt_format='chat'"):
        load_sft_samples([f], tok, "raw")


def test_overlong_samples_are_truncated_or_dropped_and_counted(tok, tmp_path):
    long_answer = " ".join(["stone"] * 40)
    f = _write(tmp_path / "o.jsonl", [{"instruction": "Short.", "output": "ok"},
                                      {"instruction": "Long.", "output": long_answer},
                                      {"instruction": " ".join(["prompt"] * 40), "output": "x"}])
    samples = load_sft_samples([f], tok, "raw")
    seq_len = 20
    kept, stats = to_training_samples(samples, seq_len, "truncate")
    # the long answer is cut to seq_len; the long prompt leaves no target, so it is dropped
    assert (stats.truncated, stats.dropped, len(kept)) == (1, 1, 2)
    assert len(kept[1]) == seq_len and kept[1].input_ids == samples[1].tokens[:seq_len]
    kept, stats = to_training_samples(samples, seq_len, "drop")
    assert (stats.truncated, stats.dropped, len(kept)) == (0, 2, 1)


def test_labels_are_next_tokens_masked_outside_targets():
    from engine.training.data import TokenizedSample
    s = TokenizedSample([10, 11, 12, 13, 14], [False, False, True, True, True], "x:1")
    [t], _ = to_training_samples([s], 16)
    assert t.input_ids == [10, 11, 12, 13]
    assert t.labels == [IGNORE_INDEX, 12, 13, 14]


def test_pack_positions_restart_and_boundaries_follow_samples():
    a = TrainingSample([1, 2, 3], [IGNORE_INDEX, 3, 4], "a")
    b = TrainingSample([5, 6], [7, IGNORE_INDEX], "b")
    p = make_pack([a, b])
    assert p.input_ids.tolist() == [1, 2, 3, 5, 6]
    assert p.positions.tolist() == [0, 1, 2, 0, 1]
    assert p.metadata("cpu").cu_seqlens_q.tolist() == [0, 3, 5]
    assert p.num_loss_tokens == 3


def _samples(lengths):
    return [TrainingSample(list(range(n)), [1] * n, f"s{i}") for i, n in enumerate(lengths)]


def test_epoch_order_is_fixed_by_seed_and_epoch():
    assert epoch_order(50, seed=3, epoch=1) == epoch_order(50, seed=3, epoch=1)
    assert epoch_order(50, seed=3, epoch=1) != epoch_order(50, seed=3, epoch=2)
    assert epoch_order(50, seed=3, epoch=1) != epoch_order(50, seed=4, epoch=1)
    assert sorted(epoch_order(50, 0, 0)) == list(range(50))


def test_schedule_uses_every_sample_once_per_epoch_within_budget():
    lengths = [int(x) for x in torch.randint(1, 30, (41,), generator=torch.Generator().manual_seed(0))]
    sched = PackSchedule(_samples(lengths), seq_len=32, seed=0, epochs=2, world_size=2, grad_accum=3,
                         filler_token=0)
    for epoch, packs in enumerate(sched.epoch_packs):
        assert sorted(i for p in packs for i in p) == list(range(41))
        assert all(sum(lengths[i] for i in p) <= 32 for p in packs)
    seen = [i for step in range(sched.total_steps) for p in sched.step_layout(step) for i in p]
    assert sorted(seen) == sorted(list(range(41)) * 2)
    # the last step of an epoch is topped up with filler packs that carry no loss
    last = sched.rank_packs(sched.steps_per_epoch[0] - 1, rank=1)
    assert len(last) == 3


def test_one_rank_with_accumulation_runs_the_packs_of_two_ranks():
    samples = _samples([9, 7, 12, 5, 8, 11, 6, 10, 4])
    one = PackSchedule(samples, 16, seed=1, epochs=1, world_size=1, grad_accum=2, filler_token=0)
    two = PackSchedule(samples, 16, seed=1, epochs=1, world_size=2, grad_accum=1, filler_token=0)
    assert one.total_steps == two.total_steps
    for step in range(one.total_steps):
        ones = [p.input_ids.tolist() for p in one.rank_packs(step, 0)]
        twos = [p.input_ids.tolist() for r in (0, 1) for p in two.rank_packs(step, r)]
        assert ones == twos
        assert one.step_loss_tokens(step) == two.step_loss_tokens(step)


def test_overrides_convert_types_and_reject_unknown_keys(tmp_path):
    cfg = apply_overrides(TrainConfig(), ["lr=3e-4", "epochs=2", "lora=true", "max_steps=none",
                                          "lora_targets=q_proj,v_proj", "data=a.jsonl,b.jsonl"])
    assert (cfg.lr, cfg.epochs, cfg.lora, cfg.max_steps) == (3e-4, 2, True, None)
    assert cfg.lora_targets == ["q_proj", "v_proj"] and cfg.data == ["a.jsonl", "b.jsonl"]
    with pytest.raises(ConfigError, match="unknown setting 'lerning_rate'"):
        apply_overrides(cfg, ["lerning_rate=1"])
    with pytest.raises(ConfigError, match="'epochs' = 'two'"):
        apply_overrides(cfg, ["epochs=two"])
    with pytest.raises(ConfigError, match="'lora' = 'maybe'"):
        apply_overrides(cfg, ["lora=maybe"])
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nlr = 2e-5\nlora_targets = ["q_proj"]\nseq_len = 512\n')
    cfg = apply_overrides(TrainConfig(), load_toml(toml))
    assert (cfg.lr, cfg.lora_targets, cfg.seq_len) == (2e-5, ["q_proj"], 512)


def test_warmup_then_cosine_to_min_lr():
    lr = WarmupCosine(peak=1.0, floor=0.1, warmup_steps=4, total_steps=14)
    assert [lr(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr(4) == 1.0 and abs(lr(13) - 0.1) < 1e-12
    assert abs(lr(4 + 9 / 2) - 0.55) < 1e-12         # halfway down the cosine
    assert all(lr(s) >= lr(s + 1) for s in range(4, 13))


def test_no_weight_decay_on_norms_biases_and_vectors():
    from engine.model import CausalLM
    from engine.presets import tiny_config
    model = CausalLM(tiny_config(100))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(names[id(p)].endswith(("norm.weight", "bias")) for p in no_decay["params"])
    assert {names[id(p)] for p in decay["params"]} == {n for n, p in model.named_parameters() if p.dim() == 2}
