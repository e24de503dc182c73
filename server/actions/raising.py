"""Inputs that reach a raise: a generated test that expected an exception its call does not raise,
with the call's literal arguments varied until one variant raises it.

The model aims such a test at an error branch but guesses inputs that miss it: for rsa's
`inverse(x, n)`, which raises when x and n share a factor, it wrote `inverse(143, 2)`, `(143, 3)`,
`(143, 4)`, `(143, 5)` (143 = 11 * 13 shares none), so the branch stayed untested. A small search
over neighbouring literals (0, 1, -1, the call's other arguments, one more, one less, twice, an
empty string) usually finds inputs that do reach it (`inverse(0, 2)`); the tests decide which,
one sandbox run for all variants. No variant is a guess at what the code should do: each is kept
only because the code does raise there.
"""

from __future__ import annotations

import ast

from server.actions.pin import lone_test_function, raises_block
from server.actions.reach import literal_node, replacements

# Variants of one test tried in one sandbox run: each literal argument changed alone first.
MAX_VARIANTS = 24


def _raised_call(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.Call | None:
    """The call inside the test's one top-level `with pytest.raises(...):` block of one expression.

    Checks of the raised exception that follow (`with pytest.raises(E) as info:`, then `assert
    str(info.value) == ...`) are taken out of `fn`: their message is the model's guess for the
    inputs it chose, and the other inputs raise with their own."""
    block = raises_block(fn)
    if block is None:
        return None
    inside = block.body[0]
    if not isinstance(inside, ast.Expr) or not isinstance(inside.value, ast.Call):
        return None
    bound = block.items[0].optional_vars
    if isinstance(bound, ast.Name):
        block.items[0].optional_vars = None
        fn.body = [
            stmt
            for stmt in fn.body
            if not any(isinstance(n, ast.Name) and n.id == bound.id for n in ast.walk(stmt)) or stmt is block
        ]
    return inside.value


def raising_variants(source: str, function: str) -> list[str]:
    """`source` (one test function) with the literal arguments of its `pytest.raises` block's call
    to `function` varied, one argument at a time; [] when the test has no such block."""
    fn = lone_test_function(source)
    call = _raised_call(fn) if fn is not None else None
    if fn is None or call is None or ast.unparse(call.func).rsplit(".", 1)[-1] != function:
        return []
    out: list[str] = []
    original = list(call.args)
    for at in range(len(original)):
        for value in replacements(original, at, other_types=False):
            call.args = [*original[:at], literal_node(value), *original[at + 1 :]]
            out.append(ast.unparse(fn) + "\n")
    return out[:MAX_VARIANTS]


__all__ = ["MAX_VARIANTS", "raising_variants"]
