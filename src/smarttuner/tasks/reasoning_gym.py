"""Any reasoning-gym dataset as a SmartTuner task.

`ReasoningGymTask(name, **params)` wraps `reasoning_gym.create_dataset(name, seed=…, size=…,
**params)` and grades with the dataset's own `score_answer`. Two departures from calling
reasoning-gym directly, both so that obviously correct answers in natural forms score 1:

* The extracted answer is normalised towards the gold answer's spelling before scoring:
  surrounding whitespace, `$…$`, `\\boxed{…}` and `**bold**` are stripped, and a trailing period
  unless the gold ends with one; `yes`/`YES` become `Yes` when the gold is `Yes` (likewise
  `No`, `True`, `False`) because the default scorer (syllogism, basic_arithmetic) compares
  strings exactly; a number equal in value to a plain numeric gold (`1,000`, `14.0`, `= 14`)
  becomes the gold's spelling, which the default scorer needs and gsm_symbolic's regex needs
  for thousands separators. propositional_logic answers written with ASCII or word operators
  (`->`, `&`, `|`, `~`, `and`, `not`) are rewritten with the dataset's symbols (→ ∧ ∨ ¬).
* An answer that equals a plain numeric gold is given full marks without asking the dataset,
  because gsm_symbolic's scorer reads `-1` as `1` and so never credits a negative answer.

* Seeds are spread out before they reach reasoning-gym (`spread_seed`): its datasets build
  item i from `Random(seed + i)`, so seeds 42 and 123 would share items (item 81 of seed 42 is
  item 0 of seed 123) and a training pool of a few hundred prompts would contain the eval set.

Datasets without a single gold answer (propositional_logic, rubiks_cube, …) store
`metadata["example_answer"]` as `Example.answer` when they have one, else ``; their scorer
checks the answer itself. reasoning-gym is imported on first use, not when this module loads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import fields
from functools import cached_property
from typing import Any

from smarttuner import formatting
from smarttuner.formatting import SYSTEM_PROMPT
from smarttuner.tasks.base import Example, register_task
from smarttuner.tasks.numbers import is_canonical_number, parse_decimal, unwrap_math

logger = logging.getLogger(__name__)

FULL_MARKS = 1.0 - 1e-9
_BOOLEAN_WORDS = frozenset({"yes", "no", "true", "false"})
_RESERVED_PARAMS = frozenset({"seed", "size"})
_SEED_STRIDE = 1_000_003  # prime; pools up to a million items per seed never overlap


def spread_seed(seed: int) -> int:
    """Map a user seed to reasoning-gym's seed so that different seeds' item ranges
    (`seed + i`) are a million apart instead of overlapping."""
    return (seed * _SEED_STRIDE) % (2**31 - 1)


# Longest spellings first so that `<->` is not read as `<` followed by `->`.
_LOGIC_SYMBOLS: tuple[tuple[str, str], ...] = (
    (r"<->|<=>|\\leftrightarrow|\\iff|\biff\b", "↔"),
    (r"->|=>|\\rightarrow|\\implies|\\to\b|\bimplies\b", "→"),
    (r"&&|&|/\\|\\land|\\wedge|\band\b", "∧"),
    (r"\|\||\||\\/|\\lor|\\vee|\bor\b", "∨"),
    (r"~|!|\\neg|\\lnot|\bnot\b", "¬"),
)


def dataset_names() -> list[str]:
    """Every dataset name reasoning-gym knows, sorted."""
    from reasoning_gym.factory import DATASETS

    return sorted(DATASETS)


class ReasoningGymTask:
    """The reasoning-gym dataset `name` as a Task; `params` configure the dataset."""

    system_prompt: str = SYSTEM_PROMPT

    def __init__(self, name: str, **params: Any) -> None:
        self.name = name
        self.params = dict(params)
        self._check_params()

    def __repr__(self) -> str:
        return f"ReasoningGymTask({self.name!r}, **{self.params!r})"

    def examples(self, seed: int, n: int) -> list[Example]:
        """`n` entries of the dataset built with `seed`, as Examples."""
        if n < 0:
            raise ValueError(f"n must be at least 0, got {n}.")
        if n == 0:
            return []
        import reasoning_gym

        dataset = reasoning_gym.create_dataset(
            self.name, size=n, seed=spread_seed(seed), **self.params
        )
        return [_to_example(dataset[i]) for i in range(n)]

    def score(self, completion: str, example: Example) -> float:
        """The dataset's own score of the normalised answer; 0 without an answer block."""
        answer = formatting.extract_answer(completion)
        if answer is None:
            return 0.0
        answer = normalise_answer(answer, example.answer, self.name)
        if is_canonical_number(example.answer) and answer == example.answer:
            return 1.0
        entry = {
            "question": example.question,
            "answer": example.answer or None,
            "metadata": example.metadata,
        }
        return self._dataset_score(answer, entry)

    def is_correct(self, completion: str, example: Example) -> bool:
        """True when the completion earns the dataset's full marks."""
        return self.score(completion, example) >= FULL_MARKS

    @cached_property
    def _scorer(self) -> Callable[[str, dict[str, Any]], float]:
        import reasoning_gym

        return reasoning_gym.create_dataset(self.name, size=1, seed=0, **self.params).score_answer

    def _dataset_score(self, answer: str, entry: dict[str, Any]) -> float:
        scorer = self._scorer
        try:
            value = float(scorer(answer, entry))
        except Exception:  # reasoning-gym scorers may raise on garbage answers
            logger.debug("reasoning-gym %s scorer raised on %r", self.name, answer, exc_info=True)
            return 0.0
        return min(max(value, 0.0), 1.0)

    def _check_params(self) -> None:
        from reasoning_gym.factory import DATASETS

        if self.name not in DATASETS:
            raise ValueError(f"reasoning-gym has no dataset named {self.name!r}.")
        allowed = {f.name for f in fields(DATASETS[self.name][1])} - _RESERVED_PARAMS
        unknown = sorted(set(self.params) - allowed)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for reasoning-gym dataset {self.name!r}; "
                f"allowed: {sorted(allowed)} (seed and size are set by the task)."
            )


