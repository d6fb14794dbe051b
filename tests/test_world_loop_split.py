"""The loop keeps the toy world's held-out tasks out of its training data."""
import random

from engine.selfalign.settings import load_config
from engine.selfalign.stages import _prompt_drop_reason, _world_split
from engine.selfalign.synthesis import ParsedTask
from engine.world.tasks import held_out_tasks, is_held_out, sample_task


def test_synthesized_held_out_tasks_are_dropped_only_in_the_world():
    on = _world_split(load_config(None, ["world.enabled=true"]))
    assert on is is_held_out
    assert _world_split(load_config(None, [])) is None
    off = load_config(None, ["world.enabled=true", "world.exclude_heldout=false"])
    assert _world_split(off) is None
    held = held_out_tasks(3)
    train = [sample_task(random.Random(k)) for k in range(20)]
    for t in held:
        task = ParsedTask(f" {t.instruction} ", t.input)       # as parsed, before stripping
        assert _prompt_drop_reason(task, False, on) == "heldout"
        assert _prompt_drop_reason(task, False, None) is None
    assert all(_prompt_drop_reason(ParsedTask(t.instruction, t.input), False, on) is None
               for t in train)
