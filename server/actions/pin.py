"""Expected values recorded from the code: a generated test whose arithmetic was wrong becomes a
regression test of what the code returns now.

A small model writes good inputs and bad expected values: most of its failing tests call the
function well and then assert a miscalculated result. When nothing in the docstring backs that
result (`server.actions.bugs`), the test is not evidence of a bug, and re-asking the model costs
a generation per test (15-25 s for the 1.5B on 2 cores) and is often wrong again. Recording the
value instead is what test generators that execute the code do (EvoSuite, Pynguin: assertions
from observed outputs): the test keeps the model's inputs, its expected values are the code's,
and it now fails when a later change alters them. The test says so in a comment, so that the
user reads those values as a record, not as a specification.

Only `assert <expression> == <literal>` statements at the top level of a test body are
recorded (or `== name`, where the body assigns `name` a literal once and reads it only there:
the value is then recorded in the assignment), and only values whose repr reads back as an equal
literal (numbers, strings, tuples, lists, dicts, sets, None, booleans); an object keeps the test
failing.

The other common mistake of the kind: comparing an iterator with a list (`assert
intersperse("!", [1, 2]) == [1, "!", 2]` where the docstring says `list(intersperse(...))`).
Where the expectation is a list or tuple literal and the value is an iterator, the variant
records its items, and the test takes `list(...)` (or `tuple(...)`) around the call; when the
model's items were right, that is the only change and the test carries no comment.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass

# The marker the observing variant fails with, followed by the list of reprs it saw.
MARKER = "INFILLER-OBSERVED"
_OBSERVED = re.compile(re.escape(MARKER) + r"(\[.*\])")
# A recorded value longer than this is a data dump, not an expectation a reader can check.
MAX_VALUE_CHARS = 120
# Floats are written to this many significant digits, under pytest.approx; pytest's defaults
# (relative 1e-6, absolute 1e-12) then decide equality, as APPROX_REL and APPROX_ABS here.
SIGNIFICANT_DIGITS = 12
APPROX_REL, APPROX_ABS = 1e-6, 1e-12
# A float this close to 0 is arithmetic noise (written as 0.0; pytest.approx accepts it).
FLOAT_NOISE = 1e-12
APPROX = "pytest.approx("
COMMENT = "# infiller: expected values recorded from what the code returns now"
_SEEN = "_infiller_seen"
# An iterator's items, as the variant reports them: this prefix, then the repr of the list.
ITEMS = "ITEMS:"
# Items taken from an iterator at most (an endless one would hang the run); from an iterator
# that has more, the test takes as many as the model's expectation holds (ISLICE).
MAX_ITEMS = 200
ISLICE = "itertools.islice("
_ITEMS_OF = "_infiller_items"
# Defined inside the variant's body so that it needs nothing imported.
_ITEMS_HELPER = f"""def {_ITEMS_OF}(value):
    try:
        if iter(value) is not value:
            return repr(value)
    except TypeError:  # not iterable: its repr, as for any other value
        return repr(value)
    items = []
    for item in value:
        items.append(item)
        if len(items) > {MAX_ITEMS}:
            break
    return {ITEMS!r} + repr(items)
