"""`smarttuner eval`: score one model, or two side by side, on a task's held-out eval seed.

Greedy decoding gives accuracy, format compliance and mean length (`task_eval.evaluate_task`,
the same function the trainers use); with `num_samples > 0` it also samples n completions per
prompt for pass@k (`passk.evaluate_pass_at_k`). `--use-base-model` evaluates the base model
under an adapter directory. Two models give a before/after table: the results JSON then has
the `baseline` / `final` blocks of a training run's results.json, so `smarttuner plot
--compare` and `smarttuner report` read it too.
"""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from smarttuner.config import Autocast, ModelConfig, autocast_for_device
from smarttuner.evaluate.paired import greedy_record, paired_sampled
from smarttuner.evaluate.passk import check_ks, evaluate_pass_at_k
from smarttuner.evaluate.task_eval import evaluate_task
from smarttuner.models import is_adapter_dir, load_model, resolve_model_path
from smarttuner.outputs import write_json
from smarttuner.rollout.policy_copy import copy_dtype_for, sampling_view
from smarttuner.tasks import get_task

log = logging.getLogger(__name__)

AUTOCAST_CHOICES = get_args(Autocast)


@dataclass(frozen=True)
class EvalOptions:
    """How a model is evaluated (validated when built)."""

    eval_seed: int = 123  # seed of the held-out prompts (the trainers' task.eval_seed)
    num_examples: int = 100  # held-out prompts scored
    max_new_tokens: int = 300  # longest completion
    batch_size: int = 32  # completions decoded together
    num_samples: int = 0  # n samples per prompt for pass@k; 0 = greedy only
    pass_k: tuple[int, ...] = (1,)  # the k of pass@k, each in 1..num_samples
    temperature: float = 0.7  # sampling temperature for pass@k
    top_p: float = 0.95  # nucleus mass for pass@k
    engine: str = "auto"  # rollout engine
    seed: int = 0  # sampling seed for pass@k
    keep_samples: int = 10  # greedy completions kept in the results JSON
    device: str = "auto"
    # "bfloat16"/"float16": decode from a merged copy in that dtype under autocast, as a
    # pipeline's evals do with model.autocast set (same numbers); "none": float32; "auto":
    # bfloat16 on a CPU with native bf16, else none (as model.autocast: auto)
    autocast: str = "none"
    task_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("num_examples", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"eval {name} must be >= 1, got {getattr(self, name)}")
        if self.autocast not in AUTOCAST_CHOICES:
            raise ValueError(
                f"eval autocast must be one of {', '.join(AUTOCAST_CHOICES)}, got {self.autocast!r}"
            )
        object.__setattr__(self, "autocast", autocast_for_device(self.autocast, self.device))
        if self.keep_samples < 0:
            raise ValueError(f"eval keep_samples must be >= 0, got {self.keep_samples}")
        if self.num_samples < 0:
            raise ValueError(f"eval num_samples must be >= 0, got {self.num_samples}")
        if self.num_samples:
            check_ks(list(self.pass_k), self.num_samples)
            if self.temperature <= 0:
                raise ValueError(f"pass@k needs temperature > 0, got {self.temperature}")


def base_model_spec(model: str) -> str:
    """The base model an adapter directory was trained from (its adapter_config.json)."""
    path = resolve_model_path(model)
    if not is_adapter_dir(path):
        raise ValueError(
            f"--use-base-model needs a PEFT adapter directory, but {model!r} holds a full model "
            "(no adapter_config.json)"
        )
    from peft import PeftConfig

    return PeftConfig.from_pretrained(path).base_model_name_or_path


