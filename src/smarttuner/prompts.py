"""Questions -> prompt token ids, through the tokenizer's chat template when it has one."""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase as Tokenizer


class PromptTooLongError(ValueError):
    """A prompt that leaves no room for the completion in the model's context."""


def chat_messages(question: str, system_prompt: str | None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return messages + [{"role": "user", "content": question}]


def render_prompt(tokenizer: Tokenizer, question: str, system_prompt: str | None) -> str:
    """The prompt text: chat template with a generation prompt, or a plain layout without one."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            chat_messages(question, system_prompt), tokenize=False, add_generation_prompt=True
        )
    head = f"{system_prompt}\n\n" if system_prompt else ""
    return f"{head}Question: {question}\nResponse: "


def encode_prompts(
    tokenizer: Tokenizer,
    questions: list[str],
    system_prompt: str | None,
    max_new_tokens: int,
    context_length: int | None,
) -> list[list[int]]:
    """Token ids of each rendered prompt; too long for the context is a PromptTooLongError."""
    encoded = []
    for question in questions:
        ids = tokenizer(render_prompt(tokenizer, question, system_prompt), add_special_tokens=False)
        ids = ids["input_ids"]
        if context_length is not None and len(ids) + max_new_tokens > context_length:
            raise PromptTooLongError(
                f"prompt of {len(ids)} tokens + max_new_tokens {max_new_tokens} exceeds the "
                f"model's context of {context_length} tokens (question starts {question[:60]!r})"
            )
        encoded.append(ids)
    return encoded


def context_length(model) -> int | None:
    return getattr(model.config, "max_position_embeddings", None)
