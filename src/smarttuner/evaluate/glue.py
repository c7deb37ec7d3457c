"""GLUE-style prompt evaluation of a causal LM: CoLA, STS-B, MRPC, RTE, WNLI.

Each task has a prompt template and, per class, label words with their expansions
(acceptable: "yes", "acceptable"; not_entailment: "no", "false", …; capitalised forms are
added). The model is never asked to generate: for every example the log-likelihood of each
label word as the reply to the prompt is computed (one prefill per prompt, shared by its
words), a class scores the log of the summed probability of its words, and the best class is
the prediction. For STS-B the "classes" are the scores 0–5 and the prediction is their
expected value under the model's normalised probabilities. This is robust for small models,
which rarely answer in a parseable way but still rank "yes" against "no" sensibly.

Metrics follow GLUE: Matthews correlation and accuracy (CoLA), accuracy and F1 (MRPC),
accuracy (RTE, WNLI), Pearson and Spearman correlation (STS-B).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.evaluate import stats
from smarttuner.evaluate.glue_data import GlueExample, load_glue
from smarttuner.grpo.logprobs import completion_logprobs
from smarttuner.outputs import write_json
from smarttuner.prompts import context_length, encode_prompts
from smarttuner.rollout.types import left_pad

log = logging.getLogger(__name__)

GLUE_SYSTEM_PROMPT = "You are a careful annotator. Answer with a single word."

_METRICS: dict[str, Callable[[Sequence, Sequence], float | None]] = {
    "accuracy": stats.accuracy,
    "f1": stats.f1_binary,
    "mcc": stats.matthews_corrcoef,
    "pearson": stats.pearson,
    "spearman": stats.spearman,
}


@dataclass(frozen=True)
class GlueClass:
    name: str
    words: tuple[str, ...]  # label words; capitalised forms are added by `expanded_words`
    value: float  # class index (classification) or the score it stands for (STS-B)


@dataclass(frozen=True)
class GlueTask:
    name: str  # canonical name: cola, sts-b, mrpc, rte, wnli
    hf_config: str  # configuration of nyu-mll/glue
    folder: str  # GLUE's folder name for its TSV files
    template: str  # user message; {a} and {b} are the sentences
    classes: tuple[GlueClass, ...]
    metrics: tuple[str, ...]
    regression: bool = False
    positional: tuple[int, int | None, int] | None = None  # (a, b, label) columns, no header

    @property
    def pair(self) -> bool:
        return "{b}" in self.template

    def prompt(self, example: GlueExample) -> str:
        return self.template.format(a=example.text_a.strip(), b=(example.text_b or "").strip())

    def parse_label(self, raw: str) -> float | None:
        """A file's label cell -> class index (or score); None for an unlabelled row."""
        text = raw.strip()
        if text in ("", "-1", "None"):
            return None
        if self.regression:
            return float(text)
        names = {c.name: i for i, c in enumerate(self.classes)}
        if text.lower() in names:
            return names[text.lower()]
        index = int(float(text))
        if not 0 <= index < len(self.classes):
            allowed = ", ".join([*map(str, range(len(self.classes))), *names])
            raise ValueError(f"GLUE {self.name}: label {raw!r} is not one of {allowed}")
        return index


def _yes_no(no: str, yes: str, no_words: tuple[str, ...], yes_words: tuple[str, ...]):
    return (GlueClass(no, ("no", *no_words), 0), GlueClass(yes, ("yes", *yes_words), 1))