def evaluate_model_on_task(
    model: str, task: str, options: EvalOptions, use_base_model: bool = False
) -> dict[str, Any]:
    """Greedy metrics (+ pass@k when `options.num_samples`) of one model spec on `task`."""
    the_task = get_task(task, **options.task_params)
    spec = base_model_spec(model) if use_base_model else model
    examples = the_task.examples(options.eval_seed, options.num_examples)
    net, tokenizer = load_model(ModelConfig(name=spec, device=options.device), trainable=False)
    copy_dtype = copy_dtype_for("auto", options.autocast, options.engine)
    with sampling_view(net, options.autocast, copy_dtype) as sampler:
        greedy = evaluate_task(
            sampler,
            tokenizer,
            the_task,
            examples,
            options.max_new_tokens,
            options.batch_size,
            engine=options.engine,
            keep_samples=options.keep_samples,
        )
        metrics: dict[str, Any] = greedy.metrics()
        sample_counts: list[int] | None = None
        if options.num_samples:
            sampled = evaluate_pass_at_k(
                sampler,
                tokenizer,
                the_task,
                examples,
                options.num_samples,
                list(options.pass_k),
                options.max_new_tokens,
                temperature=options.temperature,
                top_p=options.top_p,
                batch_size=options.batch_size,
                engine=options.engine,
                seed=options.seed,
            )
            metrics.update(sampled.metrics())
            sample_counts = sampled.correct_counts
    del net
    gc.collect()
    return {
        "model": model,
        "evaluated": spec,
        "metrics": metrics,
        "samples": greedy.samples,
        "correct": greedy.correct,
        "sample_correct_counts": sample_counts,
    }


def paired_results(
    before: dict[str, Any], after: dict[str, Any], num_samples: int
) -> dict[str, Any]:
    """Prompt-by-prompt comparison of two `evaluate_model_on_task` results on the same prompts,
    with the per-prompt data it was computed from."""
    paired: dict[str, Any] = {"greedy": greedy_record(before["correct"], after["correct"])}
    if num_samples:
        counts = before["sample_correct_counts"], after["sample_correct_counts"]
        paired["sampled"] = {
            **paired_sampled(*counts, num_samples),
            "correct_counts": {"baseline": counts[0], "final": counts[1]},
        }
    return paired


def run_evaluation(
    model: str,
    task: str,
    options: EvalOptions | None = None,
    compare_to: str | None = None,
    use_base_model: bool = False,
    output: Path | None = None,
    compare_base: bool = False,
) -> dict[str, Any]:
    """Evaluate `model` (its base with `use_base_model`) on `task`; with `compare_to`, also that
    model, as the "before" column (`compare_base`: the base under the adapter `model`).
    Returns (and writes to `output`) a results dict:

    - one model: `{model, task, eval_seed, final: metrics, samples}`;
    - two models: `{model, task, eval_seed, baseline, final, labels, samples, paired}` where
      baseline = `compare_to`, final = `model`, and `paired` compares them prompt by prompt
      (greedy gained / lost; with samples, prompts with more / fewer right samples; each with
      an exact sign test, `paired.py`).
    """
    options = options or EvalOptions()
    get_task(task, **options.task_params)  # an unknown task fails before any model loads
    if compare_base and compare_to is not None:
        raise ValueError("give either --compare-to MODEL or --compare-base, not both")
    if compare_base:
        compare_to = base_model_spec(model)
    elif use_base_model:
        base_model_spec(model)  # not an adapter: fail before loading anything
    after = evaluate_model_on_task(model, task, options, use_base_model)
    label = f"{model} (base)" if use_base_model else model
    results: dict[str, Any] = {
        "model": label,
        "task": task,
        "eval_seed": options.eval_seed,
        "autocast": options.autocast,
        "final": after["metrics"],
        "samples": {"final": after["samples"]},
    }
    if compare_to is not None:
        before = evaluate_model_on_task(compare_to, task, options)
        results["baseline"] = before["metrics"]
        results["samples"]["baseline"] = before["samples"]
        results["labels"] = {"baseline": compare_to, "final": label}
        results["paired"] = paired_results(before, after, options.num_samples)
    if output is not None:
        write_json(Path(output), results)
        log.info("wrote %s", output)
    return results
