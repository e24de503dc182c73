"""What a test suite would catch: branch coverage and mutation score of one function.

A test that passes proves little; a test that fails when the code is wrong is the point. Both
measures run in the sandbox: coverage.py records the branch arcs each test executes (the
sandbox's runner switches coverage contexts per test), and the suite runs once against each
single-line mutant of the function made by a small built-in mutator (comparison operators,
off-by-one constants, boolean operators, arithmetic, return values). A mutant is killed when
any test fails against it. The same mutator supplies Fix-this's cheap boundary candidates.
"""

from __future__ import annotations

import ast
import builtins
import collections.abc
import copy
import logging
import numbers
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from coverage.parser import PythonParser

from server.actions.sandbox import RunResult

log = logging.getLogger(__name__)

# Mutants run per measurement (one sandbox run each, ~1 s): enough to tell a suite that checks
# values from one that only calls the function, cheap next to a model generation.
MAX_MUTANTS = 12
# Characters of an expression shown where a description must say which of a line's two
# identical changes it is: enough to recognise it, short enough for one line per candidate.
MAX_SEGMENT_SHOWN = 40

_COMPARE_SWAPS: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Lt: (ast.LtE, ast.Gt),
    ast.LtE: (ast.Lt, ast.GtE),
    ast.Gt: (ast.GtE, ast.Lt),
    ast.GtE: (ast.Gt, ast.LtE),
    ast.Eq: (ast.NotEq,),
    ast.NotEq: (ast.Eq,),
    ast.In: (ast.NotIn,),
    ast.NotIn: (ast.In,),
    ast.Is: (ast.IsNot,),
    ast.IsNot: (ast.Is,),
}
# Fix-this's boundary candidates try every other operator of a comparison's family: the bug may
# be any of them, while a mutant needs only one plausible change.
_COMPARE_REPAIRS: dict[type[ast.cmpop], tuple[type[ast.cmpop], ...]] = {
    ast.Lt: (ast.LtE, ast.Gt, ast.GtE),
    ast.LtE: (ast.Lt, ast.GtE, ast.Gt),
    ast.Gt: (ast.GtE, ast.Lt, ast.LtE),
    ast.GtE: (ast.Gt, ast.LtE, ast.Lt),
    **{op: swaps for op, swaps in _COMPARE_SWAPS.items() if op not in (ast.Lt, ast.LtE, ast.Gt, ast.GtE)},
}
_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.FloorDiv,
    ast.FloorDiv: ast.Mult,
    ast.Div: ast.Mult,
    ast.Mod: ast.FloorDiv,
}
# Fix this's arithmetic repairs: every operator a slip could have come from, not just one.
_BINOP_REPAIRS: dict[type[ast.operator], tuple[type[ast.operator], ...]] = {
    ast.Add: (ast.Sub,),
    ast.Sub: (ast.Add,),
    ast.Mult: (ast.FloorDiv, ast.Div),
    ast.FloorDiv: (ast.Mult, ast.Div, ast.Mod),
    ast.Div: (ast.Mult, ast.FloorDiv),
    ast.Mod: (ast.FloorDiv,),
}
_OP_TEXT = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.FloorDiv: "//",
    ast.Div: "/",
    ast.Mod: "%",
    ast.And: "and",
    ast.Or: "or",
}


# Names tried for a return value that went missing (Fix this's repair of `return`).
MAX_RETURN_NAMES = 3
# Constants tried for a lost return value, from what the function's other returns give.
MAX_RETURN_CONSTANTS = 2
# Repairs of one line, most likely first: boundaries are the commonest single-line bugs.
# A negated return value comes late: it is tried on every returned call, most of which are right.
REPAIR_ORDER = ("comparison", "constant", "negation", "boolean", "arithmetic", "truth", "return")


@dataclass(frozen=True)
class Mutant:
    """The module text with one line of the function changed (line 1-based)."""

    line: int
    kind: str  # comparison | constant | boolean | arithmetic | return | negation | truth (repairs)
    description: str  # "`<` -> `<=`"
    text: str
    segment: str = ""  # the original text of the changed node
    column: int = 0  # where that text starts on its line (bytes)


def _negative_int(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) is int
    )


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line.encode("utf-8")))
    return offsets