_PAIR = 'Sentence 1: "{a}"\nSentence 2: "{b}"\n'
_NLI = (
    'Premise: "{a}"\nHypothesis: "{b}"\nDoes the premise entail the hypothesis? Answer yes or no.'
)
GLUE_TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask(
            "cola",
            "cola",
            "CoLA",
            'Sentence: "{a}"\nIs this sentence grammatically acceptable English? Answer yes or no.',
            _yes_no("unacceptable", "acceptable", ("unacceptable",), ("acceptable",)),
            ("mcc", "accuracy"),
            positional=(3, None, 1),
        ),
        GlueTask(
            "sts-b",
            "stsb",
            "STS-B",
            _PAIR + "On a scale from 0 (unrelated) to 5 (same meaning), how similar are "
            "these sentences? Answer with one number.",
            tuple(GlueClass(str(v), (str(v),), float(v)) for v in range(6)),
            ("pearson", "spearman"),
            regression=True,
        ),
        GlueTask(
            "mrpc",
            "mrpc",
            "MRPC",
            _PAIR + "Do these two sentences mean the same thing? Answer yes or no.",
            _yes_no("not_equivalent", "equivalent", ("different",), ("same",)),
            ("accuracy", "f1"),
        ),
        GlueTask(
            "rte",
            "rte",
            "RTE",
            _NLI,
            (
                GlueClass("entailment", ("yes", "true", "entailment"), 0),
                GlueClass("not_entailment", ("no", "false"), 1),
            ),
            ("accuracy",),
        ),
        GlueTask(
            "wnli",
            "wnli",
            "WNLI",
            _NLI,
            _yes_no("not_entailment", "entailment", ("false",), ("true", "entailment")),
            ("accuracy",),
        ),
    )
}


def get_glue_task(name: str) -> GlueTask:
    """A GLUE task by name; case, '-' and '_' are ignored (`STS-B`, `stsb`, `sts_b`)."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    for task in GLUE_TASKS.values():
        if key in (task.name.replace("-", ""), task.hf_config):
            return task
    raise ValueError(f"unknown GLUE task {name!r}; choose from {', '.join(GLUE_TASKS)}")


def parse_glue_tasks(names: str | Sequence[str]) -> list[GlueTask]:
    """'cola,sts-b' or ['cola', 'sts-b'] (or 'all') -> tasks, in the given order."""
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [n for n in (i.strip() for i in items) if n]
    if items == ["all"]:
        return list(GLUE_TASKS.values())
    if not items:
        raise ValueError(f"no GLUE task given; choose from {', '.join(GLUE_TASKS)} or all")
    return list({t.name: t for t in map(get_glue_task, items)}.values())


def expanded_words(task: GlueTask) -> tuple[list[str], list[int]]:
    """(every label word, the class index of each): words plus their capitalised forms."""
    words, owner = [], []
    for index, cls in enumerate(task.classes):
        for word in cls.words:
            for form in dict.fromkeys((word, word.capitalize())):
                if form not in words:
                    words.append(form)
                    owner.append(index)
    return words, owner


@torch.no_grad()
def continuation_logprobs(
    model: PreTrainedModel,
    prompts: list[list[int]],
    continuations: list[list[int]],
    pad_id: int,
) -> torch.Tensor:  # [B, K]
    """Summed log-prob of each continuation (token ids) after each prompt; the K rows of a
    prompt share one prefill (`completion_logprobs` runs distinct prompts once)."""
    b, k = len(prompts), len(continuations)
    p_ids, p_mask = left_pad(prompts, pad_id)  # [B, P]
    width = max(len(c) for c in continuations)
    c_ids = torch.full((k, width), pad_id, dtype=torch.long)  # [K, C] right-padded
    c_mask = torch.zeros((k, width), dtype=torch.long)  # [K, C]
    for row, ids in enumerate(continuations):
        c_ids[row, : len(ids)] = torch.tensor(ids)
        c_mask[row, : len(ids)] = 1
    logprobs = completion_logprobs(
        model,
        p_ids.repeat_interleave(k, dim=0),  # [B*K, P]
        p_mask.repeat_interleave(k, dim=0),
        c_ids.repeat(b, 1),  # [B*K, C]
        c_mask.repeat(b, 1),
    )  # [B*K, C]
    return (logprobs.float().cpu() * c_mask.repeat(b, 1)).sum(dim=1).view(b, k)


def class_scores(word_logprobs: torch.Tensor, owner: list[int], n_classes: int) -> torch.Tensor:
    """[B, K] word log-probs -> [B, J] class log-probs: log of the summed word probabilities."""
    owner_t = torch.tensor(owner)
    return torch.stack(
        [torch.logsumexp(word_logprobs[:, owner_t == j], dim=1) for j in range(n_classes)], dim=1
    )


@dataclass
class GlueResult:
    task: str
    metrics: dict[str, float | None]
    n: int
    predictions: list[dict[str, Any]] = field(default_factory=list)


def evaluate_glue(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    task: GlueTask,
    examples: list[GlueExample],
    batch_size: int = 16,
    system_prompt: str | None = GLUE_SYSTEM_PROMPT,
) -> GlueResult:
    """Score every example's label words; metrics and one prediction record per example."""
    if not examples:
        raise ValueError(f"GLUE {task.name}: no examples to evaluate")
    was_training = model.training
    model.eval()
    words, owner = expanded_words(task)
    word_ids = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
    values = torch.tensor([c.value for c in task.classes])  # [J]
    predictions: list[dict[str, Any]] = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        prompts = encode_prompts(
            tokenizer,
            [task.prompt(e) for e in chunk],
            system_prompt,
            max(len(w) for w in word_ids),
            context_length(model),
        )
        scores = class_scores(
            continuation_logprobs(model, prompts, word_ids, tokenizer.pad_token_id),
            owner,
            len(task.classes),
        )  # [B, J]
        probs = scores.softmax(dim=1)  # [B, J], normalised over the classes
        guesses = (probs @ values).tolist() if task.regression else scores.argmax(1).tolist()
        for example, guess, row in zip(chunk, guesses, scores.tolist(), strict=True):
            predictions.append(
                {
                    "idx": example.idx,
                    "text_a": example.text_a,
                    "text_b": example.text_b,
                    "label": example.label,
                    "prediction": guess,
                    "class_logprobs": {c.name: s for c, s in zip(task.classes, row, strict=True)},
                }
            )
    model.train(was_training)
    labels = [p["label"] for p in predictions]
    guesses = [p["prediction"] for p in predictions]
    metrics = {name: _METRICS[name](guesses, labels) for name in task.metrics}
    return GlueResult(task.name, metrics, len(predictions), predictions)


