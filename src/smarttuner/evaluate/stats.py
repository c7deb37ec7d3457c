"""The GLUE metrics, in plain Python (no scipy/sklearn): accuracy, binary F1, Matthews
correlation (CoLA), Pearson and Spearman correlation (STS-B).

A metric that is undefined for the data (a correlation of a constant series) is None, never
NaN, so it survives JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence


def _check(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"metric inputs differ in length: {len(a)} vs {len(b)}")


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float | None:
    _check(predictions, labels)
    if not labels:
        return None
    return sum(int(p == y) for p, y in zip(predictions, labels, strict=True)) / len(labels)


def _confusion(predictions: Sequence[int], labels: Sequence[int]) -> tuple[int, int, int, int]:
    """(tp, fp, fn, tn) with class 1 as positive."""
    _check(predictions, labels)
    tp = sum(1 for p, y in zip(predictions, labels, strict=True) if p == 1 and y == 1)
    fp = sum(1 for p, y in zip(predictions, labels, strict=True) if p == 1 and y != 1)
    fn = sum(1 for p, y in zip(predictions, labels, strict=True) if p != 1 and y == 1)
    return tp, fp, fn, len(labels) - tp - fp - fn


def f1_binary(predictions: Sequence[int], labels: Sequence[int]) -> float | None:
    """F1 of class 1 (MRPC's "equivalent"); None when there is no positive at all."""
    tp, fp, fn, _ = _confusion(predictions, labels)
    if tp + fp + fn == 0:
        return None
    return 2 * tp / (2 * tp + fp + fn)


def matthews_corrcoef(predictions: Sequence[int], labels: Sequence[int]) -> float | None:
    """(tp·tn − fp·fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)); 0 when a margin is empty (as
    sklearn does: a constant prediction carries no information)."""
    tp, fp, fn, tn = _confusion(predictions, labels)
    if not labels:
        return None
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else (tp * tn - fp * fn) / denominator


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    _check(x, y)
    n = len(x)
    if n < 2:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        mean_rank = (start + end) / 2 + 1
        for i in order[start : end + 1]:
            out[i] = mean_rank
        start = end + 1
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation of the ranks (ties averaged), as scipy.stats.spearmanr."""
    _check(x, y)
    return pearson(ranks(x), ranks(y))
