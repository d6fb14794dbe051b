"""A toy world with a generator-verifier gap, where the I-SHEEP loop can visibly improve a
small model: checking an answer is a forward lookup the model knows for every input, while
producing one is an inverse lookup it knows for only a third of the targets.

  families        the two inverse-lookup families (factor pairs, word codes), their checker
  tasks           WorldTask, parse_task, check, and the split of targets into taught /
                  practised / kept_out
  tokenizer       one token per number and per world word
  corpus          pretraining documents in the loop's own formats
  seeds           the loop's seed tasks in this world
  base_model      the world model config and a random model directory
  measure         accuracy with stderr, judge precision / recall (plain functions)
  model_measures  the same through a model: held-out accuracy, pass@k, the judge, synthesis
  extension       the loop extension (run.extensions = ["engine.world.extension"])
  report          the extension's summary lines, plot and tables

The design, why it needs a gap, and what was measured: docs/world/README.md.
"""
