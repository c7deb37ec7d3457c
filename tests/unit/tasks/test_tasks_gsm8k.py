"""The gsm8k task: `#### N` parsing, the shipped sample file, the sources (file, hub, the
gsm_symbolic fallback), the output format and grading."""

from __future__ import annotations

import ast
import json
import operator
import re
from pathlib import Path

import pytest

from smarttuner.tasks import Example, Task, get_task
from smarttuner.tasks import gsm8k as gsm8k_module
from smarttuner.tasks.gsm8k import GSM8KTask, SolutionFormat, split_gsm8k_answer

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "gsm8k_sample.jsonl"


def solution(answer: str, working: str = "12 + 18 = 30") -> str:
    return f"<start_working_out>{working}<end_working_out><SOLUTION>{answer}</SOLUTION>"


@pytest.mark.parametrize(
    ("raw", "working", "final"),
    [
        ("3*6=<<3*6=18>>18\n12+18=<<12+18=30>>30\n#### 30", "3*6=18\n12+18=30", "30"),
        ("250*5=<<250*5=1250>>1,250 eggs\n#### 1,250", "250*5=1,250 eggs", "1250"),
        ("#### 7.50", "", "7.5"),
        ("It dropped to -5.\n#### -5", "It dropped to -5.", "-5"),
        ("42", "", "42"),  # no '####': the whole field is the answer
        ("#### 1/2", "", "1/2"),  # not a plain number: kept as written
    ],
)
def test_split_gsm8k_answer(raw: str, working: str, final: str) -> None:
    assert split_gsm8k_answer(raw) == (working, final)


def test_nothing_after_hashes_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing after '####'"):
        split_gsm8k_answer("some working\n#### ")


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}
_OPS[ast.Div] = operator.truediv


def _arith(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _arith(node.body)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.BinOp):
        return _OPS[type(node.op)](_arith(node.left), _arith(node.right))
    raise ValueError(f"not arithmetic: {ast.dump(node)}")


def test_sample_file_is_well_formed_and_its_arithmetic_is_right() -> None:
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    assert len(rows) == 20
    for row in rows:
        marks = re.findall(r"<<([^=<>]+)=([^<>]+)>>", row["answer"])
        assert marks, row["question"]
        for expression, result in marks:  # every calculator annotation is correct
            assert _arith(ast.parse(expression, mode="eval")) == pytest.approx(float(result))
        # the final answer is the last calculation's result (or stated in the working)
        _, final = split_gsm8k_answer(row["answer"])
        assert float(final) == pytest.approx(float(marks[-1][1])) or final in row["answer"]


def test_loads_the_sample_file() -> None:
    task = get_task("gsm8k", path=str(SAMPLE))
    assert isinstance(task, Task) and task.source == "file"
    examples = task.examples(seed=0, n=20)
    assert len(examples) == 20 and len({e.question for e in examples}) == 20
    answers = {e.answer for e in examples}
    assert {"1250", "7.5", "-5", "4.5"} <= answers  # commas dropped, decimals and signs kept
    eggs = next(e for e in examples if e.answer == "1250")
    assert "<<" not in eggs.metadata["solution"] and "####" not in eggs.metadata["solution"]


def test_examples_are_a_seeded_shuffle_of_the_pool(caplog) -> None:
    task = GSM8KTask(path=str(SAMPLE))
    assert task.examples(3, 5) == task.examples(3, 5)
    assert task.examples(3, 20) != task.examples(4, 20)
    assert task.examples(3, 5) == task.examples(3, 8)[:5]
    assert len(task.examples(3, 50)) == 20
    assert "pool has 20" in caplog.text


def test_system_prompt_and_grading() -> None:
    task = GSM8KTask(path=str(SAMPLE))
    for tag in SolutionFormat().tags:
        assert tag in task.system_prompt
    gold = Example("q", "1250")
    assert task.is_correct(solution("1250"), gold)
    assert task.is_correct(solution("1,250"), gold)
    assert task.is_correct(solution("1250.0"), gold)
    assert task.score(solution("1250"), gold) == 1.0
    assert task.score(solution("1251"), gold) == 0.0
    assert task.score("The answer is 1250.", gold) == 0.0  # no solution block
    two = solution("1250") + "<SOLUTION>1300</SOLUTION>"
    assert not task.is_correct(two, gold)  # two different answers are a hedge, not an answer
    assert task.is_correct(solution("-5"), Example("q", "-5"))
    assert not task.is_correct(solution("5"), Example("q", "-5"))


