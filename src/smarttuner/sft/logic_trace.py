"""A worked trace for reasoning-gym's propositional_logic: conjunction introduction.

The dataset asks for *a* correct conclusion of its premises and grades by truth table: any
conclusion the premises entail scores 1, unless it is trivial (a bare variable or a
tautology: 0.25). Two given premises always entail their conjunction, so the trace names two
premises and joins them with ∧ — a real inference rule, and a conclusion the scorer credits in
full whenever the pair is not a tautology. The pair is the first one (in premise order) whose
conjunction is not a tautology, checked here by truth table with the dataset's own parser; a
premise may be joined with itself (`(P ∧ P)` is not trivial while `P` is). When every premise
is a tautology, only tautologies follow: the trace says so and concludes one (0.25, the most
any answer can score on such an item).
"""

from __future__ import annotations

import itertools


def _tautology(formula: str, variables: list[str]) -> bool:
    from reasoning_gym.logic.propositional_logic import Expression

    expr = Expression.from_string(formula)
    return all(
        expr.evaluate(dict(zip(variables, values, strict=True)))
        for values in itertools.product([True, False], repeat=len(variables))
    )


def conjunction(left: str, right: str) -> str:
    """`(left ∧ right)`; premises are atoms, negations or already parenthesised."""
    return f"({left} ∧ {right})"


def logic_reasoning(premises: list[str], variables: list[str]) -> tuple[str, str]:
    """(reasoning, conclusion) for these premises (at least one)."""
    if not premises:
        raise ValueError("propositional_logic item without premises")
    numbered = list(enumerate(premises, start=1))
    pairs = [*itertools.combinations(numbered, 2), *((p, p) for p in numbered)]
    for (i, left), (j, right) in pairs:
        conclusion = conjunction(left, right)
        if not _tautology(conclusion, variables):
            given = f"Premise {i} gives {left}" + (
                f" and premise {j} gives {right}. Both are" if j != i else ". It is"
            )
            return f"{given} given as true, so the conjunction follows: {conclusion}.", conclusion
    conclusion = conjunction(premises[0], premises[1 % len(premises)])  # = the first pair's
    reasoning = (
        "Every premise is true under every assignment, so only tautologies follow, "
        f"such as {conclusion}."
    )
    return reasoning, conclusion
