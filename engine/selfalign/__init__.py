"""The I-SHEEP self-alignment algorithm and its loop.

Text-side rooms, each importable on its own (no model needed):

  seeds               seed tasks in, `SeedTask` out (`load_default_seeds`)
  synthesis           the meta-prompt, parsing the model's numbered tasks, prompt filters
  rouge               ROUGE-L F1 and the `NoveltyFilter`
  response_filters    rule filters on the model's answers
  pair_filters        the release's step_2_1 rules on answered pairs
  assessment_prompts  the two self-assessment prompts, score-first or explain-first
  scores              judge text -> score, log-probs -> expected score
  selection           thresholds, which data trains, which model it starts from
  records             JSONL records for the run directory (append, torn lines)
  settings            every setting of a run, and the `reference` profile

The loop:

  extension           the extension point: measures and filters plug in; the loop imports none
  judging             scoring pairs (sampled, log-prob, oracle) for the stage and for measures
  stages              prompts -> responses -> assessed -> train data -> model, resumable
  measures            IFEval, harness tasks and extensions' measures of each model
  run_directory       where everything lands; run_record: config lock and environment.json
  loop                the pipeline, control arms; report: report.md and plots
"""