"""


@dataclass(frozen=True)
class _Check:
    """One `assert actual == expected` of a test body (byte offsets of `expected` in its line)."""

    actual: ast.expr
    line: int  # 1-based, in the test's source
    start: int
    end: int
    # A list or tuple expected: an iterator on the other side is compared by its items.
    sequence: str = ""  # "list", "tuple" or ""
    # `list(X)` / `tuple(X)` written by the model around the iterator X (`actual` is X then): its
    # items are read at most MAX_ITEMS at a time, as if unwrapped, so an endless X cannot hang.
    outer: ast.expr | None = None

    @property
    def side(self) -> ast.expr:
        """The expression the assert compares (the `list(...)` around `actual`, if any)."""
        return self.outer or self.actual

    @property
    def wraps(self) -> bool:
        """The actual side can take `list(...)`: it is on one line."""
        return bool(self.sequence) and self.side.lineno == self.side.end_lineno


def is_literal(node: ast.expr) -> bool:
    """Whether `node` is a literal `ast.literal_eval` reads (numbers, strings, containers of them)."""
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _checks(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[_Check] | None:
    """The body's recordable asserts, or None when one cannot be recorded safely (inside a loop
    or a branch, where one statement would stand for several values)."""
    bound = _bound_literals(fn)
    out: list[_Check] = []
    for stmt in fn.body:
        sides = _sides(stmt, bound)
        if sides is None:
            continue
        actual, expected = sides
        if expected.end_lineno != expected.lineno:
            return None  # a literal over several lines: replaced whole only on one line
        sequence = {ast.List: "list", ast.Tuple: "tuple"}.get(type(expected), "")
        inner = _materialized(actual) if sequence else None
        out.append(
            _Check(
                inner or actual,
                expected.lineno,
                expected.col_offset,
                expected.end_col_offset or 0,
                sequence,
                outer=actual if inner is not None else None,
            )
        )
    nested = [
        n
        for stmt in fn.body
        if not isinstance(stmt, ast.Assert)
        for n in ast.walk(stmt)
        if _sides(n, {}) is not None
    ]
    return None if nested or not out else out


def _materialized(node: ast.expr) -> ast.expr | None:
    """X of `list(X)` / `tuple(X)` (one argument, no keywords), else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("list", "tuple")
        and len(node.args) == 1
        and not node.keywords
        and not isinstance(node.args[0], ast.Starred)
    ):
        return node.args[0]
    return None


def _bound_literals(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[str, ast.expr]:
    """Names the body assigns once, at its top level, to a literal, and reads once: the model's
    `expected = [...]` before `assert f(x) == expected`. Recording into the assignment changes
    nothing else the test does."""
    stores: dict[str, int] = {}
    loads: dict[str, int] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name):
            counts = stores if isinstance(node.ctx, ast.Store) else loads
            counts[node.id] = counts.get(node.id, 0) + 1
        elif isinstance(node, ast.arg):
            stores[node.arg] = stores.get(node.arg, 0) + 1
    bound: dict[str, ast.expr] = {}
    for stmt in fn.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
            continue
        target = stmt.targets[0]
        if not isinstance(target, ast.Name):
            continue
        if stores[target.id] == loads.get(target.id) == 1 and is_literal(stmt.value):
            bound[target.id] = stmt.value
    return bound


def _sides(node: ast.AST, bound: dict[str, ast.expr]) -> tuple[ast.expr, ast.expr] | None:
    """(actual, expected literal) of `assert actual == expected`, where exactly one side is a
    literal or a name `bound` to one (then the literal is the assignment's); else None."""
    if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)):
        return None
    cmp = node.test
    if len(cmp.ops) != 1 or not isinstance(cmp.ops[0], ast.Eq):
        return None

    def expectation(side: ast.expr) -> ast.expr | None:
        if is_literal(side):
            return side
        return bound.get(side.id) if isinstance(side, ast.Name) else None

    left, right = cmp.left, cmp.comparators[0]
    left_expected, right_expected = expectation(left), expectation(right)
    if right_expected is not None and left_expected is None:
        return left, right_expected
    if left_expected is not None and right_expected is None:
        return right, left_expected
    return None  # exactly one side must be the expectation


