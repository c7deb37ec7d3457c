"""The benchmark configuration (issue 6's: SmolLM2-135M-Instruct, LoRA r 32 on all linear
layers, syllogism, 8 prompts × G 6, 128 new tokens, beta 0.04)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class BenchSettings:
    model: str = "smollm2-135m-instruct"
    task: str = "syllogism"
    prompts: int = 8
    num_generations: int = 6
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 0.95
    beta: float = 0.04
    batch_size: int = 16
    learning_rate: float = 1e-6
    steps: int = 2
    lora_r: int = 32
    seed: int = 0
    rollout_repeats: int = 2  # each engine's decode timed this many times, alternating
    # Equal work: EOS held back and no stop at </answer>, so every completion of both systems
    # is max_new_tokens long and the step ratio is not confounded by sampled lengths.
    equal_length: bool = False

    def to_dict(self) -> dict:
        return asdict(self)