def test_math_verify_recognises_equivalent_answers() -> None:
    pytest.importorskip("math_verify")
    task = GSM8KTask(path=str(SAMPLE))
    assert task.is_correct(solution("\\frac{15}{2}"), Example("q", "7.5"))
    assert task.is_correct(solution("30 dollars"), Example("q", "30"))
    off = GSM8KTask(path=str(SAMPLE), use_math_verify=False)
    assert not off.is_correct(solution("\\frac{15}{2}"), Example("q", "7.5"))


def test_tags_are_configurable() -> None:
    task = GSM8KTask(
        path=str(SAMPLE),
        reasoning_start="<think>",
        reasoning_end="</think>",
        solution_start="<answer>",
        solution_end="</answer>",
    )
    assert "<answer>" in task.system_prompt and "<SOLUTION>" not in task.system_prompt
    assert task.is_correct("<think>w</think><answer>42</answer>", Example("q", "42"))
    assert task.format_completion("w", "42") == "<think>w</think><answer>42</answer>"


def test_bad_params_and_files(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown gsm8k parameter"):
        GSM8KTask(solution_tag="x")
    with pytest.raises(ValueError, match="source must be one of"):
        GSM8KTask(source="web")
    with pytest.raises(ValueError, match="needs params.path"):
        GSM8KTask(source="file")
    with pytest.raises(ValueError, match="distinct"):
        GSM8KTask(solution_start="<x>", solution_end="<x>")
    with pytest.raises(FileNotFoundError, match="not found"):
        GSM8KTask(path=str(tmp_path / "missing.jsonl"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "#### 1"}\n{oops\n')
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        GSM8KTask(path=str(bad))
    bad.write_text('{"question": "q", "solution": "#### 1"}\n')
    with pytest.raises(ValueError, match="row 1 needs string 'question' and 'answer'"):
        GSM8KTask(path=str(bad))
    bad.write_text("\n")
    with pytest.raises(ValueError, match="holds no problems"):
        GSM8KTask(path=str(bad))


def test_hub_source_maps_rows(monkeypatch) -> None:
    rows = [{"question": "2+2?", "answer": "2+2=<<2+2=4>>4\n#### 4"}]
    calls = []

    def fake_hub(dataset: str, config: str, split: str) -> list[dict]:
        calls.append((dataset, config, split))
        return rows

    monkeypatch.setattr(gsm8k_module, "load_hub_problems", fake_hub)
    task = GSM8KTask(source="hub", split="test")
    assert task.examples(0, 1) == [
        Example("2+2?", "4", {"solution": "2+2=4", "source": "openai/gsm8k"})
    ]
    assert calls == [("openai/gsm8k", "main", "test")]


def test_offline_default_falls_back_to_gsm_symbolic(monkeypatch) -> None:
    def offline(*_args) -> list[dict]:
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(gsm8k_module, "load_hub_problems", offline)
    monkeypatch.setattr(gsm8k_module.importlib.util, "find_spec", lambda name: object())
    task = GSM8KTask()
    examples = task.examples(seed=1, n=2)
    assert task.source == "gsm_symbolic" and len(examples) == 2
    for e in examples:
        assert re.fullmatch(r"-?\d+", e.answer)
        assert e.metadata["solution"] and "####" not in e.metadata["solution"]
    assert task.is_correct(solution(examples[0].answer), examples[0])
    with pytest.raises(ValueError, match="cannot load openai/gsm8k"):
        GSM8KTask(source="hub").examples(0, 1)


def test_without_math_verify_plain_numbers_still_compare(monkeypatch, caplog) -> None:
    monkeypatch.setitem(__import__("sys").modules, "math_verify", None)  # import fails
    gsm8k_module.math_verify_functions.cache_clear()
    try:
        assert not gsm8k_module.answers_equal("\\frac{15}{2}", "7.5")
        assert gsm8k_module.answers_equal("1,250", "1250")
        assert "pip install 'smarttuner[math]'" in caplog.text
    finally:
        gsm8k_module.math_verify_functions.cache_clear()


def test_parquet_file(tmp_path) -> None:
    path = tmp_path / "problems.parquet"
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        path.write_bytes(b"PAR1")
        with pytest.raises(ValueError, match=r"needs pyarrow: pip install 'smarttuner\[data\]'"):
            GSM8KTask(path=str(path))
        return
    rows = [{"question": "2+2?", "answer": "#### 4"}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert GSM8KTask(path=str(path)).examples(0, 1)[0].answer == "4"
