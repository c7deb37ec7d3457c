"""From raw sampled tokens to finished completions: EOS, stop strings, masks, truncation."""

from __future__ import annotations

import pytest
import torch

from smarttuner.rollout import ENGINES, get_engine
from smarttuner.rollout.fast import _stop_hits, generate_fast
from smarttuner.rollout.hf import generate_hf
from smarttuner.rollout.types import eos_token_ids, finalize, left_pad, stop_length

pytestmark = pytest.mark.usefixtures("single_thread")


ANSWERED = "<think> 3 + 4 = 7 </think><answer> 7 </answer> then more words"
STOP = ("</answer>",)


def test_left_pad() -> None:
    ids, mask = left_pad([[4, 5], [6], [7, 8, 9]], pad_id=0)
    assert ids.tolist() == [[0, 4, 5], [0, 0, 6], [7, 8, 9]]
    assert mask.tolist() == [[0, 1, 1], [0, 0, 1], [1, 1, 1]]


def test_stop_length_is_the_first_prefix_containing_the_stop(tiny_tokenizer) -> None:
    ids = tiny_tokenizer.encode(ANSWERED)
    k = stop_length(ids, tiny_tokenizer, STOP)
    assert k is not None
    assert tiny_tokenizer.decode(ids[:k]).endswith("</answer>")
    assert "</answer>" not in tiny_tokenizer.decode(ids[: k - 1])
    # '</answer>' is split over several tokens here, so the cut is mid-way through them
    assert tiny_tokenizer.decode(ids[k - 1 : k]) != "</answer>"


def test_stop_length_without_a_hit(tiny_tokenizer) -> None:
    ids = tiny_tokenizer.encode("<think> no answer here </think>")
    assert stop_length(ids, tiny_tokenizer, STOP) is None
    assert stop_length(tiny_tokenizer.encode(ANSWERED), tiny_tokenizer, ()) is None


def test_finalize_cuts_rows_at_eos_or_stop_string(tiny_tokenizer) -> None:
    tok = tiny_tokenizer
    eos = tok.eos_token_id
    answered = tok.encode(ANSWERED)  # 27 tokens, '</answer>' complete after token 17
    cut = stop_length(answered, tok, STOP)
    width = len(answered)
    filler = tok.encode(" then more words then more words then more words then more")[:width]
    assert len(filler) == width
    eos_mid = filler[:5] + [eos] + filler[6:]
    eos_before_stop = answered[:4] + [eos] + answered[5:]  # EOS comes before '</answer>'
    raw = torch.tensor([answered, eos_mid, filler, eos_before_stop])
    prompt_ids, prompt_mask = left_pad([[5, 6], [7]] * 2, eos)
    batch = finalize(prompt_ids, prompt_mask, raw, tok, {eos}, STOP)

    assert batch.lengths.tolist() == [cut, 6, width, 5]
    assert batch.truncated.tolist() == [False, False, True, False]
    assert batch.completion_ids.shape == (4, width)
    assert batch.completion_mask[0].tolist() == [1] * cut + [0] * (width - cut)
    assert batch.completion_ids[0, :cut].tolist() == answered[:cut]
    assert (batch.completion_ids[0, cut:] == tok.pad_token_id).all()
    assert batch.completion_ids[1, 5].item() == eos  # the EOS token is kept in the completion
    assert batch.texts[0] == tok.decode(answered[:cut])
    assert batch.texts[0].endswith("</answer>")
    assert batch.texts[1] == tok.decode(filler[:5])  # special tokens removed from the text
    assert batch.texts[2] == tok.decode(filler)
    assert batch.texts[3] == tok.decode(answered[:4])
    assert torch.equal(batch.prompt_ids, prompt_ids)


def test_finalize_without_stop_strings_keeps_the_text_after_answer(tiny_tokenizer) -> None:
    ids = tiny_tokenizer.encode(ANSWERED)
    batch = finalize(
        torch.zeros(1, 1, dtype=torch.long),
        torch.ones(1, 1, dtype=torch.long),
        torch.tensor([ids]),
        tiny_tokenizer,
        {tiny_tokenizer.eos_token_id},
        (),
    )
    assert batch.lengths.tolist() == [len(ids)] and batch.truncated.tolist() == [True]
    assert batch.texts == [ANSWERED]


def test_stop_hits_looks_at_the_tail_only(tiny_tokenizer) -> None:
    ids = tiny_tokenizer.encode(ANSWERED)
    cut = stop_length(ids, tiny_tokenizer, STOP)
    rows = torch.tensor([ids[:cut], ids[1 : cut + 1]])
    assert _stop_hits(rows, tiny_tokenizer, STOP, tail=4).tolist() == [True, True]
    assert _stop_hits(torch.tensor([ids[: cut - 1]]), tiny_tokenizer, STOP, 6).tolist() == [False]


def test_eos_ids_come_from_generation_config_model_config_and_tokenizer(
    tiny_model, tiny_tokenizer
) -> None:
    assert eos_token_ids(tiny_model, tiny_tokenizer) == {tiny_tokenizer.eos_token_id}
    tiny_model.generation_config.eos_token_id = [tiny_tokenizer.eos_token_id, 7]
    tiny_model.config.eos_token_id = 9
    assert eos_token_ids(tiny_model, tiny_tokenizer) == {tiny_tokenizer.eos_token_id, 7, 9}


def test_get_engine() -> None:
    assert get_engine("auto") is generate_fast
    assert get_engine("fast") is generate_fast
    assert get_engine("hf") is generate_hf
    assert set(ENGINES) == {"fast", "hf"}
    with pytest.raises(ValueError, match="unknown rollout engine 'nope'"):
        get_engine("nope")
