"""Built-in evaluation: IFEval-style verifiable instructions and a pairwise judge.

``evaluate_model`` is what the self-alignment loop calls; ``python -m engine.eval`` is the
command line. Nothing here imports the generation engine until a model is actually run.
"""

from engine.eval.evaluate import evaluate_model, generate_answers
from engine.eval.ifeval import (IFEvalPrompt, PromptResult, ifeval_metrics, read_ifeval_data,
                                read_responses, score_ifeval)
from engine.eval.instructions import INSTRUCTIONS, check_instruction
from engine.eval.judge import (GenerationJudge, LogprobJudge, PairwiseJudge, PairwiseResult,
                               compare_answers, read_judge_prompts, win_rate_with_se)

__all__ = ["evaluate_model", "generate_answers", "IFEvalPrompt", "PromptResult",
           "ifeval_metrics", "read_ifeval_data", "read_responses", "score_ifeval",
           "INSTRUCTIONS", "check_instruction", "GenerationJudge", "LogprobJudge",
           "PairwiseJudge", "PairwiseResult", "compare_answers", "read_judge_prompts",
           "win_rate_with_se"]
