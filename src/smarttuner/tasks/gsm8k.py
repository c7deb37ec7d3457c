"""`gsm8k`: grade-school math word problems in the GSM8K recipe's output format.

The model writes its working between `<start_working_out>` and `<end_working_out>`, then the
final answer between `<SOLUTION>` and `</SOLUTION>` (every tag is configurable through the task
params, and the same `SolutionFormat` is what the math rewards in `smarttuner.rewards.math`
read). Where the problems come from (`source`):

* `file`: a local JSONL or parquet file with `question` and `answer` columns, the answer in
  GSM8K's convention (worked solution, then `#### 72`; a plain `72` works too);
* `hub`: `openai/gsm8k` (config `main`) through the `datasets` library — needs it installed
  (`pip install 'smarttuner[data]'`) and a reachable Hugging Face Hub;
* `gsm_symbolic`: reasoning-gym's GSM8K-style templates, generated offline;
* `auto` (default): `file` when a `path` is given, else `hub` when `datasets` is installed and
  the hub answers, else `gsm_symbolic`.

A file or hub split is a fixed pool: `examples(seed, n)` shuffles it with `seed` and takes the
first `n`, so training and evaluation draws overlap and the trainer drops the overlap from
training; keep `eval.num_examples` well below the pool size. Gold answers are normalised to a
plain number (`1,250` -> `1250`). The score is 1 for a numerically equal (or, with
`math-verify` installed, mathematically equivalent) answer in the last solution block, else 0.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import random
import re
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from smarttuner.tasks.base import Example, register_task
from smarttuner.tasks.numbers import parse_decimal

logger = logging.getLogger(__name__)

HUB_DATASET = "openai/gsm8k"
HUB_CONFIG = "main"
SOURCES = ("auto", "file", "hub", "gsm_symbolic")
VERIFY_TIMEOUT = 5  # seconds math-verify may spend parsing or comparing one answer
MAX_VERIFY_CHARS = 1000  # longer solution blocks are not handed to math-verify
_CALCULATOR = re.compile(r"<<[^<>]*>>")  # GSM8K's calculator annotations: 48/2=24 -> <<48/2=24>>


@dataclass(frozen=True)
class SolutionFormat:
    """The four tags of the recipe's output format and the parsing built on them."""

    reasoning_start: str = "<start_working_out>"
    reasoning_end: str = "<end_working_out>"
    solution_start: str = "<SOLUTION>"
    solution_end: str = "</SOLUTION>"

    def __post_init__(self) -> None:
        tags = self.tags
        if any(not t for t in tags) or len(set(tags)) != len(tags):
            raise ValueError(f"the four format tags must be distinct and non-empty, got {tags}")

    @property
    def tags(self) -> tuple[str, str, str, str]:
        return (self.reasoning_start, self.reasoning_end, self.solution_start, self.solution_end)

    @cached_property
    def _exact(self) -> re.Pattern[str]:
        r0, r1, s0, s1 = (re.escape(t) for t in self.tags)
        return re.compile(rf"^\s*{r0}.+?{r1}.*?{s0}(.+?){s1}\s*$", re.DOTALL)

    @cached_property
    def _solution(self) -> re.Pattern[str]:
        s0, s1 = re.escape(self.solution_start), re.escape(self.solution_end)
        return re.compile(rf"{s0}(.*?){s1}", re.DOTALL)

    def system_prompt(self) -> str:
        return (
            "You are given a problem. Think about the problem and provide your working out. "
            f"Place it between {self.reasoning_start} and {self.reasoning_end}. Then, provide "
            f"your solution between {self.solution_start}{self.solution_end}"
        )

    def is_exact(self, text: str) -> bool:
        """Working then solution, each tag exactly once, nothing but whitespace around them
        (text between the working and the solution is allowed, as in the recipe)."""
        return all(text.count(t) == 1 for t in self.tags) and bool(self._exact.match(text))

    def solutions(self, text: str) -> list[str]:
        """The content of every `<SOLUTION>…</SOLUTION>` block, stripped, in order."""
        return [s.strip() for s in self._solution.findall(text)]

    def render(self, working: str, answer: str) -> str:
        """A completion in this format (used for SFT targets and reward-model pairs)."""
        return (
            f"{self.reasoning_start}{working.strip()}{self.reasoning_end}"
            f"{self.solution_start}{answer.strip()}{self.solution_end}"
        )