def _variants(node: ast.AST, repair: bool = False) -> Iterator[tuple[str, str, ast.AST]]:
    """(kind, description, replacement node) for each single change of `node` itself."""
    if isinstance(node, ast.Compare):
        swaps = _COMPARE_REPAIRS if repair else _COMPARE_SWAPS
        for i, op in enumerate(node.ops):
            for new in swaps.get(type(op), ()):
                ops = list(node.ops)
                ops[i] = new()
                desc = f"`{_OP_TEXT[type(op)]}` -> `{_OP_TEXT[new]}`"
                yield "comparison", desc, ast.Compare(node.left, ops, node.comparators)
    elif isinstance(node, ast.Constant) and type(node.value) is int:
        for delta in (1, -1):
            yield "constant", f"`{node.value}` -> `{node.value + delta}`", ast.Constant(node.value + delta)
    elif repair and _negative_int(node):
        # `-1` is `-(1)` to ast: repaired as the number it reads as (`-1` -> `0`, not `-0`).
        assert isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant)
        number = -int(node.operand.value)  # type: ignore[arg-type]
        for other in (number + 1, number - 1):
            yield "constant", f"`{number}` -> `{other}`", ast.Constant(other)
    elif isinstance(node, ast.BoolOp):
        new_op: ast.boolop = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        desc = f"`{_OP_TEXT[type(node.op)]}` -> `{_OP_TEXT[type(new_op)]}`"
        yield "boolean", desc, ast.BoolOp(new_op, node.values)
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
        arith: tuple[type[ast.operator], ...] = (
            _BINOP_REPAIRS[type(node.op)] if repair else (_BINOP_SWAPS[type(node.op)],)
        )
        for op_type in arith:
            desc = f"`{_OP_TEXT[type(node.op)]}` -> `{_OP_TEXT[op_type]}`"
            yield "arithmetic", desc, ast.BinOp(node.left, op_type(), node.right)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "negation", "`not` removed", node.operand
    elif isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield "return", f"`{node.value}` -> `{not node.value}`", ast.Constant(not node.value)


