"""A worked trace for `(a op1 b) op2 c`: every product is broken into place values, so a small
model only needs `digit * n` facts (n ≤ 20), appending zeros, and additions of two numbers.

    17 * 19 = 10 * 19 + 7 * 19 = 190 + 133 = 323
    323 * 13 = 300 * 13 + 20 * 13 + 3 * 13 = 3900 + 260 + 39; 3900 + 260 = 4160; 4160 + 39 = 4199

The left factor (the one written first, which in the second step is the intermediate result)
is the one decomposed; a negative left factor is multiplied as a positive one and the sign put
back at the end. Sums and differences add or take away the right operand one place value at a
time, and a difference whose result is negative is worked as the positive one:

    45 + 17 = 45 + 10 + 7; 45 + 10 = 55; 55 + 7 = 62
    15 - 18 = -(18 - 15); 18 - 15 = 18 - 10 - 5; 18 - 10 = 8; 8 - 5 = 3, so 15 - 18 = -3

(With only products broken down, the first wrong step in the model's answers was most often
a small subtraction such as "18 - 10 = 7": docs/RESULTS.md.)
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
    return text + _running(terms[0], "+", terms[1:])


def _running(total: int, op: str, terms: list[int]) -> str:
    """ "; 3900 + 260 = 4160; 4160 + 39 = 4199": apply `op` with each term in turn."""
    text = ""
    for term in terms:
        after = OPERATORS[op](total, term)
        text += f"; {total} {op} {term} = {after}"
        total = after
    return text


def sum_steps(x: int, op: str, y: int) -> str:
    """`x + y` or `x - y` (y ≥ 0) adding or taking away the place values of `y` one at a time;
    a difference that comes out negative is worked as `-(y - x)`."""
    if op == "-" and 0 <= x < y:
        return f"{x} - {y} = -({y} - {x}); {sum_steps(y, '-', x)}, so {x} - {y} = {x - y}"
    parts = place_values(y)
    if len(parts) == 1:
        return f"{x} {op} {y} = {OPERATORS[op](x, y)}"
    return f"{x} {op} {y} = {x} " + " ".join(f"{op} {p}" for p in parts) + _running(x, op, parts)


def step(x: int, op: str, y: int) -> str:
    """One operation written out through place values (products, sums and differences)."""
    if op == "*":
        return product_steps(x, y)
    if y < 0:  # the task's operands are positive; keep any other input plainly correct
        return f"{x} {op} {y} = {OPERATORS[op](x, y)}"
    return sum_steps(x, op, y)


def arithmetic_reasoning(a: int, op1: str, b: int, op2: str, c: int) -> tuple[str, int]:
    """The worked trace of `(a op1 b) op2 c` and its value."""
    first = OPERATORS[op1](a, b)
    result = OPERATORS[op2](first, c)
    text = f"First {step(a, op1, b)}. Then {step(first, op2, c)}. So the answer is {result}."
    return text, result
