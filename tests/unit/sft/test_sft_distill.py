"""The `self_distill` SFT source: sampling on the tiny model, and the acceptance logic with
a fake engine whose completions are fixed (some right, some wrong, some badly formatted)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from smarttuner.config import SFTSettings
from smarttuner.formatting import ANSWER_CLOSE
from smarttuner.sft import distill
from smarttuner.sft.distill import DEMO_COMPLETION, DEMO_QUESTION, accept_completions
from smarttuner.sft.records import format_target
from smarttuner.sft.sources import SourceContext, make_records
from smarttuner.tasks import Example, get_task

TASK = get_task("arithmetic")


def right(example: Example) -> str:
    return format_target("worked it out", example.answer)


def wrong(example: Example) -> str:
    return format_target("guessed", str(int(example.answer) + 5))


def context(examples, model, tokenizer, **settings) -> SourceContext:
    sft = SFTSettings(source="self_distill", **settings)
    return SourceContext(TASK, "arithmetic", examples, sft, model, tokenizer, seed=7)


def test_tiny_model_samples_k_per_question_reproducibly(tiny_model, tiny_tokenizer) -> None:
    examples = TASK.examples(seed=0, n=3)
    ctx = context(examples, tiny_model, tiny_tokenizer, samples_per_question=2, max_new_tokens=6)
    tiny_model.train()
    first = make_records("self_distill", ctx)
    assert tiny_model.training  # the train/eval state is restored
    report = first.report
    assert report["source"] == "self_distill"
    assert report["asked"] == 3 and report["sampled"] == 6
    assert 0 <= report["accepted"] <= 6
    assert report["acceptance_rate"] == report["accepted"] / 6
    assert report["questions_covered"] == len(first.records) <= 3
    # the same seed samples the same texts, which the acceptance logic turns into the records
    texts = distill.sample_completions(tiny_model, tiny_tokenizer, TASK, examples, ctx.settings, 7)
    assert len(texts) == 6
    assert accept_completions(TASK, examples, texts, 2) == (first.records, report["accepted"])


def test_acceptance_keeps_the_first_verified_sample_per_question(
    monkeypatch: pytest.MonkeyPatch, tiny_model, tiny_tokenizer
) -> None:
    examples = TASK.examples(seed=1, n=10)
    examples[9] = examples[0]  # a duplicate question adds no second record
    k = 3
    texts = []
    for i, e in enumerate(examples):
        if i in (0, 9):  # wrong, right but unformatted, right
            texts += [wrong(e), f"{e.answer} <answer> {e.answer} </answer>", right(e)]
        elif i % 2 == 1:  # odd questions: never right
            texts += [wrong(e)] * k
        else:  # even questions: the second sample is right
            texts += [wrong(e), right(e) + "\n", right(e).replace("worked", "second")]
    calls = []

    def fake_engine(model, tokenizer, prompts, num_samples, params, generator):
        calls.append((len(prompts), num_samples, params))
        start = sum(n * s for n, s, _ in calls[:-1])
        decoded = tokenizer.decode(prompts[0])
        assert DEMO_QUESTION in decoded and DEMO_COMPLETION in decoded
        return SimpleNamespace(texts=texts[start : start + len(prompts) * num_samples])

    monkeypatch.setattr(distill, "get_engine", lambda name: fake_engine)
    ctx = context(
        examples,
        tiny_model,
        tiny_tokenizer,
        samples_per_question=k,
        distill_temperature=0.9,
        max_new_tokens=50,
    )
    result = make_records("self_distill", ctx)

    assert [(n, s) for n, s, _ in calls] == [(8, 3), (2, 3)]  # batches of 8 prompts x k
    params = calls[0][2]
    assert (params.temperature, params.top_p, params.max_new_tokens) == (0.9, 0.95, 50)
    assert params.stop_strings == (ANSWER_CLOSE,)
    covered = [examples[i] for i in (0, 2, 4, 6, 8)]
    assert [r.question for r in result.records] == [e.question for e in covered]
    assert [r.completion for r in result.records] == [right(e) for e in covered]
    # accepted: q0 1, q2/q4/q6/q8 2 each, q9 (= q0) 1 -> 10 of 30
    assert result.report == {
        "source": "self_distill",
        "asked": 10,
        "sampled": 30,
        "accepted": 10,
        "acceptance_rate": 10 / 30,
        "questions_covered": 5,
        "made": 5,
    }


def test_accept_completions_checks_the_sample_count() -> None:
    examples = TASK.examples(seed=0, n=2)
    with pytest.raises(ValueError, match="expected 4 completions"):
        accept_completions(TASK, examples, ["x"] * 3, 2)


def test_self_distill_needs_a_model() -> None:
    with pytest.raises(ValueError, match="needs the model and tokenizer"):
        make_records("self_distill", context(TASK.examples(0, 1), None, None))