def mutants(
    text: str, first_line: int, last_line: int, *, lines: set[int] | None = None, repair: bool = False
) -> list[Mutant]:
    """Every single-node mutant on single-line expressions of lines first..last (1-based).

    `lines` restricts to those lines. The replaced segment is the node's own text, so the rest
    of the line (comments, spacing) stays; only compiling mutants different from the original
    are returned, in line order (`repair`: the wider set Fix this tries: every comparison of a
    family, conditions negated, no "returns None"; comparisons first on each line). Every swap
    stays within one precedence level (`<` for `<=`, `+` for `-`, `and` for `or`), so no
    parentheses are needed around the new segment.
    """
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    offsets = _line_offsets(text)
    data = text.encode("utf-8")
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    conditions = {id(n.test) for n in ast.walk(tree) if isinstance(n, ast.If | ast.While | ast.IfExp)}
    # A comprehension's filter too: the mutator removes its `not` as it does an `if`'s.
    conditions |= {id(c) for n in ast.walk(tree) if isinstance(n, ast.comprehension) for c in n.ifs}
    # And each operand of `and`/`or`, wherever the test is (jsonpickle's `is_sequence_subclass`,
    # actions-27: `return (... and not is_sequence(obj))` lost its `not` over several lines).
    conditions |= {id(v) for n in ast.walk(tree) if isinstance(n, ast.BoolOp) for v in n.values}
    bare_returns = _bare_returns(tree) if repair else {}
    returned_constants = _returned_constants(tree) if repair else {}
    # Repairs change `-1` as a whole; its `1` alone would give `-0` and `-2` again.
    negated = {
        id(n.operand) for n in ast.walk(tree) if repair and isinstance(n, ast.UnaryOp) and _negative_int(n)
    }
    seen: set[str] = set()
    out: list[Mutant] = []
    for node in ast.walk(tree):
        lineno = getattr(node, "lineno", None)
        if lineno is None or id(node) in docstrings or getattr(node, "end_lineno", None) != lineno:
            continue
        if id(node) in negated:
            continue
        if not first_line <= lineno <= last_line or (lines is not None and lineno not in lines):
            continue
        if not isinstance(node, ast.expr | ast.stmt):
            continue
        start = offsets[lineno - 1] + node.col_offset
        end = offsets[lineno - 1] + (node.end_col_offset or node.col_offset)
        variants = list(_variants(node, repair))
        if (
            repair
            and isinstance(node, ast.expr)
            and id(node) in conditions
            and not isinstance(node, ast.UnaryOp)
        ):
            variants.append(("negation", "condition negated", ast.UnaryOp(ast.Not(), node)))
        elif (
            repair
            and isinstance(node, ast.Return)
            and isinstance(node.value, ast.Call | ast.Compare | ast.BoolOp)
        ):
            # A truth value returned the wrong way round (`return any(...)` for `return not
            # any(...)`): the inverse of the mutator's "`not` removed" where no `if` is involved.
            flipped = ast.Return(ast.UnaryOp(ast.Not(), node.value))
            variants.append(("truth", "return value negated", flipped))
        elif repair and isinstance(node, ast.Return) and (node.value is None or _is_none(node.value)):
            # A lost return value: the function's latest assignments (and arguments) first.
            for name in bare_returns.get(id(node), [])[:MAX_RETURN_NAMES]:
                variants.append(("return", f"returns `{name}`", ast.Return(ast.Name(name, ast.Load()))))
            # Or a constant of the kind its other returns give (`return True` lost where the
            # function also returns False: aima3's is_definite_clause, actions-36).
            for value in returned_constants.get(id(node), []):
                variants.append(("return", f"returns `{value!r}`", ast.Return(ast.Constant(value))))
        elif (
            not repair
            and isinstance(node, ast.Return)
            and node.value is not None
            and not _is_none(node.value)
        ):
            variants.append(("return", "returns None", ast.Return(None)))
        for kind, desc, new in variants:
            try:
                segment = ast.unparse(new)
            except (AttributeError, TypeError, ValueError):
                continue
            mutated = (data[:start] + segment.encode("utf-8") + data[end:]).decode("utf-8")
            if mutated == text or mutated in seen:
                continue
            try:
                compile(mutated, "<mutant>", "exec", dont_inherit=True)
            except (SyntaxError, ValueError):
                continue
            seen.add(mutated)
            segment = data[start:end].decode("utf-8")
            out.append(Mutant(lineno, kind, desc, mutated, segment, node.col_offset))
    if repair:
        out = _told_apart(out)  # the mutator's descriptions stay: the bench's draws rank them
        out.sort(key=lambda m: (m.line, REPAIR_ORDER.index(m.kind) if m.kind in REPAIR_ORDER else 99))
    else:
        out.sort(key=lambda m: m.line)
    return out


def _told_apart(found: list[Mutant]) -> list[Mutant]:
    """Where one line has the same change twice (two `*` in `i * i * 2`), each description also
    names the expression it changes, and where that text repeats too (the two `0` of
    convolve's `[0] * (n - 1)` line), which one of them, counted from the left."""
    groups: dict[tuple[int, str], list[Mutant]] = {}
    for m in found:
        groups.setdefault((m.line, m.description), []).append(m)
    told: dict[int, str] = {}
    for group in groups.values():
        if len(group) == 1:
            continue
        texts = Counter(m.segment for m in group)
        for m in group:
            where = f"in `{_clip(m.segment)}`"
            if texts[m.segment] > 1:
                columns = sorted({o.column for o in group if o.segment == m.segment})
                where = f"in the {_ordinal(columns.index(m.column) + 1)} `{_clip(m.segment)}` of the line"
            told[id(m)] = f"{m.description} {where}"
    return [replace(m, description=told[id(m)]) if id(m) in told else m for m in found]


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


def _clip(segment: str) -> str:
    return segment if len(segment) <= MAX_SEGMENT_SHOWN else segment[: MAX_SEGMENT_SHOWN - 3] + "..."


def _bare_returns(tree: ast.AST) -> dict[int, list[str]]:
    """For each `return`/`return None` of a function: the names bound in it before that line,
    latest assignment first, then loop variables, then its arguments."""
    out: dict[int, list[str]] = {}
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        # Loop and comprehension variables rarely hold the result: they come after assignments.
        loop_targets = {
            id(name)
            for n in ast.walk(fn)
            if isinstance(n, ast.For | ast.AsyncFor | ast.comprehension)
            for name in ast.walk(n.target)
        }
        bound = [
            (id(n) in loop_targets, n.lineno, n.id)
            for n in ast.walk(fn)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        ]
        params = parameter_names(fn)
        for ret in ast.walk(fn):
            if isinstance(ret, ast.Return) and (ret.value is None or _is_none(ret.value)):
                before = sorted((loop, -ln, n) for loop, ln, n in bound if ln <= ret.lineno)
                names = list(dict.fromkeys(n for _, _, n in before))
                out[id(ret)] = [*names, *(p for p in params if p not in names and p != "self")]
    return out


