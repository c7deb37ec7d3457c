"""A worked syllogism trace: name each statement's form, then check the classical rules in the
order reasoning-gym's generator decides validity, stopping at the first one that fails.

reasoning-gym builds two kinds of question (`metadata["type"]`):
- "syllogism": statement 1 links S and M, statement 2 links M and P, the conclusion links S and
  P (always this figure). Valid iff no rule below is broken.
- "inversion": the conclusion swaps the two terms of one statement. "No A are B" and
  "Some A are B" convert to the same form, "All A are B" only to "Some B are A", and
  "Some A are not B" converts to nothing.
The trace spells this out in a few short sentences, so a small model can learn the procedure
rather than the answer distribution.
"""

from __future__ import annotations

import re

_FORMS = {  # form -> (name used in the trace, universal, negative)
    "all": ("all", True, False),
    "no": ("no", True, True),
    "some": ("some", False, False),
    "some_not": ("some-not", False, True),
}
_STATEMENT = re.compile(r"^(All|No|Some) (.+?) are (not )?(.+)$")


def parse_statement(text: str) -> tuple[str, str, str]:
    """'Some bees are not tigers' -> ('some_not', 'bees', 'tigers')."""
    m = _STATEMENT.match(text.strip().rstrip("?."))
    if m is None:
        raise ValueError(f"not a categorical statement: {text!r}")
    quant, subject, negated, predicate = m.groups()
    form = {"All": "all", "No": "no", "Some": "some_not" if negated else "some"}[quant]
    if negated and form != "some_not":
        raise ValueError(f"not a categorical statement: {text!r}")
    return form, subject, predicate


def _broken_rule(q1: str, q2: str, qc: str) -> str | None:
    """The first classical rule the syllogism S-M, M-P, therefore S-P breaks, or None."""
    u1, n1 = _FORMS[q1][1:]
    u2, n2 = _FORMS[q2][1:]
    uc, nc = _FORMS[qc][1:]
    if n1 and n2:
        return "both statements are negative, and two negatives prove nothing"
    if not u1 and not u2:
        return "both statements are particular, and two particulars prove nothing"
    if uc and not (u1 and u2):
        return "a universal conclusion needs two universal statements"
    if nc and not (n1 or n2):
        return "a negative conclusion needs a negative statement"
    if nc and not n2:
        return "the conclusion says something about all of its last term, statement 2 does not"
    if (n1 or n2) and not nc:
        return "a negative statement allows only a negative conclusion"
    return None


def syllogism_reasoning(premise1: str, premise2: str, conclusion: str) -> tuple[str, bool]:
    """The worked reasoning and whether the conclusion follows."""
    (q1, s1, p1), (q2, s2, p2), (qc, sc, pc) = map(
        parse_statement, (premise1, premise2, conclusion)
    )
    name = {k: v[0] for k, v in _FORMS.items()}
    for number, (q, s, p) in ((1, (q1, s1, p1)), (2, (q2, s2, p2))):
        if {sc, pc} == {s, p} and (sc, pc) == (p, s):
            follows = q in ("no", "some") and qc == q or q == "all" and qc == "some"
            rule = {
                "no": "'no' turns around into 'no'",
                "some": "'some' turns around into 'some'",
                "all": "'all' turns around only into 'some'",
                "some_not": "'some-not' cannot be turned around",
            }[q]
            return (
                f"The conclusion swaps the terms of statement {number}, a '{name[q]}' statement, "
                f"into a '{name[qc]}' statement. {rule.capitalize()}.",
                follows,
            )
    broken = _broken_rule(q1, q2, qc)
    reasoning = (
        f"Statement 1 is '{name[q1]}', statement 2 is '{name[q2]}', the conclusion is "
        f"'{name[qc]}', linking {sc} and {pc} through {p1}. "
    )
    reasoning += f"It fails: {broken}." if broken else "Every rule holds."
    return reasoning, broken is None
