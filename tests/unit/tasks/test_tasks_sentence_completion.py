"""The sentence_completion task: splitting sentences under token budgets, the shipped CoLA-style
sample, validation errors, and grading."""

from __future__ import annotations

from pathlib import Path

import pytest

from smarttuner.tasks import Example, Task, get_task
from smarttuner.tasks.sentence_completion import (
    SentenceCompletionTask,
    split_sentence,
    token_starts,
    word_f1,
)

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "cola_sample.tsv"
SENTENCE = "The children played in the garden until the sun went down."


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_split_at_the_end_by_words() -> None:
    starts = token_starts(SENTENCE, None)
    assert len(starts) == 11
    assert split_sentence(SENTENCE, starts, 4, 3) == (
        "The children played in the garden until",
        "the sun went down.",
    )
    # a cut inside the sentence takes the next 4 tokens
    assert split_sentence(SENTENCE, starts, 4, 3, cut=3) == (
        "The children played",
        "in the garden until",
    )
    # budgets that do not fit: 3 + 9 > 11 tokens
    assert split_sentence(SENTENCE, starts, 9, 3) is None
    with pytest.raises(ValueError, match="outside"):
        split_sentence(SENTENCE, starts, 4, 3, cut=2)


def test_split_by_tokenizer_tokens(tiny_tokenizer) -> None:
    starts = token_starts(SENTENCE, tiny_tokenizer)
    ids = tiny_tokenizer(SENTENCE, add_special_tokens=False)["input_ids"]
    assert len(starts) == len(ids) > 11  # the tiny BPE cuts words into pieces
    prompt, target = split_sentence(SENTENCE, starts, 4, 3)
    # the target is the text of the last 4 tokens, the prompt everything before it
    assert target == SENTENCE[starts[-4] :].strip()
    assert prompt == SENTENCE[: starts[-4]].rstrip()
    last_four = tiny_tokenizer.decode(ids[-4:])
    assert last_four.strip() == target


def test_sample_file_makes_examples() -> None:
    task = get_task("sentence_completion", path=str(SAMPLE))
    assert isinstance(task, Task) and task.skipped == 0
    examples = task.examples(seed=0, n=30)
    assert len(examples) == 30
    for e in examples:
        assert len(e.answer.split()) == 4
        assert f"{e.question} {e.answer}" == e.metadata["text"]
        assert e.metadata["score"] in (0.0, 1.0)
    assert task.examples(0, 5) == task.examples(0, 5)
    assert task.examples(0, 30) != task.examples(1, 30)
    assert sum(e.metadata["score"] == 0.0 for e in examples) == 8


def test_random_cut_respects_budgets(tmp_path) -> None:
    task = SentenceCompletionTask(
        path=str(SAMPLE), cut="random", completion_tokens=2, min_prompt_tokens=2
    )
    for e in task.examples(seed=3, n=30):
        assert len(e.answer.split()) == 2 and len(e.question.split()) >= 2
        assert e.metadata["text"].startswith(f"{e.question} {e.answer}")


def test_short_sentences_are_skipped_and_counted(tmp_path, caplog) -> None:
    path = write(tmp_path, "s.csv", "text,scores\nToo short here.,1\n" + f'"{SENTENCE}",0.5\n')
    task = SentenceCompletionTask(path=path)
    assert task.skipped == 1 and len(task.examples(0, 5)) == 1
    assert "asked for" in caplog.text
    assert task.examples(0, 1)[0].metadata["score"] == 0.5


def test_validation_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="needs params.path"):
        SentenceCompletionTask()
    with pytest.raises(FileNotFoundError, match="not found"):
        SentenceCompletionTask(path=str(tmp_path / "nope.tsv"))
    path = write(tmp_path, "a.tsv", "sentence\tlabel\nA b c d e f g h.\t1\n")
    with pytest.raises(ValueError, match=r"no column\(s\) \['text', 'scores'\].*sentence"):
        SentenceCompletionTask(path=path)
    ok = SentenceCompletionTask(path=path, text_column="sentence", score_column="label")
    assert len(ok.examples(0, 1)) == 1
    path = write(tmp_path, "b.tsv", "text\tscores\nA b c d e f g h.\tgood\n")
    with pytest.raises(ValueError, match="line 2: 'scores' must be a number, got 'good'"):
        SentenceCompletionTask(path=path)
    path = write(tmp_path, "c.tsv", "text\tscores\n\t1\n")
    with pytest.raises(ValueError, match="line 2: empty 'text'"):
        SentenceCompletionTask(path=path)
    path = write(tmp_path, "d.tsv", "text\tscores\n")
    with pytest.raises(ValueError, match="0 data rows; at least 1"):
        SentenceCompletionTask(path=path)
    with pytest.raises(ValueError, match="31 are needed|at least 31"):
        SentenceCompletionTask(path=str(SAMPLE), min_rows=31)
    path = write(tmp_path, "e.tsv", "text\tscores\nShort one.\t1\n")
    with pytest.raises(ValueError, match="none of the 1 sentences"):
        SentenceCompletionTask(path=path)
    with pytest.raises(ValueError, match="at least 1"):
        SentenceCompletionTask(path=str(SAMPLE), completion_tokens=0)


def test_grading() -> None:
    task = SentenceCompletionTask(path=str(SAMPLE))
    gold = Example("The children played in the garden until", "the sun went down.")
    assert task.is_correct(" the sun went down.", gold)
    assert task.is_correct("The Sun went down", gold)  # case and punctuation ignored
    assert not task.is_correct("the moon went down", gold)
    assert task.score("the sun went down", gold) == 1.0
    assert task.score("the moon went down", gold) == pytest.approx(0.75)  # 3 of 4 words
    assert task.score("", gold) == 0.0
    assert word_f1("the sun went down and stayed there", "the sun went down.") == 1.0