def _returned_constants(tree: ast.AST) -> dict[int, list[bool | int | float | str]]:
    """For each `return`/`return None` of a function: the constants its other returns give (a
    truth value and its opposite, then numbers and strings), at most MAX_RETURN_CONSTANTS."""
    out: dict[int, list[bool | int | float | str]] = {}
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        returns = [n for n in ast.walk(fn) if isinstance(n, ast.Return)]
        given = [
            r.value.value
            for r in returns
            if isinstance(r.value, ast.Constant) and isinstance(r.value.value, bool | int | float | str)
        ]
        values: list[bool | int | float | str] = []
        for value in given:
            values += [value, not value] if isinstance(value, bool) else [value]
        # Truth values first: a lost `return True` is likelier than a lost number.
        values.sort(key=lambda v: not isinstance(v, bool))
        unique = list({(type(v), v): v for v in values}.values())[:MAX_RETURN_CONSTANTS]
        for r in returns:
            if unique and (r.value is None or _is_none(r.value)):
                out[id(r)] = unique
    return out


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def spread(items: list[Mutant], limit: int) -> list[Mutant]:
    """At most `limit` mutants, taken round-robin over lines so every line is represented."""
    by_line: dict[int, list[Mutant]] = {}
    for m in items:
        by_line.setdefault(m.line, []).append(m)
    out: list[Mutant] = []
    queues = list(by_line.values())
    while len(out) < limit and any(queues):
        for queue in queues:
            if queue and len(out) < limit:
                out.append(queue.pop(0))
    return sorted(out, key=lambda m: m.line)


# ---------------------------------------------------------------------------------------------
# Branch coverage


@dataclass(frozen=True)
class Branches:
    """The branch arcs of a function (coverage.py's numbering), or its lines when it has none."""

    arcs: frozenset[tuple[int, int]]
    statements: frozenset[int]


def branches_of(text: str, first_line: int, last_line: int) -> Branches:
    parser = PythonParser(text=text)
    parser.parse_source()
    exits = parser.exit_counts()
    branch_lines = {line for line, count in exits.items() if count > 1 and first_line <= line <= last_line}
    arcs = frozenset((a, b) for a, b in parser.arcs() if a in branch_lines)
    statements = frozenset(s for s in parser.statements if first_line <= s <= last_line)
    return Branches(arcs, statements)


def covered(branches: Branches, executed: set[tuple[int, int]]) -> tuple[int, int]:
    """(covered, total) branches; lines instead when the function has no branch."""
    if branches.arcs:
        return len(branches.arcs & executed), len(branches.arcs)
    lines = {a for a, _ in executed} | {b for _, b in executed}
    return len(branches.statements & lines), len(branches.statements)


def missing_branches(branches: Branches, executed: set[tuple[int, int]], lines: list[str]) -> list[str]:
    """What no test does, one line per arc not taken, said as a case to test: `line 7: the
    condition `x < lo` is never true`. A small model writes a test for "never true" far more often
    than for "line 7 never goes to line 8"."""
    text = "\n".join(lines)
    try:
        tree: ast.Module | None = ast.parse(text)
    except SyntaxError:
        tree = None
    owners = branch_owners(tree) if tree is not None else {}
    out = []
    for a, b in sorted(branches.arcs - executed):
        src = lines[a - 1].strip() if 0 < a <= len(lines) else ""
        node = owners.get(a)
        said = _arc_said(node, b, text, tree) if node is not None and tree is not None else None
        if said is None:
            dest = f"line {b}" if b > 0 else "the function's exit"
            said = f"(`{src}`) never goes to {dest}"
        out.append(f"line {a} {said}")
    return out


