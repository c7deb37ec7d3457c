"""Preference pairs `(prompt, chosen, rejected)`: from a JSONL file, a Hugging Face dataset
(`Intel/orca_dpo_pairs` by default, its `system`/`question`/`chosen`/`rejected` columns
mapped), or made offline from any task.

Task-made pairs: for each example the chosen completion is the gold answer in the task's
output format after a short fixed working, the rejected one the same working with a wrong
answer — a perturbed number (gold ± 1…10, or scaled for decimals), the flipped word for
Yes/No and True/False golds, else another example's answer. Both are checked with the task's
own grader (chosen must be correct, rejected must not) and pairs that fail are dropped, so a
reward model trained on them learns what the verifier rewards.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smarttuner.reward_model.config import DEFAULT_REASONING, PairDataSettings
from smarttuner.tasks.base import Example, Task
from smarttuner.tasks.numbers import parse_decimal

_FLIPS = {"yes": "no", "no": "yes", "true": "false", "false": "true"}


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str


def load_pairs(settings: PairDataSettings) -> list[PreferencePair]:
    """The configured pairs, at most `num_pairs` of them."""
    if settings.source == "jsonl":
        assert settings.path is not None  # checked by the config
        pairs = read_jsonl_pairs(settings.path)
    elif settings.source == "hub":
        pairs = load_hub_pairs(settings)
    else:
        from smarttuner.tasks import get_task

        task = get_task(settings.task, **settings.task_params)
        pairs = task_pairs(task, settings.task_seed, settings.num_pairs, settings.reasoning)
    pairs = pairs[: settings.num_pairs]
    if len(pairs) < 2:
        raise ValueError(
            f"reward-model training needs at least 2 preference pairs, got {len(pairs)} "
            f"from source {settings.source!r}"
        )
    return pairs


def read_jsonl_pairs(path: Path) -> list[PreferencePair]:
    """Rows `{"prompt": …, "chosen": …, "rejected": …}`; a bad row is an error naming its line."""
    if not path.is_file():
        raise FileNotFoundError(f"preference-pair file not found: {path}")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} line {number} is not valid JSON: {err.msg}") from None
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("prompt", "chosen", "rejected")
        ):
            raise ValueError(
                f"{path} line {number} needs string fields 'prompt', 'chosen' and 'rejected'"
            )
        pairs.append(PreferencePair(row["prompt"], row["chosen"], row["rejected"]))
    return pairs


def load_hub_pairs(settings: PairDataSettings) -> list[PreferencePair]:
    """A Hugging Face dataset's rows mapped to pairs (needs `datasets` and the hub)."""
    try:
        import datasets
    except ImportError:
        raise ValueError(
            f"loading {settings.hub_dataset} needs the datasets library: "
            "pip install 'smarttuner[data]'"
        ) from None
    rows = datasets.load_dataset(settings.hub_dataset, split=settings.hub_split)
    missing = {
        settings.prompt_column,
        settings.chosen_column,
        settings.rejected_column,
    } - set(rows.column_names)
    if missing:
        raise ValueError(
            f"{settings.hub_dataset} has no column(s) {sorted(missing)}; "
            f"its columns are {rows.column_names}"
        )
    return [
        map_hub_row(row, settings) for row in rows.select(range(min(len(rows), settings.num_pairs)))
    ]


def map_hub_row(row: dict[str, Any], settings: PairDataSettings) -> PreferencePair:
    """One dataset row -> a pair; a non-empty system column is put before the prompt."""
    prompt = str(row[settings.prompt_column])
    system = row.get(settings.system_column) if settings.system_column else None
    if system:
        prompt = f"{str(system).strip()}\n\n{prompt}"
    return PreferencePair(
        prompt, str(row[settings.chosen_column]), str(row[settings.rejected_column])
    )


def task_pairs(
    task: Task, seed: int, n: int, reasoning: str = DEFAULT_REASONING
) -> list[PreferencePair]:
    """Up to `n` verified (correct, wrong) pairs from the task's examples drawn with `seed`."""
    examples = task.examples(seed, n)
    rng = random.Random(seed)
    pairs = []
    for example in examples:
        wrong = wrong_answer(example, examples, rng)
        if wrong is None:
            continue
        chosen = write_completion(task, reasoning, example.answer)
        rejected = write_completion(task, reasoning, wrong)
        if task.is_correct(chosen, example) and not task.is_correct(rejected, example):
            pairs.append(PreferencePair(example.question, chosen, rejected))
    return pairs


def write_completion(task: Task, reasoning: str, answer: str) -> str:
    """A completion in the task's output format: its own `format_completion` when it has one
    (gsm8k), else `<think>…</think><answer>…</answer>`."""
    render = getattr(task, "format_completion", None)
    if callable(render):
        return render(reasoning, answer)
    from smarttuner.sft.records import format_target

    return format_target(reasoning, answer)


def wrong_answer(example: Example, pool: list[Example], rng: random.Random) -> str | None:
    """A plausible but wrong answer for `example` (see the module docstring); None if none."""
    gold = example.answer.strip()
    value = parse_decimal(gold)
    if value is not None:
        if value == value.to_integral_value():
            delta = rng.choice([d for d in range(-10, 11) if d])
            return str(int(value) + delta)
        factor = rng.choice(["0.5", "0.75", "1.25", "1.5"])
        return format(value * parse_decimal(factor), "f")
    flipped = _FLIPS.get(gold.casefold())
    if flipped is not None:
        return flipped.capitalize() if gold[:1].isupper() else flipped
    others = [e.answer for e in pool if e.answer.strip() and e.answer.strip() != gold]
    return rng.choice(others) if others else None


def split_pairs(
    pairs: list[PreferencePair], val_fraction: float, seed: int
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, held-out) after a seeded shuffle; each side gets at least one pair."""
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_val = min(max(1, round(len(pairs) * val_fraction)), len(pairs) - 1)
    val = [pairs[i] for i in order[:n_val]]
    train = [pairs[i] for i in order[n_val:]]
    return train, val
