"""Descriptive names for generated tests the model named `test_1`, `test_clamp_2`, `test_case`.

A test's name is the first thing a reader of a failing run sees. Where the model gave none worth
keeping, the test is named after the case it checks: the branch it takes that the suite's other
tests take least and no earlier test was named after (`test_clamp_when_x_gt_hi`,
`test_merge_when_not_intervals`), else the arguments of the call it checks
(`test_merge_empty_list`, `test_parse_none_raises_type_error`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping, Sequence

from server.actions.quality import branch_owners, condition_of, into_body

# Longest name part taken from code; longer conditions are cut at a word boundary.
MAX_PART_CHARS = 40
# Words that say nothing about the case a test checks.
_FILLER = frozenset({"test", "tests", "case", "cases", "example", "examples", "it", "func"})
_OPERATORS: dict[type, str] = {
    ast.Lt: "lt",
    ast.LtE: "le",
    ast.Gt: "gt",
    ast.GtE: "ge",
    ast.Eq: "eq",
    ast.NotEq: "ne",
    ast.In: "in",
    ast.NotIn: "not_in",
    ast.Is: "is",
    ast.IsNot: "is_not",
}


def is_generic(name: str, target: str) -> bool:
    """True for names that say nothing beyond the target: `test_1`, `test_clamp_2`, `test_case`."""
    words = [w for w in name.lower().split("_") if w]
    own = set(target.lower().split("_"))
    return all(w in _FILLER or w in own or w.isdigit() for w in words)


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", text).lower())
    out = ""
    for w in words:
        if len(out) + len(w) + 1 > MAX_PART_CHARS:
            break
        out = f"{out}_{w}" if out else w
    return out


def _condition(node: ast.expr) -> str:
    """`x > hi and not y` -> `x_gt_hi_and_not_y`: the condition read out as a name."""
    if isinstance(node, ast.Compare):
        parts = [_condition(node.left)]
        for op, right in zip(node.ops, node.comparators, strict=True):
            parts += [_OPERATORS.get(type(op), "op"), _condition(right)]
        return "_".join(p for p in parts if p)
    if isinstance(node, ast.BoolOp):
        return f"_{'and' if isinstance(node.op, ast.And) else 'or'}_".join(_condition(v) for v in node.values)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return f"not_{_condition(node.operand)}"
    if isinstance(node, ast.Call):
        return "_".join(_condition(a) for a in (node.func, *node.args))
    if isinstance(node, ast.Constant) and node.value is None:
        return "none"
    return _slug(ast.unparse(node))


def _arc_part(owner: ast.stmt, dest: int, tree: ast.Module) -> str | None:
    """The arc from a branching statement to `dest` as a name part."""
    into = into_body(owner, dest)
    if into is None or not isinstance(owner, ast.If | ast.While | ast.For | ast.AsyncFor):
        return None
    if isinstance(owner, ast.If):
        cond = _condition(condition_of(tree, owner))
        return f"when_{cond}" if into else f"when_not_{cond}"
    if isinstance(owner, ast.While):
        cond = _condition(condition_of(tree, owner))
        return f"while_{cond}" if into else f"until_not_{cond}"
    seq = _condition(owner.iter)
    return f"with_{seq}" if into else f"through_all_{seq}"


def _arc_parts(arcs: Iterable[tuple[int, int]], tree: ast.Module) -> dict[tuple[int, int], str]:
    """Name parts of the arcs that have one, each worked out once (tests share most arcs)."""
    owners = branch_owners(tree)
    parts = {}
    for a, b in set(arcs):
        owner = owners.get(a)
        part = _arc_part(owner, b, tree) if owner is not None else None
        if part:
            parts[(a, b)] = part
    return parts


def _by_branch(
    name: str, arcs: Mapping[str, set[tuple[int, int]]], parts: Mapping[tuple[int, int], str]
) -> list[str]:
    """Name parts for the test's branches, those the fewest other tests take first (ties: the
    latest line, the innermost decision)."""
    scored = []
    for arc in arcs.get(name, set()):
        if arc in parts:
            takers = sum(arc in theirs for other, theirs in arcs.items() if other != name)
            scored.append((takers, -arc[0], parts[arc]))
    return [part for _, _, part in sorted(scored)]


def _argument(node: ast.expr) -> str:
    if isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict) and not getattr(
        node, "elts", getattr(node, "keys", None)
    ):
        kind = {ast.List: "list", ast.Tuple: "tuple", ast.Set: "set", ast.Dict: "dict"}[type(node)]
        return f"empty_{kind}"
    if isinstance(node, ast.Constant):
        if node.value is None:
            return "none"
        if isinstance(node.value, str):
            return _slug(node.value) or "empty_string"
        if isinstance(node.value, int | float) and not isinstance(node.value, bool):
            return f"minus_{_slug(str(-node.value))}" if node.value < 0 else _slug(str(node.value))
        return _slug(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return f"minus_{_argument(node.operand)}"
    if isinstance(node, ast.Name):
        return _slug(node.id)
    return ""


def _by_call(source: str, target: str) -> str | None:
    """The part for the first call of `target` the test makes: its arguments, or what it raises."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    func = next((n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None)
    if func is None:
        return None
    raises = ""
    for node in ast.walk(func):
        if isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                call = item.context_expr
                if isinstance(call, ast.Call) and ast.unparse(call.func).endswith("raises") and call.args:
                    raises = "raises_" + _slug(ast.unparse(call.args[0]).rsplit(".", 1)[-1])
    short = target.rsplit(".", 1)[-1]
    for node in ast.walk(func):
        if isinstance(node, ast.Call) and ast.unparse(node.func).rsplit(".", 1)[-1] == short:
            args = [_argument(a) for a in node.args] + [
                f"{k.arg}_{_argument(k.value)}" for k in node.keywords if k.arg and _argument(k.value)
            ]
            part = _slug("_".join(a for a in args if a))
            return "_".join(p for p in (part, raises) if p) or None
    return raises or None


