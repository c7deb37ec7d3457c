"""Which GRPO groups carry the learning signal? Read a run's completions.jsonl and sort each
group of G samples of one prompt by how its rewards differ.

    python scripts/group_anatomy.py runs/x/grpo/completions.jsonl --group-size 8

A group is *flat* when its rewards are all equal (its advantages are 0), *mixed* when some
samples are right by `--component` (its raw value at least `--right-at`; for the graded
`correctness` reward 1.0 is exact) and some are not, *all right* or *none right* when the
rewards differ for other reasons (a process reward such as true_equations). For each kind:
the share of groups and the share of the summed |advantage|, over the whole run and by
thirds of its iterations. If "all right" groups carried much of the advantage, a group's
std would be amplifying small differences in a secondary reward.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from smarttuner.report.build import read_completions

KINDS = ("flat", "mixed", "all right", "none right")


def groups_of(rows: list[dict], size: int) -> list[list[dict]]:
    """Consecutive runs of `size` samples within each step (the trainer writes them in order)."""
    by_step: dict[int, list[dict]] = {}
    for row in rows:
        by_step.setdefault(row["step"], []).append(row)
    out = []
    for step in sorted(by_step):
        samples = by_step[step]
        if len(samples) % size:
            raise SystemExit(f"error: step {step} has {len(samples)} samples, not groups of {size}")
        out += [samples[i : i + size] for i in range(0, len(samples), size)]
    return out


def kind_of(group: list[dict], component: str, right_at: float) -> str:
    if max(r["reward"] for r in group) == min(r["reward"] for r in group):
        return "flat"
    right = [(r["components"].get(component) or 0.0) >= right_at for r in group]
    if all(right):
        return "all right"
    return "mixed" if any(right) else "none right"


def anatomy(groups: list[list[dict]], component: str, right_at: float) -> dict[str, dict]:
    count: Counter[str] = Counter()
    weight: Counter[str] = Counter()
    for group in groups:
        kind = kind_of(group, component, right_at)
        count[kind] += 1
        weight[kind] += sum(abs(r["advantage"]) for r in group)
    total = sum(weight.values()) or 1.0
    return {
        k: {"groups": count[k] / max(len(groups), 1), "abs_advantage": weight[k] / total}
        for k in KINDS
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("completions", type=Path)
    parser.add_argument("--group-size", type=int, required=True, help="grpo.num_generations")
    parser.add_argument("--component", default="correctness")
    parser.add_argument("--right-at", type=float, default=1.0)
    args = parser.parse_args()
    if not args.completions.is_file():
        raise SystemExit(f"error: {args.completions} does not exist")
    rows = read_completions(args.completions)
    groups = groups_of(rows, args.group_size)
    if not groups:
        raise SystemExit(f"error: {args.completions} holds no completions")
    if not any(args.component in r["components"] for r in rows):
        raise SystemExit(f"error: no reward named {args.component!r} in {args.completions}")
    steps = sorted({g[0]["step"] for g in groups})
    thirds = [steps[i * len(steps) // 3 : (i + 1) * len(steps) // 3] for i in range(3)]
    parts = [("all", groups)] + [
        (f"steps {t[0]}-{t[-1]}", [g for g in groups if g[0]["step"] in set(t)])
        for t in thirds
        if t
    ]
    print(f"{len(groups)} groups of {args.group_size} over {len(steps)} steps")
    print("share of groups / of summed |advantage|")
    print(f"{'':14s}" + "".join(f"{k:>16s}" for k in KINDS))
    for name, part in parts:
        table = anatomy(part, args.component, args.right_at)
        cells = [f"{table[k]['groups']:.2f} / {table[k]['abs_advantage']:.2f}" for k in KINDS]
        print(f"{name:14s}" + "".join(f"{c:>16s}" for c in cells))


if __name__ == "__main__":
    main()
