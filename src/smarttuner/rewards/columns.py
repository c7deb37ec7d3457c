"""Small helpers shared by the built-in rewards: reading a dataset column out of the keyword
arguments a reward receives, refusing unknown parameters, and z-scoring a batch."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def check_params(reward: str, params: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """A ValueError naming the reward, the unknown keys and the allowed ones."""
    allowed = sorted(allowed)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"reward {reward!r}: unknown parameter(s) {unknown}; allowed: {', '.join(allowed)}"
        )


def column(reward: str, name: str, n: int, columns: Mapping[str, Any]) -> list[Any]:
    """Column `name` as a list of `n` values: a keyword column, else a key of every sample's
    `metadata` (so task metadata such as a sentence's acceptability score can be used)."""
    if name in columns and columns[name] is not None:
        values = list(columns[name])
    elif "metadata" in columns and all(
        isinstance(m, Mapping) and name in m for m in columns["metadata"]
    ):
        values = [m[name] for m in columns["metadata"]]
    else:
        keys = sorted(k for k in columns if columns[k] is not None)
        raise ValueError(
            f"reward {reward!r} needs the column {name!r}, which is neither a column "
            f"({', '.join(keys) or 'none given'}) nor a key of every sample's metadata"
        )
    if len(values) != n:
        raise ValueError(
            f"reward {reward!r}: column {name!r} has {len(values)} values for {n} completions"
        )
    return values


def zscore(values: Sequence[float], eps: float = 1e-6) -> list[float]:
    """(x − mean) / (std + eps) over the batch (population std); all zeros for fewer than two
    values or a constant batch."""
    n = len(values)
    if n < 2:
        return [0.0] * n
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    if std < eps:
        return [0.0] * n
    return [(v - mean) / (std + eps) for v in values]