def missing_lines(branches: Branches, executed: set[tuple[int, int]], text: str) -> list[str]:
    """For a function without branches (its measure is lines): the statements no test runs,
    said as cases. An `except` handler is said as the exception its `try` must raise: in
    more-itertools' `iterate` (`while True:` and `except StopIteration: break`, no branch to
    report) no gap was named, so no coverage round ran and the handler stayed untested."""
    reached = {a for a, _ in executed} | {b for _, b in executed}
    # The `def` line runs at import, before any test: never a case to ask a test for.
    missed = branches.statements - reached - {min(branches.statements, default=0)}
    if not missed:
        return []
    lines = text.splitlines()
    out: list[str] = []
    said: set[int] = set()
    try:
        tree: ast.Module | None = ast.parse(text)
    except SyntaxError:
        tree = None
    for fn in ast.walk(tree) if tree is not None else ():
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        params = parameter_names(fn)
        for node in ast.walk(fn):
            if not isinstance(node, ast.Try | ast.TryStar):
                continue
            for handler in node.handlers:
                # A nested function's handler is walked from each enclosing one: say it once.
                if not handler.body or handler.body[0].lineno not in missed or handler.lineno in said:
                    continue
                what = ast.unparse(handler.type) if handler.type is not None else "Exception"
                raiser = lines[node.body[0].lineno - 1].strip()
                case = (
                    f"line {handler.lineno} the handler `{lines[handler.lineno - 1].strip()}` never "
                    f"runs: no test makes `{raiser}` raise {what}"
                )
                called = called_parameter(node.body[0], params)
                if called:
                    # The 1.5B, told only which exception, expected `iterate` itself to raise it.
                    case += (
                        f": pass as `{called}` a function of the test that raises it, such as "
                        f"`def {called}_raising(*args): raise {what}`"
                    )
                out.append(case)
                said.update(range(handler.lineno, (handler.end_lineno or handler.lineno) + 1))
    for line in sorted(missed - said):
        out.append(f"line {line} (`{lines[line - 1].strip()}`) never runs")
    return out


def parameter_names(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    """The names a call can bind, in order (positional-only, positional, keyword-only)."""
    return [a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)]


def called_parameter(node: ast.AST, params: Sequence[str]) -> str | None:
    """The first of `params` (in their order) that the code calls by name (`func` in
    `start = func(start)`), or None: an argument a test must pass as a function."""
    called = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    return next((p for p in params if p in called), None)


_BRANCHING = (ast.If, ast.While, ast.For, ast.AsyncFor)


def branch_owners(tree: ast.Module) -> dict[int, ast.stmt]:
    """The branching statement that starts on each line (the outermost, where two share one)."""
    owners: dict[int, ast.stmt] = {}
    for node in ast.walk(tree):
        if isinstance(node, _BRANCHING):
            owners.setdefault(node.lineno, node)
    return owners


def condition_of(tree: ast.Module, node: ast.If | ast.While) -> ast.expr:
    """The node's condition with the function's locals replaced by what they were assigned
    before it (`n == 0` after `n = len(coefficients)` -> `len(coefficients) == 0`): a test sets
    the parameters, and a small model asked for `n == 0` sets the wrong thing to zero."""
    functions = [
        f
        for f in ast.walk(tree)
        if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        and f.lineno <= node.lineno <= (f.end_lineno or f.lineno)
    ]
    if not functions:
        return node.test
    function = max(functions, key=lambda f: f.lineno)  # the innermost
    # The last assignment of each name before the condition (walk order is not line order);
    # a name assigned twice, or in a loop, has no one value to stand for.
    counts: dict[str, int] = {}
    assigned: dict[str, ast.expr] = {}
    for stmt in ast.walk(function):
        if isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.For):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                for name in (n.id for n in ast.walk(t) if isinstance(n, ast.Name)):
                    counts[name] = counts.get(name, 0) + 1
            if (
                isinstance(stmt, ast.Assign)
                and stmt.lineno < node.lineno
                and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)
            ):
                assigned[stmt.targets[0].id] = stmt.value

    class Substitute(ast.NodeTransformer):
        def visit_Name(self, name: ast.Name) -> ast.expr:
            if name.id in assigned and counts.get(name.id) == 1:
                return copy.deepcopy(assigned[name.id])
            return name

    substituted: ast.expr = Substitute().visit(copy.deepcopy(node.test))
    return substituted


def into_body(node: ast.stmt, dest: int) -> bool | None:
    """Whether the arc from a branching statement to line `dest` enters its body (else it goes
    past it); None when `node` is not a branching statement with a body."""
    if not isinstance(node, _BRANCHING) or not node.body:
        return None
    return dest == node.body[0].lineno


