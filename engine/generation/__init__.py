"""Generation: LLM (batched, paged, prefix-cached generation and scoring) and SamplingParams."""
from engine.generation.llm import LLM, EngineConfig
from engine.generation.outputs import CompletionOutput, GenerationStats, RequestOutput, ScoreOutput
from engine.generation.sampling_params import SamplingParams

__all__ = ["LLM", "EngineConfig", "SamplingParams", "RequestOutput", "CompletionOutput",
           "ScoreOutput", "GenerationStats"]