def normalise_answer(answer: str, gold: str, dataset: str = "") -> str:
    """Rewrite `answer` towards the spelling of `gold` where they clearly mean the same thing."""
    text = _strip_decoration(answer, gold)
    if gold.casefold() in _BOOLEAN_WORDS and text.casefold() == gold.casefold():
        return gold
    if is_canonical_number(gold):
        value = parse_decimal(text)
        if value is not None and value == parse_decimal(gold):
            return gold
    rewrite = _DATASET_REWRITES.get(dataset)
    return rewrite(text) if rewrite else text


def _strip_decoration(answer: str, gold: str) -> str:
    """Strip wrappers the gold does not itself use: `$`, `\\boxed{}`, `**`, a trailing period."""
    text = answer.strip()
    if "$" not in gold and "\\boxed" not in gold:
        text = unwrap_math(text)
    if "*" not in gold and len(text) > 4 and text.startswith("**") and text.endswith("**"):
        text = text[2:-2].strip()
    if not gold.endswith("."):
        text = text.rstrip(".").rstrip()
    return text


def _logic_symbols(text: str) -> str:
    """Write ASCII, LaTeX and word connectives with propositional_logic's symbols."""
    for pattern, symbol in _LOGIC_SYMBOLS:
        text = re.sub(pattern, symbol, text, flags=re.IGNORECASE)
    return text


_DATASET_REWRITES: dict[str, Callable[[str], str]] = {"propositional_logic": _logic_symbols}


def _to_example(entry: dict[str, Any]) -> Example:
    metadata = _jsonable(entry.get("metadata") or {})
    answer = entry["answer"]
    if answer is None:
        answer = metadata.get("example_answer") or ""
    return Example(question=str(entry["question"]), answer=str(answer), metadata=metadata)


def _jsonable(value: Any) -> Any:
    """`value` with anything `json.dumps` rejects made into lists or strings; tuples are kept
    because some scorers (arc_agi, rearc) compare against tuples in the metadata."""
    if isinstance(value, dict):
        return {_jsonable_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_jsonable(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return sorted((_jsonable(v) for v in value), key=repr)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _jsonable_key(key: Any) -> Any:
    return key if key is None or isinstance(key, (str, int, float, bool)) else str(key)


@register_task("syllogism")
def syllogism(**params: Any) -> ReasoningGymTask:
    """Syllogisms: does the conclusion follow from two premises? Gold `Yes`/`No`."""
    return ReasoningGymTask("syllogism", **params)


@register_task("propositional_logic")
def propositional_logic(**params: Any) -> ReasoningGymTask:
    """Propositional logic: state a valid conclusion; graded by truth table."""
    return ReasoningGymTask("propositional_logic", **params)


@register_task("basic_arithmetic")
def basic_arithmetic(**params: Any) -> ReasoningGymTask:
    """Integer expressions with + - * / (floor division) and parentheses."""
    return ReasoningGymTask("basic_arithmetic", **params)


@register_task("chain_sum")
def chain_sum(**params: Any) -> ReasoningGymTask:
    """Chains of additions and subtractions."""
    return ReasoningGymTask("chain_sum", **params)


@register_task("gsm_symbolic")
def gsm_symbolic(**params: Any) -> ReasoningGymTask:
    """GSM8K-style word problems with templated numbers; integer answers."""
    return ReasoningGymTask("gsm_symbolic", **params)
