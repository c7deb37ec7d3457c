"""A worked trace for `(a op1 b) op2 c` in which every step is a small fact: the times table
with zeros appended, a one-digit sum or difference in the units column, or adding round numbers.

    17 * 19 = 17 * 10 + 17 * 9; 17 * 9 = 10 * 9 + 7 * 9 = 90 + 63 = 153;
        so 17 * 19 = 170 + 153 = 323
    45 + 17 = 45 + 10 + 7; 45 + 10 = 55; 55 + 7 = 50 + 5 + 7 = 50 + 12 = 62
    29 - 8: 9 >= 8, so 29 - 8 = 20 + 9 - 8 = 20 + 1 = 21      (units compared: no borrow)
    62 - 5: 2 < 5, so 62 - 5 = 50 + 10 - 5 + 2 = 50 + 5 + 2 = 50 + 7 = 57   (a ten borrowed)
    15 - 18 = -(18 - 15); ...                                 (a negative difference)
    -8 + 10 = 10 - 8; ...    -14 - 19 = -(14 + 19); ...       (no step starts negative)

A negative left factor is multiplied as a positive one and the sign put back at the end.
Why these steps: the first wrong step in the model's answers was, most often, a one-digit
times-teen product ("8 * 19 = 142"), a units-column slip ("16 - 8 = 9", "29 - 8 = 22") or a
sum starting from a negative number ("-8 + 10 = 8") — counted on seed-7 prompts, not the
eval seed (docs/RESULTS.md). With those fixed, half the first wrong steps left were in the
units column of differences: a ten borrowed when none was needed (`34 - 3 = 30 + 14 - 3`) or a
wrong teen-minus-digit fact (`11 - 7 = 5`); so the borrow is decided by a written comparison
of the units digits and a borrowed ten is spent as `10 - d`, never as a teen minus a digit.
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
    """One sentence computing `x * y`, ending in the product. A teen `y = 10 + u` is split
    first (`x * 10 + x * u`); `x * u`, or `x * y` for any other `y`, goes through the place
    values of `x`. No step needs more than the times table, appending zeros and additions."""
    if x < 0:
        return f"{product_steps(-x, y)}, so {x} * {y} = {x * y}"
    if not 11 <= y <= 19 or str(x).rstrip("0") == "1":
        return _place_value_product(x, y)  # also 1, 10, 100 times a teen: append zeros
    units = y - 10
    split = f"{x} * {y} = {x} * 10 + {x} * {units}"
    total = f"{x * 10} + {x * units} = {x * y}"
    if len(place_values(x)) == 1 or units == 1:
        return f"{split} = {total}"
    return f"{split}; {_place_value_product(x, units)}; so {x} * {y} = {total}"


def _place_value_product(x: int, y: int) -> str:
    """ "17 * 5 = 10 * 5 + 7 * 5 = 50 + 35 = 85" (x ≥ 0)."""
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
    """`x + y` or `x - y` (y ≥ 0) with non-negative numbers only: a negative `x` is turned
    round (`-8 + 10 = 10 - 8`, `-14 - 19 = -(14 + 19)`) and a difference that comes out
    negative is worked as `-(y - x)`. The tens of `y` go first, then its units digit in the
    units column (`units_step`)."""
    if x < 0:
        if op == "+":
            return f"{x} + {y} = {y} - {-x}; {sum_steps(y, '-', -x)}"
        return f"{x} - {y} = -({-x} + {y}); {sum_steps(-x, '+', y)}, so {x} - {y} = {x - y}"
    if op == "-" and x < y:
        return f"{x} - {y} = -({y} - {x}); {sum_steps(y, '-', x)}, so {x} - {y} = {x - y}"
    tens, units = y - y % 10, y % 10
    if not tens or not units:
        return units_step(x, op, y) if units else f"{x} {op} {y} = {OPERATORS[op](x, y)}"
    after = OPERATORS[op](x, tens)
    return f"{x} {op} {y} = {x} {op} {tens} {op} {units}; {x} {op} {tens} = {after}; " + (
        units_step(after, op, units)
    )


def units_step(x: int, op: str, digit: int) -> str:
    """`x ± digit` (x ≥ 0, and x ≥ digit for a difference) through the units column:
    `55 + 7 = 50 + 5 + 7 = 50 + 12 = 62`; a difference first compares the units digits, then
    either subtracts them or borrows a ten and subtracts from it (`units_difference`).
    A one-digit `x` is a plain fact."""
    result = OPERATORS[op](x, digit)
    units = x % 10
    if x < 10 or not digit or (op == "+" and not units):
        return f"{x} {op} {digit} = {result}"
    if op == "-":
        return units_difference(x, digit)
    rest = x - units
    return f"{x} + {digit} = {rest} + {units} + {digit} = {rest} + {units + digit} = {result}"


def units_difference(x: int, digit: int) -> str:
    """`x - digit` (x ≥ 10, 1 ≤ digit ≤ 9), the borrow decided by comparing units digits:
    `29 - 8: 9 >= 8, so 29 - 8 = 20 + 9 - 8 = 20 + 1 = 21`, and with a ten borrowed the digit
    comes off the ten: `62 - 5: 2 < 5, so 62 - 5 = 50 + 10 - 5 + 2 = 50 + 5 + 2 = 50 + 7 = 57`.
    The facts left are `10 - d`, one-digit sums below ten and one-digit differences."""
    head = f"{x} - {digit}"
    units, rest = x % 10, x - x % 10
    if units >= digit:
        compare = f"{units} >= {digit}"
        chain = [f"{units} - {digit}", f"{units - digit}"]
    else:
        compare, rest = f"{units} < {digit}", rest - 10
        after = f" + {units}" if units else ""
        chain = [f"10 - {digit}{after}", f"{10 - digit}{after}", f"{10 - digit + units}"]
    sides = [head] + [f"{rest} + {c}" if rest else c for c in chain] + [str(x - digit)]
    sides = [side for i, side in enumerate(sides) if i == 0 or side != sides[i - 1]]
    if len(sides) == 2:  # 10 - 7: a fact of its own
        return " = ".join(sides)
    return f"{head}: {compare}, so " + " = ".join(sides)


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
