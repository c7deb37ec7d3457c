"""Using a model outside training: answer questions, or score it on a task's eval seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from smarttuner.config import ModelConfig
from smarttuner.formatting import ANSWER_CLOSE, SYSTEM_PROMPT
from smarttuner.models import load_model
from smarttuner.prompts import context_length, encode_prompts
from smarttuner.rollout import SamplingParams, get_engine
from smarttuner.tasks import get_task


def generate_answers(
    model: str,
    questions: list[str],
    max_new_tokens: int = 300,
    temperature: float = 0.0,
    top_p: float = 1.0,
    num_samples: int = 1,
    system_prompt: str | None = None,
    device: str = "auto",
) -> list[list[str]]:
    """`num_samples` completions per question from a model spec or trained directory."""
    net, tokenizer = load_model(ModelConfig(name=model, device=device), trainable=False)
    net.eval()
    prompts = encode_prompts(
        tokenizer, questions, system_prompt or SYSTEM_PROMPT, max_new_tokens, context_length(net)
    )
    params = SamplingParams(max_new_tokens, temperature, top_p, (ANSWER_CLOSE,))
    batch = get_engine("auto")(net, tokenizer, prompts, num_samples, params)
    return [batch.texts[i * num_samples : (i + 1) * num_samples] for i in range(len(questions))]


def evaluate_model(
    model: str,
    task: str,
    eval_seed: int = 123,
    num_examples: int = 100,
    max_new_tokens: int = 300,
    batch_size: int = 32,
    output: Path | None = None,
    device: str = "auto",
    task_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Greedy accuracy / format compliance of `model` on `task`'s eval seed, as a flat dict.

    The full harness (pass@k, base model, two models side by side) is
    `smarttuner.evaluate.harness.run_evaluation`; `output` gets its results JSON."""
    from smarttuner.evaluate.harness import EvalOptions, run_evaluation

    options = EvalOptions(
        eval_seed=eval_seed,
        num_examples=num_examples,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device=device,
        task_params=task_params or {},
    )
    results = run_evaluation(model, task, options, output=output)
    return {"model": model, "task": task, "eval_seed": eval_seed, **results["final"]}


def probe_warmup(
    model: str,
    task: str,
    num_prompts: int = 8,
    k: int = 4,
    max_new_tokens: int = 200,
    temperature: float = 0.7,
    dataset_seed: int = 42,
    device: str = "auto",
    min_format_rate: float = 0.5,
    min_signal: float = 0.25,
) -> tuple[dict[str, Any], str]:
    """The warm-up probe on a model spec: its numbers and the SFT recommendation."""
    from smarttuner.evaluate.probe import needs_warmup, probe_model

    the_task = get_task(task)
    net, tokenizer = load_model(ModelConfig(name=model, device=device), trainable=False)
    result = probe_model(
        net,
        tokenizer,
        the_task,
        the_task.examples(dataset_seed, num_prompts),
        k=k,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
    )
    _, reason = needs_warmup(result, min_format_rate, min_signal)
    return result.to_dict(), reason
