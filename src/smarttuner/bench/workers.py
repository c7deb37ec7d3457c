"""Benchmark workers, one measurement per process: `python -m smarttuner.bench.workers KIND
SETTINGS_JSON`. Each prints one JSON line with its timings and its own peak RSS."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from typing import Any

import torch

from smarttuner.bench.settings import BenchSettings
from smarttuner.memory import peak_rss_mb


def _prompts(s: BenchSettings, tokenizer) -> tuple[list, list[list[int]]]:
    from smarttuner.prompts import encode_prompts
    from smarttuner.tasks import get_task

    task = get_task(s.task)
    examples = task.examples(42, s.prompts)
    ids = encode_prompts(
        tokenizer, [e.question for e in examples], task.system_prompt, s.max_new_tokens, None
    )
    return examples, ids


def rollout(s: BenchSettings) -> dict[str, Any]:
    """Decode throughput of the fast engine and of transformers `generate`, batch P × G."""
    from smarttuner.config import ModelConfig
    from smarttuner.models import load_model
    from smarttuner.rollout import SamplingParams, get_engine

    model, tokenizer = load_model(ModelConfig(name=s.model), trainable=False)
    model.eval()
    ours = model.config._attn_implementation  # "sdpa_gqa" on CPUs; `generate` gets stock "sdpa"
    attention = {"fast": ours, "hf": "sdpa"}
    _, prompts = _prompts(s, tokenizer)
    params = SamplingParams(s.max_new_tokens, s.temperature, s.top_p)  # no stop: pure decode
    out: dict[str, Any] = {"attention": attention}
    greedy = SamplingParams(32, 0.0)
    for suffix, dtype in (("", torch.float32), ("-bf16", torch.bfloat16)):  # weights in dtype
        model.to(dtype)
        runs: dict[str, list[float]] = {"fast": [], "hf": []}
        last = {}
        for _ in range(s.rollout_repeats):  # engines alternate, so drift hits both alike
            for engine in runs:
                model.set_attn_implementation(attention[engine])
                gen = torch.Generator().manual_seed(s.seed)  # same seed: same tokens each repeat
                t0 = time.perf_counter()
                last[engine] = get_engine(engine)(
                    model, tokenizer, prompts, s.num_generations, params, gen
                )
                runs[engine].append(time.perf_counter() - t0)
        for engine, times in runs.items():
            tokens, seconds = int(last[engine].lengths.sum()), sum(times) / len(times)
            out[engine + suffix] = {
                "seconds": seconds,  # mean over the repeats
                "runs_seconds": times,
                "tokens": tokens,
                "tokens_per_second": tokens / seconds,
                "decode_steps": int(last[engine].lengths.max()),
            }
        # Same weights and attention: the engines' decoding must agree token for token. Against
        # `generate` on stock "sdpa" too, for information: in bf16 "sdpa_gqa"'s multi-token
        # forwards round differently (see attention.py), so a greedy tie may break otherwise.
        model.set_attn_implementation(attention["fast"])
        a = get_engine("fast")(model, tokenizer, prompts, 1, greedy)
        b = get_engine("hf")(model, tokenizer, prompts, 1, greedy)
        model.set_attn_implementation(attention["hf"])
        c = get_engine("hf")(model, tokenizer, prompts, 1, greedy)
        out["greedy_identical" + suffix] = bool(torch.equal(a.completion_ids, b.completion_ids))
        out["greedy_identical_stock_sdpa" + suffix] = bool(
            torch.equal(a.completion_ids, c.completion_ids)
        )
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def smarttuner_step(s: BenchSettings, autocast: str = "none") -> dict[str, Any]:
    """`s.steps` GRPO iterations of SmartTuner's trainer, with its own time breakdown."""
    from smarttuner.config import GRPOConfig, build_config
    from smarttuner.grpo.trainer import setup_run

    per_iter = s.prompts * s.num_generations
    with tempfile.TemporaryDirectory() as out:
        cfg = build_config(
            GRPOConfig,
            None,
            {
                "model.name": s.model,
                "model.autocast": autocast,
                "task.name": s.task,
                "lora.r": s.lora_r,
                "lora.alpha": 2 * s.lora_r,
                "output_dir": out,
                "overwrite": True,
                "seed": s.seed,
                "generation.max_new_tokens": s.max_new_tokens,
                "generation.temperature": s.temperature,
                "generation.top_p": s.top_p,
                "grpo.num_generations": s.num_generations,
                "grpo.exploration_batchsize": s.prompts,
                "grpo.beta": s.beta,
                "grpo.buffer_size": per_iter,
                "optim.batch_size": s.batch_size,
                "optim.learning_rate": s.learning_rate,
                "optim.gradient_accumulation_steps": per_iter // s.batch_size,
                "eval.baseline": False,
                "log_completions_every": 0,
                **(
                    {
                        "generation.min_new_tokens": s.max_new_tokens,
                        "generation.stop_at_answer": False,
                    }
                    if s.equal_length
                    else {}
                ),
            },
        )
        run = setup_run(cfg)
        start = time.perf_counter()
        steps = []
        for i in range(1, s.steps + 1):
            r = run.iteration(i, start)
            steps.append(
                {
                    k: r[k]
                    for k in (
                        "step_seconds",
                        "time/generate",
                        "time/rewards",
                        "time/logprobs",
                        "time/train",
                        "completion_length",
                        "tokens_per_second",
                    )
                }
            )
    return {"steps": steps, "peak_rss_mb": peak_rss_mb()}


