"""Where did a change in accuracy come from: answers made parsable, or answers made right?

    python scripts/answer_transitions.py runs/paired_eval.json

Reads a `smarttuner eval --model AFTER --compare-to BEFORE --keep-samples -1 -o FILE` result
and sorts every eval prompt by its greedy answer before and after into one of three states —
*no answer* (format broken: nothing parsable in <answer>), *wrong*, *right* — and prints the
3 x 3 table of moves between them, with the prompts that moved in each direction. A model
that fixes the format of answers it then gets wrong shows up as "no answer -> wrong", and
does not raise accuracy.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

STATES = ("no answer", "wrong", "right")


def state(sample: dict) -> str:
    if not sample.get("format_ok", True):
        return "no answer"
    return "right" if sample["correct"] else "wrong"


def transitions(before: list[dict], after: list[dict]) -> Counter:
    """(state before, state after) -> prompts, over prompts paired by position and question."""
    if len(before) != len(after):
        raise ValueError(f"{len(before)} samples before but {len(after)} after")
    for b, a in zip(before, after, strict=True):
        if b.get("question") != a.get("question"):
            raise ValueError("before and after samples are not the same prompts in one order")
    return Counter((state(b), state(a)) for b, a in zip(before, after, strict=True))


def read_pair(path: Path) -> tuple[list[dict], list[dict]]:
    results = json.loads(path.read_text())
    samples = results.get("samples", {})
    if "baseline" not in samples or "final" not in samples:
        raise SystemExit(f"error: {path} is not a --compare-to result (no baseline samples)")
    for key in ("baseline", "final"):
        if len(samples[key]) != results[key]["n"]:
            raise SystemExit(
                f"error: {path} kept {len(samples[key])} of {results[key]['n']} {key} samples; "
                "rerun the eval with --keep-samples -1"
            )
    return samples["baseline"], samples["final"]


def table(counts: Counter) -> str:
    width = max(len(s) for s in STATES) + 2
    lines = ["before \\ after".ljust(width + 4) + "".join(s.rjust(width) for s in STATES)]
    for b in STATES:
        row = "".join(str(counts.get((b, a), 0)).rjust(width) for a in STATES)
        lines.append(b.ljust(width + 4) + row)
    up = sum(n for (b, a), n in counts.items() if STATES.index(a) > STATES.index(b))
    down = sum(n for (b, a), n in counts.items() if STATES.index(a) < STATES.index(b))
    lines.append(
        f"moved up: {up} prompts, down: {down}, unchanged: {sum(counts.values()) - up - down}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_json", type=Path)
    args = parser.parse_args()
    before, after = read_pair(args.eval_json)
    try:
        counts = transitions(before, after)
    except ValueError as error:
        raise SystemExit(f"error: {args.eval_json}: {error}") from None
    print(table(counts))


if __name__ == "__main__":
    main()
