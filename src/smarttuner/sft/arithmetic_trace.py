"""A worked trace for `(a op1 b) op2 c`: every product is broken into place values, so a small
model only needs `digit * n` facts (n ≤ 20), appending zeros, and additions of two numbers.

    17 * 19 = 10 * 19 + 7 * 19 = 190 + 133 = 323
    323 * 13 = 300 * 13 + 20 * 13 + 3 * 13 = 3900 + 260 + 39; 3900 + 260 = 4160; 4160 + 39 = 4199

The left factor (the one written first, which in the second step is the intermediate result)
is the one decomposed; a negative left factor is multiplied as a positive one and the sign put
back at the end. Sums and differences of two numbers are written directly.
"""

from __future__ import annotations

from smarttuner.tasks.arithmetic import OPERATORS


def place_values(n: int) -> list[int]:
    """305 -> [300, 5]: the non-zero place-value parts of a non-negative integer, largest first."""
    if n < 0:
        raise ValueError(f"place_values needs a non-negative integer, got {n}")
    digits = str(n)
    parts = [int(d) * 10 ** (len(digits) - i - 1) for i, d in enumerate(digits) if d != "0"]
    return parts or [0]


def product_steps(x: int, y: int) -> str:
    """One sentence computing `x * y` through the place values of `x`, ending in the product."""
    if x < 0:
        return f"{product_steps(-x, y)}, so {x} * {y} = {x * y}"
    parts = place_values(x)
    if len(parts) == 1:
        return f"{x} * {y} = {x * y}"
    terms = [p * y for p in parts]
    text = f"{x} * {y} = " + " + ".join(f"{p} * {y}" for p in parts)
    text += " = " + " + ".join(str(t) for t in terms)
    if len(terms) == 2:
        return f"{text} = {x * y}"
    total = terms[0]
    for term in terms[1:]:
        text += f"; {total} + {term} = {total + term}"
        total += term
    return text


def step(x: int, op: str, y: int) -> str:
    """One operation written out; products get the place-value breakdown."""
    if op == "*":
        return product_steps(x, y)
    return f"{x} {op} {y} = {OPERATORS[op](x, y)}"


def arithmetic_reasoning(a: int, op1: str, b: int, op2: str, c: int) -> tuple[str, int]:
    """The worked trace of `(a op1 b) op2 c` and its value."""
    first = OPERATORS[op1](a, b)
    result = OPERATORS[op2](first, c)
    text = f"First {step(a, op1, b)}. Then {step(first, op2, c)}. So the answer is {result}."
    return text, result
