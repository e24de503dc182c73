"""Scores of one completion against its target, and paired statistics between configurations."""

from __future__ import annotations

import math
import re
from collections import Counter

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Python keywords are not identifiers a model must know from the repository: leaving them out of
# identifier F1 keeps `return x` vs `return y` from scoring half right.
KEYWORDS = frozenset(
    [
        "False",
        "None",
        "True",
        "and",
        "as",
        "assert",
        "async",
        "await",
        "break",
        "class",
        "continue",
        "def",
        "del",
        "elif",
        "else",
        "except",
        "finally",
        "for",
        "from",
        "global",
        "if",
        "import",
        "in",
        "is",
        "lambda",
        "nonlocal",
        "not",
        "or",
        "pass",
        "raise",
        "return",
        "try",
        "while",
        "with",
        "yield",
    ]
)


def normalize(text: str) -> str:
    """Trailing spaces of each line and blank lines at either end do not count."""
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n")).strip()


def exact_match(prediction: str, target: str) -> bool:
    return normalize(prediction) == normalize(target)


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein(a, b) / max(len): 1.0 is identical, on normalized text."""
    a, b = normalize(a), normalize(b)
    if a == b:
        return 1.0
    if not a or not b:
        return 0.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def identifiers(text: str) -> Counter[str]:
    return Counter(m.group(0) for m in IDENT.finditer(text) if m.group(0) not in KEYWORDS)


def identifier_f1(prediction: str, target: str) -> float:
    """F1 of the identifier multisets (CrossCodeEval's identifier match): did it use the right names?

    A target without identifiers scores 1.0 when the prediction has none either.
    """
    want, got = identifiers(target), identifiers(prediction)
    if not want and not got:
        return 1.0
    common = sum((want & got).values())
    if not common:
        return 0.0
    precision, recall = common / sum(got.values()), common / sum(want.values())
    return 2 * precision * recall / (precision + recall)


def sign_test(only_a: int, only_b: int) -> float:
    """Two-sided exact sign test p-value for `only_a` vs `only_b` discordant pairs (1.0 when none)."""
    n, k = only_a + only_b, min(only_a, only_b)
    if not n:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)
