"""Where do a model's wrong answers first go wrong? Tabulate the first false equation of every
wrong greedy completion in a `smarttuner eval --keep-samples -1 --output FILE` result.

    python scripts/first_wrong_step.py runs/x/eval.json [--examples 3]

Each first false link is grouped by the shape of its left side, numbers written as
d (one digit), t (10–90 round), dd (two digits), T (round, ≥ 100), D (other, ≥ 100):
`8 * 19 = 142` is `d * dd`. Wrong answers whose every equation holds are counted as
"all steps true" (a sign dropped, a wrong copy into the answer, a missing step).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from smarttuner.rewards.equations import links, reasoning_text


def shape(expression: str) -> str:
    def size(match: re.Match[str]) -> str:
        n = int(match.group(0))
        if n < 10:
            return "d"
        if n < 100:
            return "t" if n % 10 == 0 else "dd"
        return "T" if n % 10 == 0 else "D"

    return re.sub(r"\d+", size, expression.replace(",", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", type=Path, help="JSON written by smarttuner eval --output")
    parser.add_argument("--examples", type=int, default=3, help="false steps shown per shape")
    args = parser.parse_args()
    samples = json.loads(args.result.read_text())["samples"]["final"]
    wrong = [s for s in samples if not s["correct"]]
    counts: Counter[str] = Counter()
    shown: defaultdict[str, list[str]] = defaultdict(list)
    for sample in wrong:
        first = next(
            (link for link in links(reasoning_text(sample["completion"])) if not link[2]), None
        )
        key = shape(first[0]) if first else "all steps true"
        counts[key] += 1
        shown[key].append(f"{first[0]} = {first[1]}" if first else sample["question"])
    print(f"{len(wrong)} wrong of {len(samples)} completions kept")
    for key, n in counts.most_common():
        print(f"{n:5d}  {key:24s}  " + " | ".join(shown[key][: args.examples]))


if __name__ == "__main__":
    main()
