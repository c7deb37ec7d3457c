"""What did each of the recipe's GRPO choices buy? Train GRPO from one start model once with
the recipe as configured and once per variant that changes one choice back, then tabulate.

    python scripts/grpo_ablation.py -c configs/syllogism.yaml --start runs/x/sft/model \\
        --iterations 20 --output runs/ablation [--seed 0] [--variants reference beta0 ...]

Each variant is `smarttuner grpo` on the recipe's GRPO sections (a pipeline recipe's SFT and
probe sections are dropped) with `model.name` = --start, --iterations iterations, one eval at
the end, plus the variant's overrides. All variants share the seed, so their first rollout is
the same; they run one after another, each in its own process, and a variant's CPU minutes
are its process's user + system time. Only the reference evaluates the start too
(eval.baseline), so the start's score is measured once. A variant whose results.json already
exists under OUTPUT is read back, not rerun.

The table (printed, and written to OUTPUT/ablation.md and ablation.json) gives held-out
accuracy (and balanced accuracy for yes/no tasks) after training, the mean training reward
over the first and the last five iterations, the mean share of groups with equal rewards,
the mean clip fraction and KL, and CPU minutes. Paired lost/gained counts against the start
come from scripts/update_direction.py with every variant's model as an --end.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

# name -> (the choice it undoes, overrides); the reference is the recipe as configured.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "reference": ("the recipe as configured", []),
    "loss_grpo": (
        "per-sequence token mean (original GRPO) instead of the recipe's loss aggregation",
        ["grpo.loss_type=grpo"],
    ),
    "loss_dapo": ("token mean over the batch (DAPO)", ["grpo.loss_type=dapo"]),
    "no_std": (
        "advantages not divided by the group std (Dr. GRPO's other change)",
        ["grpo.scale_rewards=none"],
    ),
    "beta0": ("no KL term to the start model (beta 0)", ["grpo.beta=0"]),
    "drop_flat": (
        "groups with equal rewards dropped (DAPO's dynamic sampling, without refilling)",
        ["grpo.skip_zero_std_groups=true"],
    ),
    "refill": (
        "groups with equal rewards dropped and refilled from up to 3 more prompt batches "
        "(DAPO's dynamic sampling)",
        ["grpo.skip_zero_std_groups=true", "grpo.refill_rounds=3"],
    ),
    "symmetric_clip": ("clip range 0.2 / 0.2 instead of clip-higher", ["grpo.epsilon_high=0.2"]),
    "half_lr": ("half the recipe's learning rate", []),  # filled from the recipe
    "double_lr": ("twice the recipe's learning rate", []),
    "frozen": (
        "no learning (lr 1e-12): what the prompts alone do to the training reward",
        ["optim.learning_rate=1e-12"],
    ),
    "curriculum": (
        "easier prompts first: a stage per reasoning-gym level below the top",
        [],  # filled from the task's curriculum
    ),
}


def grpo_recipe(config: Path) -> dict[str, Any]:
    """The recipe's GRPO part: the sections `smarttuner grpo` knows (a pipeline recipe's probe
    and SFT sections dropped)."""
    from smarttuner.config import GRPOConfig

    recipe = yaml.safe_load(config.read_text()) or {}
    return {k: v for k, v in recipe.items() if k in GRPOConfig.model_fields}


def overrides(name: str, recipe: dict[str, Any], stage_examples: int = 25) -> list[str]:
    """The `-s` settings of variant `name`; curriculum: `stage_examples` prompts generated at
    each reasoning-gym level below the top (fewer once answers are balanced)."""
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}; known: {', '.join(VARIANTS)}")
    lr = float(recipe.get("optim", {}).get("learning_rate", 1e-6))
    scaled = {"half_lr": lr / 2, "double_lr": lr * 2}
    if name in scaled:
        return [f"optim.learning_rate={scaled[name]:g}"]
    if name == "curriculum":
        from smarttuner.tasks.curriculum import top_level

        task = recipe.get("task", {}).get("name", "syllogism")
        try:
            levels = range(top_level(task))
        except ValueError as err:
            raise SystemExit(f"variant curriculum: {err}") from None
        stages = [{"level": k, "num_examples": stage_examples} for k in levels]
        return [f"grpo.curriculum={json.dumps(stages)}"]
    return list(VARIANTS[name][1])


def run_variant(
    name: str,
    recipe_file: Path,
    start: str,
    iterations: int,
    seed: int,
    out: Path,
    recipe: dict[str, Any],
    stage_examples: int,
) -> float:
    """Train one variant in its own process; returns its CPU minutes."""
    baseline = "true" if name == "reference" else "false"
    settings = [
        f"model.name={start}",
        f"num_iterations={iterations}",
        f"seed={seed}",
        "eval.every=0",
        f"eval.baseline={baseline}",
        *overrides(name, recipe, stage_examples),
    ]
    command = [
        str(Path(sys.executable).with_name("smarttuner")),
        "grpo",
        "-c",
        str(recipe_file),
        "-o",
        str(out),
        "--overwrite",
    ]
    for item in settings:
        command += ["-s", item]
    print(f"== {name}: {' '.join(command)}", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    (out / "cpu_minutes.json").write_text(json.dumps({"cpu_minutes": cpu / 60}))
    return cpu / 60


def mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(name: str, out: Path) -> dict[str, Any]:
    results = json.loads((out / "results.json").read_text())
    records = [
        json.loads(line)
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    steps = [r for r in records if r.get("phase") == "grpo"]
    rewards = [s["reward_mean"] for s in steps]
    cpu_file = out / "cpu_minutes.json"
    return {
        "variant": name,
        "undoes": VARIANTS[name][0],
        "baseline": results.get("baseline"),
        "final": results["final"],
        "reward_first5": mean(rewards[:5]),
        "reward_last5": mean(rewards[-5:]),
        "zero_std_fraction": mean([s.get("zero_std_fraction", 0.0) for s in steps]),
        "clip_fraction": mean([s.get("clip_fraction", 0.0) for s in steps]),
        "kl": mean([s.get("kl", 0.0) for s in steps]),
        "cpu_minutes": json.loads(cpu_file.read_text())["cpu_minutes"]
        if cpu_file.exists()
        else None,
    }


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    balanced = any("balanced_accuracy" in r["final"] for r in rows)
    head = (
        ["variant", "what it changes", "accuracy"]
        + (["balanced"] if balanced else [])
        + ["train reward, first 5 → last 5", "flat groups", "clip fraction", "KL", "CPU min"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    start = next((r["baseline"] for r in rows if r["baseline"]), None)
    if start:
        cells = ["start (reference's eval at step 0)", "—", fmt(start["accuracy"])]
        cells += [fmt(start.get("balanced_accuracy"))] if balanced else []
        lines.append("| " + " | ".join(cells + ["—"] * 5) + " |")
    for r in rows:
        f = r["final"]
        cells = [r["variant"], r["undoes"], fmt(f["accuracy"])]
        cells += [fmt(f.get("balanced_accuracy"))] if balanced else []
        cells += [
            f"{fmt(r['reward_first5'])} → {fmt(r['reward_last5'])}",
            fmt(r["zero_std_fraction"], ".2f"),
            fmt(r["clip_fraction"], ".4f"),
            fmt(r["kl"], ".4f"),
            fmt(r["cpu_minutes"], ".1f"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", type=Path, required=True, help="recipe YAML")
    parser.add_argument("--start", required=True, help="start model or adapter (the SFT model)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="seed of every variant (sampling)")
    parser.add_argument(
        "--stage-examples", type=int, default=25, help="curriculum: prompts made per level"
    )
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), help="names to run")
    args = parser.parse_args()

    recipe = grpo_recipe(args.config)
    for name in args.variants:
        overrides(name, recipe, args.stage_examples)  # bad names fail before anything runs
    args.output.mkdir(parents=True, exist_ok=True)
    recipe_file = args.output / "grpo_recipe.yaml"
    recipe_file.write_text(yaml.safe_dump(recipe, sort_keys=False))
    rows = []
    for name in args.variants:
        out = args.output / name
        if not (out / "results.json").exists():
            run_variant(
                name,
                recipe_file,
                args.start,
                args.iterations,
                args.seed,
                out,
                recipe,
                args.stage_examples,
            )
        rows.append(summarise(name, out))
        (args.output / "ablation.json").write_text(json.dumps(rows, indent=2))
        (args.output / "ablation.md").write_text(table(rows) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
