"""The I-SHEEP self-alignment algorithm.

Pure-Python rooms, each importable on its own (no model needed):

  seeds               seed tasks in, `SeedTask` out (`load_default_seeds`)
  synthesis           the meta-prompt, parsing the model's numbered tasks, prompt filters
  rouge               ROUGE-L F1 and the global `NoveltyFilter`
  response_filters    rule filters on the model's answers
  assessment_prompts  the two self-assessment prompts (quality, instruction following)
  scores              judge text -> score, log-probs -> expected score
  selection           thresholds, which data trains, which model it starts from
  records             JSONL records for the run directory (append, torn lines, atomic writes)
"""
