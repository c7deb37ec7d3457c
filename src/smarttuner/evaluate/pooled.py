"""One recipe run several times (seeds), each run paired with its own start on the same eval
prompts, pooled into one answer: did the recipe move held-out accuracy, and by how much?

A single seed's paired split (12 prompts gained, 10 lost) says little about the recipe: the
next seed may gain 19 and lose 7. Pooling keeps each run's own before/after pairing and averages
the change prompt by prompt, d_i = mean over runs of (after_i - before_i). Their mean is the
recipe's mean change in accuracy; a bootstrap over prompts (the same resampled prompts for every
run, so the pairing holds) gives its 95 % interval for this eval set, and the spread of the
per-run changes shows how much of it the seed decides.
"""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

from smarttuner.evaluate.paired import paired_greedy
from smarttuner.outputs import read_results
from smarttuner.plots import RESULTS_FILENAME

Verdicts = tuple[list[bool], list[bool]]


def verdicts_from_results(results: dict[str, Any], source: str = "results") -> Verdicts:
    """The per-prompt greedy verdicts (before, after) of a results JSON's `paired.greedy`."""
    try:
        correct = results["paired"]["greedy"]["correct"]
        before, after = correct["baseline"], correct["final"]
    except (KeyError, TypeError):
        raise ValueError(
            f"{source} holds no paired per-prompt verdicts (paired.greedy.correct): pair the "
            "run with `smarttuner eval --model AFTER --compare-to BEFORE -o FILE`"
        ) from None
    if not isinstance(before, list) or not isinstance(after, list):
        raise ValueError(f"{source}: paired.greedy.correct must hold two lists of verdicts")
    if len(before) != len(after):
        raise ValueError(f"{source}: {len(before)} verdicts before but {len(after)} after")
    return [bool(v) for v in before], [bool(v) for v in after]


def load_paired(path: Path) -> tuple[dict[str, Any], Verdicts]:
    """A run folder (its results.json) or a results JSON file: the results and their verdicts."""
    path = Path(path)
    file = path / RESULTS_FILENAME if path.is_dir() else path
    results = read_results(file)
    return results, verdicts_from_results(results, str(file))


def check_same_prompts(results: list[dict[str, Any]], names: list[str]) -> None:
    """Runs pool only on one eval set: the same task and eval seed wherever a results JSON
    records them."""
    for key in ("task", "eval_seed"):
        seen = {name: r[key] for r, name in zip(results, names, strict=True) if key in r}
        if len(set(map(str, seen.values()))) > 1:
            listed = ", ".join(f"{name}: {value}" for name, value in seen.items())
            raise ValueError(f"runs were evaluated on different {key}s ({listed})")


def bootstrap_mean_ci(
    values: list[float], resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of `values`, resampling them with replacement."""
    if not values:
        raise ValueError("bootstrap needs at least one value")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1.0 - level) / 2
    low = means[int(tail * (resamples - 1))]
    high = means[int(round((1.0 - tail) * (resamples - 1)))]
    return low, high


def pool_paired(runs: list[Verdicts], resamples: int = 10_000, seed: int = 0) -> dict[str, Any]:
    """Per-run before/after accuracy and paired split, and the pooled change over all runs
    (mean, spread across runs, prompt-bootstrap interval, prompts up and down on average)."""
    if not runs:
        raise ValueError("pooling needs at least one paired run")
    n = len(runs[0][0])
    if n == 0:
        raise ValueError("paired runs hold no prompts")
    for number, (before, after) in enumerate(runs, start=1):
        if len(before) != n or len(after) != n:
            raise ValueError(
                f"run {number} was scored on {len(before)} prompts, run 1 on {n}: "
                "pool runs evaluated on the same prompts"
            )
    per_run = []
    for before, after in runs:
        acc_before, acc_after = sum(before) / n, sum(after) / n
        per_run.append(
            {
                "before": acc_before,
                "after": acc_after,
                "change": acc_after - acc_before,
                **paired_greedy(before, after),
            }
        )
    per_prompt = [sum(after[i] - before[i] for before, after in runs) / len(runs) for i in range(n)]
    changes = [r["change"] for r in per_run]
    low, high = bootstrap_mean_ci(per_prompt, resamples=resamples, seed=seed)
    return {
        "n_runs": len(runs),
        "n_prompts": n,
        "runs": per_run,
        "mean_before": statistics.fmean(r["before"] for r in per_run),
        "mean_after": statistics.fmean(r["after"] for r in per_run),
        "mean_change": statistics.fmean(changes),
        "sd_change": statistics.stdev(changes) if len(changes) > 1 else None,
        "ci95": [low, high],
        "resamples": resamples,
        "prompts_up": sum(d > 0 for d in per_prompt),
        "prompts_down": sum(d < 0 for d in per_prompt),
    }


def pooled_text(pooled: dict[str, Any]) -> str:
    """The console line under the per-run table."""
    sd = pooled["sd_change"]
    spread = "" if sd is None else f" (sd over runs {sd:.3f})"
    low, high = pooled["ci95"]
    return (
        f"pooled over {pooled['n_runs']} runs, {pooled['n_prompts']} prompts: accuracy "
        f"{pooled['mean_before']:.3f} -> {pooled['mean_after']:.3f}, change "
        f"{pooled['mean_change']:+.3f}{spread}, 95% prompt-bootstrap interval "
        f"[{low:+.3f}, {high:+.3f}]; on average over runs {pooled['prompts_up']} prompts up, "
        f"{pooled['prompts_down']} down"
    )