def case_name(target: str, module_text: str, arc: tuple[int, int]) -> str | None:
    """The name of a test of one branch arc (`test_clamp_when_x_gt_hi`): what a prompt asking for
    a test of that branch starts the test with."""
    try:
        tree = ast.parse(module_text)
    except SyntaxError:
        return None
    owner = branch_owners(tree).get(arc[0])
    part = _slug(_arc_part(owner, arc[1], tree) or "") if owner is not None else ""
    return f"test_{target.rsplit('.', 1)[-1]}_{part}" if part else None


def descriptive_names(
    tests: Sequence[tuple[str, str]],
    target: str,
    module_text: str,
    arcs: Mapping[str, set[tuple[int, int]]],
) -> dict[str, str]:
    """New names for the generic ones among `tests` ((name, source) pairs): old -> new. Names
    stay unique among the tests; a test with nothing to be named after keeps its name."""
    try:
        tree = ast.parse(module_text)
    except SyntaxError:
        tree = ast.Module(body=[], type_ignores=[])
    short = target.rsplit(".", 1)[-1]
    parts = _arc_parts((arc for taken_by in arcs.values() for arc in taken_by), tree)
    taken = {name for name, _ in tests}
    used: set[str] = set()
    renamed: dict[str, str] = {}
    for name, source in tests:
        if not is_generic(name, short):
            continue
        # A branch no earlier test was named after, else the call it checks.
        branch = next((p for p in _by_branch(name, arcs, parts) if _slug(p) not in used), None)
        part = _slug(branch or _by_call(source, target) or "")
        used.add(part)
        if not part:
            continue
        base = f"test_{short}_{part}"
        new, n = base, 2
        while new in taken:
            new, n = f"{base}_{n}", n + 1
        taken.discard(name)
        taken.add(new)
        renamed[name] = new
    return renamed