def _arc_said(node: ast.stmt, dest: int, text: str, tree: ast.Module) -> str | None:
    """The arc from `node` to line `dest` as a case: into the body, or past it."""
    into = into_body(node, dest)
    if into is None or not isinstance(node, _BRANCHING):
        return None
    if isinstance(node, ast.If | ast.While):
        cond = ast.get_source_segment(text, node.test) or "the condition"
        if isinstance(node, ast.If):
            said = f"the condition `{cond}` is never {'true' if into else 'false'}"
            condition = condition_of(tree, node)
            plain = ast.unparse(condition)
            if plain != ast.unparse(node.test):
                said = f"{said}, that is: `{plain}`"
            hint = type_hint(condition, into)
            return f"{said}: {hint}" if hint else said
        if into:
            return f"the loop `while {cond}` never runs its body"
        return f"the loop `while {cond}` never stops by its condition becoming false"
    seq = ast.get_source_segment(text, node.iter) or "the sequence"
    if into:
        return f"the loop over `{seq}` never runs (no test gives it an item)"
    return f"the loop over `{seq}` never runs to its end (test it empty, or with no item that leaves early)"


# Values a test can pass to take either side of an `isinstance` check, in the order offered: the
# first whose type answers the check as wanted is named. An iterator comes first because the
# other side of a "list, tuple or Sequence" check is what library code dispatches on most, and
# the 1.5B, told only "never false", kept passing lists.
_TYPE_EXAMPLES: dict[str, Callable[[], object]] = {
    "iter([1, 2, 3])": lambda: iter([1, 2, 3]),
    "[1, 2, 3]": lambda: [1, 2, 3],
    "(1, 2, 3)": lambda: (1, 2, 3),
    "'abc'": lambda: "abc",
    "{'a': 1}": lambda: {"a": 1},
    "{1, 2}": lambda: {1, 2},
    "3": lambda: 3,
    "1.5": lambda: 1.5,
    "b'abc'": lambda: b"abc",
    "None": lambda: None,
}


def _known_type(name: str) -> type | None:
    for module in (builtins, collections.abc, numbers):
        found = getattr(module, name, None)
        if isinstance(found, type):
            return found
    return None


