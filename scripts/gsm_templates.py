"""Which gsm_symbolic templates does a model solve? Split eval results by the GSM8K template
each question was drawn from (reasoning-gym instantiates about 100 templates with fresh
numbers), and by how many steps the template's worked solution takes.

    python scripts/gsm_templates.py runs/a_eval.json [runs/b_eval.json ...] \
        [--train runs/x/sft/sft_data.jsonl] [--train-seed 42] [--eval-seed 123]

Each eval JSON is a `smarttuner eval ... --keep-samples -1 -o FILE` result (every greedy
completion kept; with `--compare-to`, its baseline is read as a column too). `--train` counts
how many SFT traces each template had. A question is matched to its template by regenerating
the dataset at the seed the pipeline used (`spread_seed`), so the counts are exact.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path
from statistics import median

from smarttuner.tasks.reasoning_gym import spread_seed
from smarttuner.tasks.splits import normalise_question

TASK = "gsm_symbolic"


def templates_of(seed: int, n: int) -> dict[str, tuple[int, int]]:
    """Normalised question -> (template id, worked-solution steps) for the first `n` entries
    of the dataset at the user seed `seed`."""
    import reasoning_gym

    dataset = reasoning_gym.create_dataset(TASK, size=n, seed=spread_seed(seed))
    out = {}
    for i in range(n):
        entry = dataset[i]
        steps = len(entry["metadata"]["answer_cot"].strip().splitlines()) - 1  # minus `#### N`
        out[normalise_question(entry["question"])] = (dataset.task_indices[i], steps)
    return out


def columns_of(path: Path) -> dict[str, list[dict]]:
    """Label -> kept greedy samples, for the model of an eval JSON and its baseline if any."""
    results = json.loads(path.read_text())
    cols = {}
    for key in ("baseline", "final"):
        samples = results.get("samples", {}).get(key)
        if samples is None:
            continue
        n = results[key]["n"]
        if len(samples) != n:
            raise SystemExit(
                f"error: {path} kept {len(samples)} of {n} {key} samples; rerun the eval "
                "with --keep-samples -1"
            )
        label = results.get("labels", {}).get(key, results["model"])
        cols[label] = samples
    return cols


def per_template(samples: list[dict], lookup: dict[str, tuple[int, int]]) -> Counter[int]:
    """Template id -> right answers among `samples`."""
    right: Counter[int] = Counter()
    for s in samples:
        key = normalise_question(s["question"])
        if key not in lookup:
            raise SystemExit(f"error: eval question not found at the eval seed: {s['question']!r}")
        right[lookup[key][0]] += bool(s["correct"])
    return right


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evals", nargs="+", type=Path)
    parser.add_argument("--train", type=Path, action="append", default=[])
    parser.add_argument("--train-seed", type=int, default=42)
    parser.add_argument("--eval-seed", type=int, default=123)
    args = parser.parse_args()

    columns: dict[str, list[dict]] = {}
    for path in args.evals:
        columns.update(columns_of(path))
    n_eval = max(len(s) for s in columns.values())
    lookup = templates_of(args.eval_seed, n_eval)
    eval_count = Counter(t for t, _ in lookup.values())
    steps_of: dict[int, list[int]] = defaultdict(list)
    for t, steps in lookup.values():
        steps_of[t].append(steps)
    right = {label: per_template(samples, lookup) for label, samples in columns.items()}

    traces: Counter[int] = Counter()
    for path in args.train:
        questions = [json.loads(line)["question"] for line in path.read_text().splitlines()]
        pool = templates_of(args.train_seed, 3 * len(questions) + n_eval + 100)
        for q in questions:
            key = normalise_question(q)
            if key not in pool:
                raise SystemExit(f"error: {path}: question not at train seed {args.train_seed}")
            traces[pool[key][0]] += 1

    labels = list(columns)
    print(f"{n_eval} eval prompts from {len(eval_count)} templates (eval seed {args.eval_seed})")
    for i, label in enumerate(labels):
        r = right[label]
        solved = sorted(r.values(), reverse=True)
        print(
            f"[{i}] {label}: {sum(solved)} right, in {sum(v > 0 for v in solved)} templates; "
            f"the 5 best templates hold {sum(solved[:5])}"
        )
    head = "template  eval  steps  " + "  ".join(f"[{i}]" for i in range(len(labels)))
    print(head + ("  traces" if traces else ""))
    order = sorted(eval_count, key=lambda t: (-max(right[lb][t] for lb in labels), t))
    for t in order:
        cells = "  ".join(f"{right[lb][t]:>3}" for lb in labels)
        extra = f"  {traces[t]:>6}" if traces else ""
        print(f"{t:>8}  {eval_count[t]:>4}  {median(steps_of[t]):>5}  {cells}{extra}")

    print(
        "by worked-solution steps: steps  eval  " + "  ".join(f"[{i}]" for i in range(len(labels)))
    )
    by_steps: dict[int, list[int]] = defaultdict(list)
    for t in eval_count:
        by_steps[int(median(steps_of[t]))].append(t)
    for steps in sorted(by_steps):
        ts = by_steps[steps]
        n = sum(eval_count[t] for t in ts)
        accs = "  ".join(f"{sum(right[lb][t] for t in ts) / n:.2f}" for lb in labels)
        print(f"{steps:>5}  {n:>4}  {accs}")
    if traces:
        solved_any = [t for t in eval_count if any(right[lb][t] for lb in labels)]
        never = [t for t in eval_count if t not in solved_any]
        for name, ts in (("solved by some model", solved_any), ("never solved", never)):
            if ts:
                print(
                    f"traces per template, {name}: median {median(traces[t] for t in ts)} "
                    f"({len(ts)} templates)"
                )


if __name__ == "__main__":
    main()