def lone_test_function(source: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The one undecorated test function `source` defines, parsed; None otherwise."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if len(fns) != 1 or fns[0].decorator_list:
        return None  # parametrised or fixtures by decorator: one assert stands for several cases
    return fns[0]


# How pytest says a `pytest.raises` block ended without the exception.
DID_NOT_RAISE = "DID NOT RAISE"


def raises_block(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.With | None:
    """The test's one top-level `with pytest.raises(...):` block, when it holds one statement."""
    blocks = [
        stmt
        for stmt in fn.body
        if isinstance(stmt, ast.With)
        and len(stmt.items) == 1
        and isinstance(call := stmt.items[0].context_expr, ast.Call)
        and ast.unparse(call.func) == "pytest.raises"
    ]
    return blocks[0] if len(blocks) == 1 and len(blocks[0].body) == 1 else None


def raised_to_value(source: str) -> str | None:
    """A test that expected an exception the code does not raise, as a test of the value the
    code returns there instead, for `observing_variant` to record: its one top-level `with
    pytest.raises(...):` holding one expression becomes `assert <expression> == None` (None
    when the test has no such block). chunked's `strict=True` tests (bench actions-10) were
    written this way on inputs that divide evenly, so the branch they reached went untested."""
    fn = lone_test_function(source)
    block = raises_block(fn) if fn is not None else None
    if block is None:
        return None
    inside = block.body[0]
    if not isinstance(inside, ast.Expr):
        return None
    lines = source.splitlines(keepends=True)
    first, last = block.lineno - 1, block.end_lineno or block.lineno
    indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
    expression = ast.unparse(inside.value)
    return "".join([*lines[:first], f"{indent}assert {expression} == None\n", *lines[last:]])


def observing_variant(source: str) -> str | None:
    """The test rewritten to record what each expectation's other side evaluates to and fail
    with those values (`observed`), or None when it cannot be recorded."""
    fn = lone_test_function(source)
    if fn is None:
        return None
    checks = _checks(fn)
    if checks is None:
        return None
    by_side = {id(c.side): c for c in checks}
    body: list[ast.stmt] = [*ast.parse(_ITEMS_HELPER).body, ast.parse(f"{_SEEN} = []").body[0]]
    for stmt in fn.body:
        if isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Compare):
            sides = (stmt.test.left, stmt.test.comparators[0])
            check = next((by_side[id(s)] for s in sides if id(s) in by_side), None)
            if check is not None:
                show = _ITEMS_OF if check.wraps else "repr"
                record = ast.parse(f"{_SEEN}.append({show}(None))").body[0]
                call = record.value  # type: ignore[attr-defined]
                call.args[0].args[0] = check.actual
                body.append(record)
                continue
        body.append(stmt)
    body.append(ast.parse(f"raise AssertionError({MARKER!r} + repr({_SEEN}))").body[0])
    fn.body = body
    return ast.unparse(ast.fix_missing_locations(fn)) + "\n"


def observed(message: str) -> list[str] | None:
    """The reprs an observing variant failed with (None: it failed otherwise)."""
    found = _OBSERVED.search(message)
    if found is None:
        return None
    try:
        values = ast.literal_eval(found.group(1))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
        return None
    return values


def _reads_back(text: str) -> bool:
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return bool(value == value)  # NaN never equals itself: an `==` test of it cannot pass


def _number(x: object) -> bool:
    return isinstance(x, int | float | complex) and not isinstance(x, bool)


def _rounded(x: float | complex) -> float | complex:
    """x to SIGNIFICANT_DIGITS, and 0 within FLOAT_NOISE of it (`-1.3877787807814457e-17`)."""
    if isinstance(x, complex):
        return complex(_rounded(x.real), _rounded(x.imag))
    if isinstance(x, int) or not math.isfinite(x):
        return x
    return 0.0 if abs(x) < FLOAT_NOISE else float(f"{x:.{SIGNIFICANT_DIGITS}g}")


def _flat_numbers(value: object) -> list[object] | None:
    """The numbers pytest.approx compares in `value` (a number, or a flat list, tuple or dict
    of them), or None for any other shape."""
    if _number(value):
        return [value]
    items = list(value.values()) if isinstance(value, dict) else value
    if isinstance(items, list | tuple) and all(_number(x) for x in items):
        return list(items)
    return None


def _close(a: object, b: object) -> bool:
    """a == b as pytest.approx's defaults judge it (both flat numbers of the same shape)."""
    xs, ys = _flat_numbers(a), _flat_numbers(b)
    if xs is None or ys is None or len(xs) != len(ys) or type(a) is not type(b):
        return False
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() != b.keys():
        return False
    return all(
        abs(x - y) <= max(APPROX_REL * abs(y), APPROX_ABS)  # type: ignore[operator, arg-type]
        for x, y in zip(xs, ys, strict=True)
    )


def expectation_text(value: object) -> str | None:
    """How a recorded value is written in the test: its repr; `pytest.approx(...)` of it rounded
    where floating-point arithmetic left noise in the last digits (an exact copy of
    `0.5000000000000001` is unreadable and breaks with the next libm); None when it cannot be
    written (noise inside a nested structure, or too long to be read as an expectation)."""
    rounded = _rounded_all(value)
    if _flat_numbers(value) is not None:
        text = repr(value) if rounded == value else f"{APPROX}{rounded!r})"
    elif repr(rounded) != repr(value):
        return None  # noise inside a nested value: pytest.approx cannot compare it
    else:
        text = repr(value)
    return text if len(text) <= MAX_VALUE_CHARS else None


def _rounded_all(value: object) -> object:
    """value with every float rounded (_rounded), at any depth."""
    if isinstance(value, float | complex):
        return _rounded(value)
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(_rounded_all(x) for x in value)
    if isinstance(value, dict):
        return {k: _rounded_all(v) for k, v in value.items()}
    return value


def _segment(lines: list[str], line: int, start: int, end: int) -> str:
    """Text of 1-based `line` between the byte offsets that ast reports."""
    return lines[line - 1].encode("utf-8")[start:end].decode("utf-8")


def pinned(source: str, values: list[str]) -> str | None:
    """The test with each expectation replaced by the value recorded for it, marked with a
    comment, and each iterator compared by its items; None when a value does not read back as a
    literal or nothing changes."""
    fn = lone_test_function(source)
    checks = _checks(fn) if fn is not None else None
    if fn is None or checks is None or len(checks) != len(values):
        return None
    items = [v.startswith(ITEMS) for v in values]
    values = [v.removeprefix(ITEMS) for v in values]
    if not all(_reads_back(v) for v in values):
        return None
    lines = source.splitlines(keepends=True)
    # Edits as (line, start, end, text) in bytes, applied from the end so offsets stay valid.
    edits: list[tuple[int, int, int, str]] = []
    recorded = False
    for check, value, is_items in zip(checks, values, items, strict=True):
        got = ast.literal_eval(value)
        expected = ast.literal_eval(_segment(lines, check.line, check.start, check.end))
        if is_items:
            actual, side = check.actual, check.side
            call = _segment(lines, actual.lineno, actual.col_offset, actual.end_col_offset or 0)
            a_start, a_end = side.col_offset, side.end_col_offset or 0
            if len(got) > MAX_ITEMS:
                # Endless (or too long to read): the test compares as many items as the model
                # wrote, the way the docstrings do (`list(islice(iterate(inc, 0), 3))`).
                if not expected:
                    return None
                call = f"{ISLICE}{call}, {len(expected)})"
                got = got[: len(expected)]
            got = tuple(got) if check.sequence == "tuple" else got
            edits.append((side.lineno, a_start, a_end, f"{check.sequence}({call})"))
        if expected == got:
            continue  # this expectation was right: keep the model's spelling of it
        text = expectation_text(got)
        if text is None:
            return None
        edits.append((check.line, check.start, check.end, text))
        # Right but for floating-point noise: written under pytest.approx, not marked a record.
        recorded = recorded or not _close(expected, got)
    if not edits:
        return None
    for line, start, end, text in sorted(edits, key=lambda e: (-e[0], -e[1])):
        raw = lines[line - 1].encode("utf-8")
        lines[line - 1] = (raw[:start] + text.encode("utf-8") + raw[end:]).decode("utf-8")
    if recorded:
        body_line = fn.body[0].lineno - 1
        indent = re.match(r"[ \t]*", lines[body_line]).group(0)  # type: ignore[union-attr]
        lines.insert(body_line, f"{indent}{COMMENT}\n")
    return "".join(lines)


__all__ = [
    "COMMENT",
    "MARKER",
    "is_literal",
    "lone_test_function",
    "observed",
    "observing_variant",
    "pinned",
    "raises_block",
]
