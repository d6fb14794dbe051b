"""A toy world where self-improvement can be measured: tasks whose answers a program checks.

  families     the task families (arithmetic, word puzzles, case, max, ending word)
  tasks        WorldTask, sample_task, check (judges any instruction in a world phrasing),
               the held-out split and held_out_tasks
  corpus       the pretraining corpus in the loop's exact text formats (write_corpus)
  seeds        seed tasks for the loop in this world (write_seed_file)
  base_model   the world tokenizer and a random small model directory (write_world_base_dir)
  measure      held-out accuracy, judge accuracy, correctness of kept pairs

    python -m engine.world base OUT_DIR [--size small] [--seed 0]
    python -m engine.world corpus OUT.jsonl --docs 200000 [--tokenizer OUT_DIR]
    python -m engine.world seeds OUT.jsonl [--n 36]
    python -m engine.world heldout OUT.jsonl [--per-family 50]
"""