def trl_step(s: BenchSettings) -> dict[str, Any]:
    """`s.steps` optimizer steps of TRL's GRPOTrainer on the same configuration."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from smarttuner.config import DEFAULT_LORA_TARGETS, ModelConfig
    from smarttuner.formatting import format_ok
    from smarttuner.models import load_model
    from smarttuner.tasks import get_task

    task = get_task(s.task)
    examples = task.examples(42, s.prompts * s.steps)
    model, tokenizer = load_model(ModelConfig(name=s.model), trainable=False)
    rows = [
        {
            "prompt": [
                {"role": "system", "content": task.system_prompt},
                {"role": "user", "content": e.question},
            ],
            "idx": i,
        }
        for i, e in enumerate(examples)
    ]

    def reward(prompts, completions, idx, **_):  # SmartTuner's default: 0.85 task + 0.15 format
        texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
        return [
            0.85 * task.score(t, examples[i]) + 0.15 * format_ok(t)
            for t, i in zip(texts, idx, strict=True)
        ]

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.t0 = 0.0

        def on_step_begin(self, *a, **k):
            self.t0 = time.perf_counter()

        def on_step_end(self, *a, **k):
            self.times.append(time.perf_counter() - self.t0)

    timer = Timer()
    per_iter = s.prompts * s.num_generations
    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out,
            use_cpu=True,
            bf16=False,
            report_to=[],
            save_strategy="no",
            per_device_train_batch_size=s.batch_size,
            gradient_accumulation_steps=per_iter // s.batch_size,
            num_generations=s.num_generations,
            max_completion_length=s.max_new_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            beta=s.beta,
            loss_type="grpo",
            learning_rate=s.learning_rate,
            max_steps=s.steps,
            logging_steps=1,
            seed=s.seed,
            shuffle_dataset=False,
            dataloader_num_workers=0,
            generation_kwargs={"min_new_tokens": s.max_new_tokens} if s.equal_length else None,
        )
        trainer = GRPOTrainer(
            model=model,
            processing_class=tokenizer,
            reward_funcs=[reward],
            args=args,
            train_dataset=Dataset.from_list(rows),
            callbacks=[timer],
            peft_config=LoraConfig(
                r=s.lora_r,
                lora_alpha=2 * s.lora_r,
                lora_dropout=0.0,
                target_modules=DEFAULT_LORA_TARGETS,
                task_type="CAUSAL_LM",
            ),
        )
        trainer.train()
        lengths = [h.get("completions/mean_length") for h in trainer.state.log_history]
    return {
        "steps": [{"step_seconds": t} for t in timer.times],
        "completion_length": [x for x in lengths if x is not None],
        "peak_rss_mb": peak_rss_mb(),
    }


WORKERS = {
    "rollout": rollout,
    "smarttuner": smarttuner_step,
    "smarttuner-bf16": lambda s: smarttuner_step(s, "bfloat16"),
    "trl": trl_step,
}


def main() -> None:
    kind, raw = sys.argv[1], sys.argv[2]
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    result = WORKERS[kind](BenchSettings(**json.loads(raw)))
    from smarttuner import malloc

    result["keep_freed_memory"] = malloc.applied()
    print("BENCH-RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
