"""Shared fixtures: a tiny randomly initialised Llama and a tokenizer trained offline.

Nothing here downloads anything. The tokenizer is a small byte-level BPE trained on a few
lines of task-like text, with the ChatML special tokens and chat template of SmolLM2 so
prompts look like the real model's.
"""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "<think> All humans are chefs, so some chefs are humans. </think><answer> Yes </answer>",
    "<think> 3 + 4 = 7, then 7 * 2 = 14 </think><answer> 14 </answer>",
    "Consider these statements: No students are humans. Does it logically follow? Yes or No",
    "You are a careful reasoner. First think about the problem step by step inside tags.",
    "What is (12 - 5) * 3? Calculate the value. The answer is 21. -42 0.5 1,000",
    "If it rains then the ground is wet. P and Q or not R. True False",
]


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def single_thread():
    """Tiny matrices: one thread avoids OpenMP waits on a shared 2-core machine. A module asks
    for it with `pytestmark = pytest.mark.usefixtures("single_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    return build_tiny_tokenizer()


@pytest.fixture()
def tiny_model(tiny_tokenizer) -> LlamaForCausalLM:
    return build_tiny_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> str:
    """A tiny model saved as a plain HF folder, loadable through `--model DIR`."""
    path = tmp_path_factory.mktemp("tiny-llama")
    build_tiny_model(tiny_tokenizer).save_pretrained(path)
    tiny_tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir: str, tmp_path_factory) -> str:
    """A LoRA adapter on the tiny model with non-zero B, so it changes the outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    path = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(path)
    return str(path)


@pytest.fixture()
def logit_spy(monkeypatch):
    """`(seen, install)`: `install(module, name)` wraps the function `module.name`, whose first
    argument is a model, so that each call first appends to `seen` that model's logits on a
    fixed input, computed as the call would compute them (autocast state included)."""
    seen: list[torch.Tensor] = []

    def install(module, name: str) -> None:
        real = getattr(module, name)

        def spy(model, *args, **kwargs):
            with torch.no_grad():
                seen.append(model(torch.tensor([[1, 2, 3, 4, 5]])).logits.float())
            return real(model, *args, **kwargs)

        monkeypatch.setattr(module, name, spy)

    return seen, install