def split_gsm8k_answer(answer: str) -> tuple[str, str]:
    """GSM8K's `answer` field -> (worked solution without calculator marks, final answer).

    `"… 48+24 = <<48+24=72>>72 …\\n#### 72"` -> `("… 48+24 = 72 …", "72")`. An answer without
    `####` is taken whole as the final answer. A numeric final answer is written canonically
    (`1,250` -> `1250`, `5.50` -> `5.5`); anything else is kept as written.
    """
    working, sep, final = answer.rpartition("####")
    if not sep:
        working, final = "", answer
    final = final.strip()
    if not final:
        raise ValueError(f"GSM8K answer {answer[:60]!r} has nothing after '####'")
    value = parse_decimal(final)
    if value is not None:
        final = canonical_number(value)
    return _CALCULATOR.sub("", working).strip(), final


def canonical_number(value: Any) -> str:
    """A Decimal as a plain string without exponent or trailing zeros (`5.50` -> `5.5`)."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def read_problems(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL or parquet file; each needs string `question` and `answer` fields."""
    if not path.is_file():
        raise FileNotFoundError(f"gsm8k file not found: {path}")
    if path.suffix == ".parquet":
        rows = _read_parquet(path)
    else:
        rows = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {number} is not valid JSON: {err.msg}") from None
    if not rows:
        raise ValueError(f"{path} holds no problems")
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("question", "answer")
        ):
            found = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(
                f"{path} row {number} needs string 'question' and 'answer' fields, found {found}"
            )
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(
            f"reading {path} needs pyarrow: pip install 'smarttuner[data]' (or use JSONL)"
        ) from None
    return pq.read_table(path).to_pylist()


def load_hub_problems(dataset: str, config: str, split: str) -> list[dict[str, Any]]:
    """Rows of a Hugging Face dataset (needs `datasets` and a reachable hub)."""
    try:
        import datasets
    except ImportError:
        raise ValueError(
            f"loading {dataset} from the Hugging Face Hub needs the datasets library: "
            "pip install 'smarttuner[data]'"
        ) from None
    return list(datasets.load_dataset(dataset, config, split=split))


def problem_to_example(row: dict[str, Any], source: str) -> Example:
    working, final = split_gsm8k_answer(row["answer"])
    return Example(
        question=row["question"].strip(),
        answer=final,
        metadata={"solution": working, "source": source},
    )