def _type_name(node: ast.expr) -> str:
    """`Sequence` for `Sequence` and `abc.Sequence`; "" for anything else."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def type_hint(condition: ast.expr, truth: bool) -> str | None:
    """For `isinstance(x, T)` (or its negation) needed `truth`: which value of `x` takes that
    side, e.g. "give `seq` something that is not a tuple or list, such as `iter([1, 2, 3])`".
    None for other conditions, or for types not known here (the project's own classes)."""
    while isinstance(condition, ast.UnaryOp) and isinstance(condition.op, ast.Not):
        condition, truth = condition.operand, not truth
    if not (
        isinstance(condition, ast.Call)
        and isinstance(condition.func, ast.Name)
        and condition.func.id == "isinstance"
        and len(condition.args) == 2
    ):
        return None
    subject, spec = condition.args
    parts = spec.elts if isinstance(spec, ast.Tuple) else [spec]
    names = [
        p.attr if isinstance(p, ast.Attribute) else p.id if isinstance(p, ast.Name) else "" for p in parts
    ]
    types = [_known_type(n) for n in names]
    if not names or any(t is None for t in types):
        return None
    said = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    for example, make in _TYPE_EXAMPLES.items():
        if any(isinstance(make(), t) for t in types if t is not None) == truth:
            what = f"a {said}" if truth else f"something that is not a {said}"
            return f"give `{ast.unparse(subject)}` {what}, such as `{example}`"
    return None


# ---------------------------------------------------------------------------------------------
# Measuring a suite


@dataclass
class Quality:
    tests: int
    branches_covered: int
    branches_total: int
    mutants_killed: int
    mutants_total: int
    survivors: list[Mutant] = field(default_factory=list)
    uncovered: list[str] = field(default_factory=list)
    missing_arcs: list[tuple[int, int]] = field(default_factory=list)  # what `uncovered` says
    kills: dict[str, set[int]] = field(default_factory=dict)  # test name -> killed mutant indexes
    arcs: dict[str, set[tuple[int, int]]] = field(default_factory=dict)  # test -> arcs it executes
    unit: str = "branches"

    @property
    def branch_ratio(self) -> float:
        return self.branches_covered / self.branches_total if self.branches_total else 1.0

    @property
    def kill_ratio(self) -> float:
        return self.mutants_killed / self.mutants_total if self.mutants_total else 1.0

    def summary(self) -> str:
        """`6 tests, 92% of branches, catch 9 of 10 mutants`."""
        parts = [f"{self.tests} test{'s' if self.tests != 1 else ''}"]
        if self.branches_total:
            parts.append(f"{round(100 * self.branch_ratio)}% of {self.unit}")
        if self.mutants_total:
            parts.append(f"catch {self.mutants_killed} of {self.mutants_total} mutants")
        return ", ".join(parts)


RunSuite = Callable[[Mapping[str, str], bool], RunResult]


def measure(
    module_rel: str,
    module_text: str,
    first_line: int,
    last_line: int,
    tests: list[str],
    run: RunSuite,
    *,
    test_of: Callable[[str], str] = lambda key: key.split("[", 1)[0].split(".", 1)[0],
    max_mutants: int = MAX_MUTANTS,
    check: Callable[[], None] = lambda: None,
) -> Quality:
    """Coverage and mutation score of `tests` (names) on the function at first..last_line.

    `run(files, with_coverage)` runs the suite in the sandbox with `files` overlaid. Mutants on
    lines no test executes survive without a run (nothing reaches them).
    """
    base = run({module_rel: module_text}, True)
    executed = base.arcs.get(module_rel, set())
    branches = branches_of(module_text, first_line, last_line)
    got, total = covered(branches, executed)
    reached = {a for a, _ in executed} | {b for _, b in executed}
    candidates = spread(mutants(module_text, first_line, last_line), max_mutants)
    quality = Quality(
        len(tests),
        got,
        total,
        0,
        len(candidates),
        uncovered=(
            missing_branches(branches, executed, module_text.splitlines())
            if branches.arcs
            else missing_lines(branches, executed, module_text)
        ),
        missing_arcs=sorted(branches.arcs - executed),
        unit="branches" if branches.arcs else "lines",
    )
    for name, arcs in base.test_arcs.items():
        quality.arcs[test_of(name)] = arcs & branches.arcs if branches.arcs else arcs
    for i, mutant in enumerate(candidates):
        if mutant.line not in reached:
            quality.survivors.append(mutant)
            continue
        check()
        result = run({module_rel: mutant.text}, False)
        failing = {test_of(o.name) for o in result.failed()}
        if result.collection_error or result.timed_out:
            failing = set(tests)
        if failing:
            quality.mutants_killed += 1
            for name in failing:
                quality.kills.setdefault(name, set()).add(i)
        else:
            quality.survivors.append(mutant)
    log.info("quality of %d tests: %s", len(tests), quality.summary())
    return quality


def useful_tests(
    order: list[str], quality: Quality, params: Mapping[str, set[str]] | None = None
) -> tuple[list[str], list[str]]:
    """(kept, dropped): a test is kept when it adds a branch, kills a mutant or passes a
    parameter (`params`: test -> parameter names it gives the function) no earlier one did.

    Parameters count because the mutator changes operators and constants, not how an argument
    is used: a test of `sep=` in `slugify` catches bugs no mutant here stands for."""
    params = params or {}
    arcs: set[tuple[int, int]] = set()
    killed: set[int] = set()
    given: set[str] = set()
    kept: list[str] = []
    dropped: list[str] = []
    for name in order:
        new_arcs = quality.arcs.get(name, set()) - arcs
        new_kills = quality.kills.get(name, set()) - killed
        new_params = params.get(name, set()) - given
        if new_arcs or new_kills or new_params or not kept:
            kept.append(name)
            arcs |= quality.arcs.get(name, set())
            killed |= quality.kills.get(name, set())
            given |= params.get(name, set())
        else:
            dropped.append(name)
    return kept, dropped


__all__ = [
    "Branches",
    "Mutant",
    "Quality",
    "branch_owners",
    "branches_of",
    "called_parameter",
    "condition_of",
    "covered",
    "into_body",
    "measure",
    "missing_branches",
    "mutants",
    "parameter_names",
    "spread",
    "useful_tests",
]
