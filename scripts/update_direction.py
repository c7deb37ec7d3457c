"""Is a GRPO update worse than a random step of the same size? Evaluate LoRA adapters along
the line from a start adapter (the SFT model) through an end adapter (the same LoRA after
GRPO), and at random steps with the update's per-tensor norms.

    python scripts/update_direction.py --start runs/x/sft/model --end runs/x/grpo/model \\
        --task arithmetic --alphas -1 0.5 1 2 --random 2 --output runs/direction.json

A variant's adapter is start + alpha * (end - start), or start + a Gaussian direction whose
norm, tensor by tensor, equals that of (end - start). Given several --end adapters (GRPO
runs from the same start with different seeds), the update is their mean, each end is also
scored on its own, and the cosine between their updates is printed: independent runs whose
updates are mostly noise have cosine near 0, and their mean is about 1/sqrt(n) as long.

Each variant is scored greedily on the task's eval seed by the same function as
`smarttuner eval`; the table gives accuracy and the prompts lost and gained against the
start adapter (paired, same prompts) with the sign test of that split. If random steps lose
as much as the update, the update's held-out loss is what any step that size costs here; if
-1 (the update reversed) loses too, the start adapter sits at a sharp optimum.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from smarttuner.evaluate.harness import AUTOCAST_CHOICES, EvalOptions, evaluate_model_on_task
from smarttuner.evaluate.paired import paired_greedy
from smarttuner.outputs import write_json

WEIGHTS = "adapter_model.safetensors"


def along(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], alpha: float):
    """start + alpha * (end - start), tensor by tensor."""
    return {k: start[k] + alpha * (end[k] - start[k]) for k in start}


def mean_end(start: dict[str, torch.Tensor], ends: list[dict[str, torch.Tensor]]):
    """start + the mean of the updates (end_i - start)."""
    return {k: start[k] + sum(e[k] - start[k] for e in ends) / len(ends) for k in start}


def flat_update(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([(end[k].float() - start[k].float()).flatten() for k in sorted(start)])


def random_step(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], seed: int):
    """start + a Gaussian direction with ||end - start|| per tensor."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for k in sorted(start):
        step = end[k].float() - start[k].float()
        noise = torch.randn(step.shape, generator=generator)
        out[k] = (start[k].float() + noise * (step.norm() / noise.norm())).to(start[k].dtype)
    return out


def evaluate_variant(
    start_dir: Path, weights: dict[str, torch.Tensor], task: str, options: EvalOptions
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        variant = Path(tmp) / "adapter"
        shutil.copytree(start_dir, variant)
        save_file(weights, str(variant / WEIGHTS))
        return evaluate_model_on_task(str(variant), task, options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=Path, required=True, help="adapter before GRPO")
    parser.add_argument(
        "--end", type=Path, nargs="+", required=True, help="the same LoRA after GRPO (1+ runs)"
    )
    parser.add_argument("--task", default="arithmetic")
    parser.add_argument("--alphas", type=float, nargs="*", default=[-1.0, 0.5, 1.0, 2.0])
    parser.add_argument("--random", type=int, default=2, help="random steps (seeds 0..n-1)")
    parser.add_argument("--num-examples", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--eval-seed", type=int, default=123)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument(
        "--autocast",
        default="none",
        choices=AUTOCAST_CHOICES,
        help="as `smarttuner eval --autocast`; bfloat16 scores as a bf16 recipe's pipeline does",
    )
    args = parser.parse_args()
    if args.output.exists():
        raise SystemExit(f"error: {args.output} exists; choose another --output")
    start = load_file(str(args.start / WEIGHTS))
    ends = [load_file(str(path / WEIGHTS)) for path in args.end]
    for path, one in zip(args.end, ends, strict=True):
        if set(start) != set(one) or any(start[k].shape != one[k].shape for k in start):
            raise SystemExit(f"error: --start and {path} are not the same LoRA (tensors differ)")
    end = mean_end(start, ends)
    options = EvalOptions(
        eval_seed=args.eval_seed,
        num_examples=args.num_examples,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        keep_samples=args.num_examples,
        autocast=args.autocast,
    )
    variants = [("alpha 0 (start)", start)]
    if len(ends) > 1:
        variants += [(f"end {i}", one) for i, one in enumerate(ends)]
        updates = [flat_update(start, one) for one in ends]
        for (i, u), (j, v) in itertools.combinations(enumerate(updates), 2):
            cosine = torch.nn.functional.cosine_similarity(u, v, dim=0)
            print(f"cos(update {i}, update {j}) = {cosine:.4f}")
        print("norms of the updates: " + ", ".join(f"{u.norm():.4f}" for u in updates))
    variants += [(f"alpha {a:g}", along(start, end, a)) for a in args.alphas if a != 0]
    variants += [(f"random seed {s}", random_step(start, end, s)) for s in range(args.random)]
    norm = flat_update(start, end).norm()
    print(f"||mean update|| = {norm:.4f} over {len(start)} tensors")
    rows: list[dict[str, Any]] = []
    base: list[bool] = []
    for name, weights in variants:
        result = evaluate_variant(args.start, weights, args.task, options)
        base = base or result["correct"]
        paired = paired_greedy(base, result["correct"])
        row = {"variant": name, **result["metrics"], **paired}
        rows.append(row)
        print(
            f"{name:18s} accuracy {row['accuracy']:.3f}  format {row['format_rate']:.3f}  "
            f"lost {paired['lost']:3d}  gained {paired['gained']:3d}  "
            f"p {paired['sign_test_p']:.3g}",
            flush=True,
        )
    summary = {"start": str(args.start), "end": [str(p) for p in args.end], "rows": rows}
    write_json(args.output, summary)


if __name__ == "__main__":
    main()