@register_task("gsm8k")
class GSM8KTask:
    """GSM8K-style word problems graded on the number in the last `<SOLUTION>` block."""

    name = "gsm8k"

    def __init__(
        self,
        source: Literal["auto", "file", "hub", "gsm_symbolic"] = "auto",
        path: str | None = None,
        hub_dataset: str = HUB_DATASET,
        hub_config: str = HUB_CONFIG,
        split: str = "train",
        use_math_verify: bool = True,
        system_prompt: str | None = None,
        **tags: str,
    ) -> None:
        if source not in SOURCES:
            raise ValueError(f"gsm8k source must be one of {list(SOURCES)}, got {source!r}")
        if source == "file" and not path:
            raise ValueError("gsm8k source 'file' needs params.path (a JSONL or parquet file)")
        unknown = sorted(set(tags) - set(SolutionFormat.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"unknown gsm8k parameter(s) {unknown}; allowed: source, path, hub_dataset, "
                "hub_config, split, use_math_verify, system_prompt, "
                + ", ".join(SolutionFormat.__dataclass_fields__)
            )
        self.format = SolutionFormat(**tags)
        self.source = "file" if source == "auto" and path else source
        self.path = Path(path) if path else None
        self.hub = (hub_dataset, hub_config, split)
        self.use_math_verify = use_math_verify
        self.system_prompt = system_prompt or self.format.system_prompt()
        self._pool: list[Example] | None = None
        if self.path is not None and self.source == "file":
            self._pool = [problem_to_example(r, str(self.path)) for r in read_problems(self.path)]

    def __repr__(self) -> str:
        return f"GSM8KTask(source={self.source!r}, path={self.path!r})"

    def examples(self, seed: int, n: int) -> list[Example]:
        """`n` problems: a seeded shuffle of the file/hub pool, or fresh gsm_symbolic items."""
        if n < 0:
            raise ValueError(f"n must be at least 0, got {n}.")
        pool = self._fixed_pool()
        if pool is None:
            return self._gsm_symbolic(seed, n)
        if n > len(pool):
            logger.warning("gsm8k: %d problems asked for, the pool has %d", n, len(pool))
        order = list(range(len(pool)))
        random.Random(seed).shuffle(order)
        return [pool[i] for i in order[:n]]

    def score(self, completion: str, example: Example) -> float:
        return 1.0 if self.is_correct(completion, example) else 0.0

    def is_correct(self, completion: str, example: Example) -> bool:
        """True when there is a solution block and every one equals the gold answer
        (numerically or, with math-verify, as equivalent math): two different answers are
        wrong even if one of them is right."""
        solutions = self.format.solutions(completion)
        return bool(solutions) and all(
            answers_equal(s, example.answer, self.use_math_verify) for s in solutions
        )

    def format_completion(self, working: str, answer: str) -> str:
        return self.format.render(working, answer)

    def _fixed_pool(self) -> list[Example] | None:
        """The file or hub pool (hub loaded on first use); None for gsm_symbolic."""
        if self._pool is None and self.source in ("hub", "auto"):
            self._pool = self._load_hub()
        return self._pool

    def _load_hub(self) -> list[Example] | None:
        dataset, config, split = self.hub
        if self.source == "auto" and importlib.util.find_spec("datasets") is None:
            logger.info("gsm8k: datasets is not installed; using reasoning-gym gsm_symbolic")
            self.source = "gsm_symbolic"
            return None
        try:
            rows = load_hub_problems(dataset, config, split)
        except Exception as err:
            if self.source == "hub":
                raise ValueError(
                    f"gsm8k: cannot load {dataset} ({config}, {split}): {err}"
                ) from err
            logger.warning(
                "gsm8k: %s unavailable (%s); using reasoning-gym gsm_symbolic", dataset, err
            )
            self.source = "gsm_symbolic"
            return None
        return [problem_to_example(r, dataset) for r in rows]

    def _gsm_symbolic(self, seed: int, n: int) -> list[Example]:
        from smarttuner.tasks.reasoning_gym import ReasoningGymTask

        items = ReasoningGymTask("gsm_symbolic").examples(seed, n)
        return [_from_gsm_symbolic(e) for e in items]


def _from_gsm_symbolic(example: Example) -> Example:
    cot = str(example.metadata.get("answer_cot", ""))
    working = _CALCULATOR.sub("", cot.rpartition("####")[0]).strip() if "####" in cot else cot
    return Example(
        question=example.question,
        answer=example.answer,
        metadata={"solution": working, "source": "gsm_symbolic"},
    )


def answers_equal(guess: str, gold: str, use_math_verify: bool = True) -> bool:
    """Numerically equal (commas, signs, `$…$`, `\\boxed{}` allowed), else — with math-verify
    installed and allowed — equivalent as math (`\\frac{1}{2}` = `0.5`, `18 dollars` = `18`)."""
    g, t = parse_decimal(guess), parse_decimal(gold)
    if g is not None and t is not None:
        return g == t
    if use_math_verify:
        verdict = math_verify_equal(guess, gold)
        if verdict is not None:
            return verdict
    return guess.strip() == gold.strip()


def math_verify_equal(guess: str, gold: str) -> bool | None:
    """math-verify's verdict, or None when math-verify is not installed or cannot parse."""
    mv = math_verify_functions()
    gold_parsed, guess_parsed = math_verify_parse(gold), math_verify_parse(guess)
    if mv is None or not gold_parsed or not guess_parsed:
        return None
    try:
        return bool(mv[1](gold_parsed, guess_parsed, timeout_seconds=_verify_timeout()))
    except Exception:  # math-verify raises on some malformed input: treat as "cannot tell"
        logger.debug("math-verify failed on %r vs %r", guess, gold, exc_info=True)
        return None


def math_verify_parse(text: str) -> list[Any] | None:
    """math-verify's parse of `text` (sympy objects first), or None when it is not installed,
    the text is longer than MAX_VERIFY_CHARS, or parsing fails."""
    mv = math_verify_functions()
    if mv is None or len(text) > MAX_VERIFY_CHARS:
        return None
    try:
        return list(mv[0](text, parsing_timeout=_verify_timeout()))
    except Exception:
        logger.debug("math-verify cannot parse %r", text, exc_info=True)
        return None


def _verify_timeout() -> int | None:
    """math-verify's timeouts use `signal.alarm`, which only works on the main thread."""
    return VERIFY_TIMEOUT if threading.current_thread() is threading.main_thread() else None


@functools.cache
def math_verify_functions() -> tuple[Any, Any] | None:
    """(parse, verify) from math-verify, imported once; None (with one warning) when absent."""
    try:
        from math_verify import parse, verify
    except ImportError:
        logger.warning(
            "math-verify is not installed: answers are compared as plain numbers only "
            "(pip install 'smarttuner[math]' to recognise equivalent answers)"
        )
        return None
    return parse, verify