def run_glue(
    model: str,
    tasks: str | Sequence[str],
    data_dir: Path | None = None,
    max_samples: int | None = None,
    save_predictions: Path | None = None,
    batch_size: int = 16,
    device: str = "auto",
    output: Path | None = None,
) -> dict[str, Any]:
    """Load `model` once and evaluate it on each GLUE task; returns {model, tasks: {name:
    {metrics, n}}}, also written to `output`. With `save_predictions`, writes
    `DIR/<task>.json` with the metrics and every prediction."""
    from smarttuner.config import ModelConfig
    from smarttuner.models import load_model

    specs = parse_glue_tasks(tasks)
    data = {t.name: load_glue(t, data_dir, max_samples=max_samples) for t in specs}
    net, tokenizer = load_model(ModelConfig(name=model, device=device), trainable=False)
    summary: dict[str, Any] = {"model": model, "data": str(data_dir or "nyu-mll/glue"), "tasks": {}}
    for task in specs:
        result = evaluate_glue(net, tokenizer, task, data[task.name], batch_size)
        summary["tasks"][task.name] = {"metrics": result.metrics, "n": result.n}
        log.info("GLUE %s: %s on %d examples", task.name, result.metrics, result.n)
        if save_predictions is not None:
            write_json(
                Path(save_predictions) / f"{task.name}.json",
                {"task": task.name, "model": model, "metrics": result.metrics,
                 "predictions": result.predictions},
            )  # fmt: skip
    if output is not None:
        write_json(Path(output), summary)
    return summary
