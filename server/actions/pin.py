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

Numeric checks are recorded the same way: `assert np.allclose(actual, expected)` (and
`np.isclose`, `np.array_equal`, `math.isclose`), numpy.testing's `assert_allclose` family as a
statement, and `== pytest.approx(expected)`, where the expected side is a literal or
`np.array(<literal>)`; the value is written to CLOSE_DIGITS, inside the model's own call. A numpy
array is recorded as its `tolist()`, and compared by it where the model wrote `==` (which no
array passes): colour-science's converters (bench actions-38) kept one test of eight, all the
model's `np.allclose(..., np.array([...]))` with miscalculated numbers.

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
from collections.abc import Callable
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
# Functions that compare their first two arguments under a tolerance (or exactly, elementwise),
# asserted as `assert f(actual, expected)`; numpy.testing's, which raise, as a statement. Bare or
# under one of NUMERIC_MODULES (`np.allclose`, `numpy.testing.assert_allclose`, `math.isclose`).
CLOSE_CALLS = frozenset({"allclose", "isclose", "array_equal", "array_equiv"})
CLOSE_STATEMENTS = frozenset({
    "assert_allclose", "assert_array_almost_equal", "assert_almost_equal", "assert_array_equal",
    "assert_equal", "assert_approx_equal",
})  # fmt: skip
NUMERIC_MODULES = frozenset({"np", "numpy", "npt", "math"})
# `np.array(<literal>)`: an expectation whose literal is the argument.
ARRAY_MAKERS = frozenset({"array", "asarray"})
# Digits a value compared under a tolerance is written to: numpy.testing.assert_allclose's
# default (relative 1e-7, the tightest of these functions' defaults but math.isclose's 1e-9)
# holds with room to spare, and a reader sees a number, not a bit pattern.
CLOSE_DIGITS = 10
KEEP_REL = 1e-9  # the model's number stays where it is this close (math.isclose's default)
# A numpy array's value, as the variant reports it: this prefix, then the repr of its tolist().
ARRAY = "ARRAY:"
TOLIST = ".tolist()"
# An iterator's items, as the variant reports them: this prefix, then the repr of the list.
ITEMS = "ITEMS:"
# Items taken from an iterator at most (an endless one would hang the run); from an iterator
# that has more, the test takes as many as the model's expectation holds (ISLICE).
MAX_ITEMS = 200
ISLICE = "itertools.islice("
_SHOWN = "_infiller_shown"
# Defined inside the variant's body so that it needs nothing imported.
# A numpy value as its tolist() (a scalar's reads back as a number, an array's as a list);
# with `by_items`, an iterator as its items.
_SHOWN_HELPER = f"""def {_SHOWN}(value, by_items):
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        plain = value.tolist()
        return ({ARRAY!r} if isinstance(plain, list) else "") + repr(plain)
    if not by_items:
        return repr(value)
    try:
        if iter(value) is not value:
            return repr(value)
    except TypeError:  # not iterable: its repr, as for any other value
        return repr(value)
    taken = []
    for item in value:
        taken.append(item)
        if len(taken) > {MAX_ITEMS}:
            break
    return {ITEMS!r} + repr(taken)
"""


@dataclass(frozen=True)
class _Check:
    """One check of a test body, `assert actual == expected` or a numeric comparison (byte
    offsets of `expected` in its line)."""

    stmt: ast.stmt
    actual: ast.expr
    line: int  # 1-based, in the test's source
    start: int
    end: int
    # "equal" (`==`) or "close" (compared under a tolerance, or elementwise by numpy).
    kind: str
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
    """The body's recordable checks, or None when one cannot be recorded safely (inside a loop
    or a branch, where one statement would stand for several values)."""
    bound = _bound_literals(fn)
    out: list[_Check] = []
    for stmt in fn.body:
        sides = _sides(stmt, bound)
        if sides is None:
            continue
        actual, expected, kind = sides
        if expected.end_lineno != expected.lineno:
            return None  # a literal over several lines: replaced whole only on one line
        sequence = {ast.List: "list", ast.Tuple: "tuple"}.get(type(expected), "")
        sequence = sequence if kind == "equal" else ""  # numpy compares a list with an array
        inner = _materialized(actual) if sequence else None
        out.append(
            _Check(
                stmt,
                inner or actual,
                expected.lineno,
                expected.col_offset,
                expected.end_col_offset or 0,
                kind,
                sequence,
                outer=actual if inner is not None else None,
            )
        )
    checked = {id(c.stmt) for c in out}
    nested = [
        n for stmt in fn.body if id(stmt) not in checked for n in ast.walk(stmt) if _sides(n, {}) is not None
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


def _bound_literals(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> dict[int, ast.expr]:
    """The reads of names that stand for a literal, by `id` of the read: the body assigns the name
    a literal at its top level and reads it once before assigning it again (or never again).
    The model's `expected = [...]` before `assert f(x) == expected`, also where it repeats the
    pair for several inputs (colour's sUCS converters, bench actions-39: three pairs in one
    test). Recording into the assignment changes nothing else the test does. A name assigned
    `np.array(<literal>)` is bound to that `ast.Call` (numeric checks read its literal; `==`
    cannot use it)."""
    literal_stores: dict[int, ast.expr] = {}
    for stmt in fn.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(target := stmt.targets[0], ast.Name)
            and (is_literal(stmt.value) or _array_literal(stmt.value) is not None)
        ):
            literal_stores[id(target)] = stmt.value
    # Each name's stores and reads in the order they are written (a literal reads no name, so
    # an assignment's own value cannot be a read of its target).
    events: dict[str, list[tuple[tuple[int, int], bool, ast.AST]]] = {}
    for node in ast.walk(fn):
        if isinstance(node, ast.Name):
            where = (node.lineno, node.col_offset)
            events.setdefault(node.id, []).append((where, isinstance(node.ctx, ast.Store), node))
        elif isinstance(node, ast.arg):
            events.setdefault(node.arg, []).append(((0, 0), True, node))
    bound: dict[int, ast.expr] = {}
    for sequence in events.values():
        sequence.sort(key=lambda e: e[0])
        for i, (_, is_store, node) in enumerate(sequence):
            if not is_store or id(node) not in literal_stores:
                continue
            reads = []
            for _, later_store, later in sequence[i + 1 :]:
                if later_store:
                    break
                reads.append(later)
            if len(reads) == 1:
                bound[id(reads[0])] = literal_stores[id(node)]
    return bound


def _dotted(node: ast.expr) -> list[str]:
    """`np.testing.assert_allclose` as its parts; [] for anything but names and attributes."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    return [node.id, *parts] if isinstance(node, ast.Name) else []


def _numeric(func: ast.expr, names: frozenset[str]) -> bool:
    """Whether `func` is one of `names`, bare or under one of NUMERIC_MODULES."""
    parts = _dotted(func)
    return bool(parts) and parts[-1] in names and (len(parts) == 1 or parts[0] in NUMERIC_MODULES)


def _literal_argument(node: ast.expr, called: Callable[[ast.expr], bool]) -> ast.expr | None:
    """The literal of `f(<literal>)` where `called(f)`, keywords such as `dtype=` allowed, else
    None: the expectation inside `np.array(...)` or `pytest.approx(...)`."""
    if isinstance(node, ast.Call) and called(node.func) and len(node.args) == 1 and is_literal(node.args[0]):
        return node.args[0]
    return None


def _array_literal(node: ast.expr) -> ast.expr | None:
    """The literal of `np.array(<literal>)`, else None."""
    return _literal_argument(node, lambda f: _numeric(f, ARRAY_MAKERS))


def _approx_literal(node: ast.expr) -> ast.expr | None:
    """The literal of `pytest.approx(<literal>)`, else None."""
    return _literal_argument(node, lambda f: _dotted(f) == ["pytest", "approx"])


def _sides(node: ast.AST, bound: dict[int, ast.expr]) -> tuple[ast.expr, ast.expr, str] | None:
    """(actual, expected literal, kind) of a check, where exactly one side is a literal or a name
    `bound` to one (then the literal is the assignment's); else None. The kind is "equal" for
    `assert actual == expected`, "close" for `== pytest.approx(expected)` and the numeric
    comparisons (CLOSE_CALLS asserted, CLOSE_STATEMENTS called), where the expected side may
    also be `np.array(<literal>)`."""
    if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare):
        cmp = node.test
        if len(cmp.ops) != 1 or not isinstance(cmp.ops[0], ast.Eq):
            return None
        pair = (cmp.left, cmp.comparators[0])
    elif isinstance(node, ast.Assert) and isinstance(node.test, ast.Call):
        if not _numeric(node.test.func, CLOSE_CALLS) or len(node.test.args) < 2:
            return None
        pair = (node.test.args[0], node.test.args[1])
    elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        if not _numeric(node.value.func, CLOSE_STATEMENTS) or len(node.value.args) < 2:
            return None
        pair = (node.value.args[0], node.value.args[1])
    else:
        return None
    equal = isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)

    def expectation(side: ast.expr) -> tuple[ast.expr, str] | None:
        side = bound.get(id(side), side)
        if (approx := _approx_literal(side)) is not None:
            return approx, "close"
        if is_literal(side):
            return side, "equal" if equal else "close"
        array = None if equal else _array_literal(side)
        return (array, "close") if array is not None else None

    left, right = pair
    left_expected, right_expected = expectation(left), expectation(right)
    if right_expected is not None and left_expected is None:
        return left, *right_expected
    if left_expected is not None and right_expected is None:
        return right, *left_expected
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
    by_stmt = {id(c.stmt): c for c in checks}
    body: list[ast.stmt] = [*ast.parse(_SHOWN_HELPER).body, ast.parse(f"{_SEEN} = []").body[0]]
    for stmt in fn.body:
        check = by_stmt.get(id(stmt))
        if check is None:
            body.append(stmt)
            continue
        record = ast.parse(f"{_SEEN}.append({_SHOWN}(None, {check.wraps}))").body[0]
        call = record.value  # type: ignore[attr-defined]
        call.args[0].args[0] = check.actual
        body.append(record)
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


def _rounded(x: float | complex, digits: int = SIGNIFICANT_DIGITS) -> float | complex:
    """x to `digits` significant digits, and 0 within FLOAT_NOISE of it (`-1.3877787807814457e-17`)."""
    if isinstance(x, complex):
        return complex(_rounded(x.real, digits), _rounded(x.imag, digits))
    if isinstance(x, int) or not math.isfinite(x):
        return x
    return 0.0 if abs(x) < FLOAT_NOISE else float(f"{x:.{digits}g}")


def _flat_numbers(value: object) -> list[object] | None:
    """The numbers pytest.approx compares in `value` (a number, or a flat list, tuple or dict
    of them), or None for any other shape."""
    if _number(value):
        return [value]
    items = list(value.values()) if isinstance(value, dict) else value
    if isinstance(items, list | tuple) and all(_number(x) for x in items):
        return list(items)
    return None


def _near(a: object, b: object, rel: float) -> bool:
    """a and b are the same numbers (relative `rel`, absolute APPROX_ABS) at any depth of lists
    and tuples, as numpy compares them: an int may stand for a float, a tuple for a list."""
    if _number(a) and _number(b):
        return abs(a - b) <= max(rel * abs(b), APPROX_ABS)  # type: ignore[operator, arg-type]
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_near(x, y, rel) for x, y in zip(a, b, strict=True))
    return a == b


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


def _rounded_all(value: object, digits: int = SIGNIFICANT_DIGITS) -> object:
    """value with every float rounded (_rounded), at any depth."""
    if isinstance(value, float | complex):
        return _rounded(value, digits)
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(_rounded_all(x, digits) for x in value)
    if isinstance(value, dict):
        return {k: _rounded_all(v, digits) for k, v in value.items()}
    return value


def _as_list(lines: list[str], side: ast.expr) -> tuple[int, int, int, str] | None:
    """The edit that compares an array by its `tolist()` (None when `side` spans lines)."""
    if side.lineno != side.end_lineno:
        return None
    start, end = side.col_offset, side.end_col_offset or 0
    text = _segment(lines, side.lineno, start, end)
    simple = isinstance(side, ast.Name | ast.Call | ast.Attribute | ast.Subscript)
    return side.lineno, start, end, (text if simple else f"({text})") + TOLIST


def _segment(lines: list[str], line: int, start: int, end: int) -> str:
    """Text of 1-based `line` between the byte offsets that ast reports."""
    return lines[line - 1].encode("utf-8")[start:end].decode("utf-8")


def _without_message(stmt: ast.stmt) -> list[tuple[int, int, int, str]]:
    """The edit that drops an assert's message, which said what the model expected ("should
    return the input unchanged") and would misstate a recorded value; none where it has none or
    the message starts on another line."""
    if not (isinstance(stmt, ast.Assert) and stmt.msg is not None):
        return []
    if stmt.test.end_lineno != stmt.msg.lineno or stmt.msg.lineno != stmt.msg.end_lineno:
        return []
    return [(stmt.msg.lineno, stmt.test.end_col_offset or 0, stmt.msg.end_col_offset or 0, "")]


def pinned(source: str, values: list[str]) -> str | None:
    """The test with each expectation replaced by the value recorded for it, marked with a
    comment, each iterator compared by its items and each array `==` a list by its `tolist()`;
    None when a value does not read back as a literal or nothing changes."""
    fn = lone_test_function(source)
    checks = _checks(fn) if fn is not None else None
    if fn is None or checks is None or len(checks) != len(values):
        return None
    items = [v.startswith(ITEMS) for v in values]
    arrays = [v.startswith(ARRAY) for v in values]
    values = [v.removeprefix(ITEMS).removeprefix(ARRAY) for v in values]
    if not all(_reads_back(v) for v in values):
        return None
    lines = source.splitlines(keepends=True)
    # Edits as (line, start, end, text) in bytes, applied from the end so offsets stay valid.
    edits: list[tuple[int, int, int, str]] = []
    recorded = False
    for check, value, is_items, is_array in zip(checks, values, items, arrays, strict=True):
        got = ast.literal_eval(value)
        expected = ast.literal_eval(_segment(lines, check.line, check.start, check.end))
        if check.kind == "close":
            if _near(expected, got, KEEP_REL):
                continue  # this expectation was right: keep the model's spelling of it
            written = repr(_rounded_all(got, CLOSE_DIGITS))
            if len(written) > MAX_VALUE_CHARS:
                return None
            edits.append((check.line, check.start, check.end, written))
            if not _near(expected, got, APPROX_REL):
                recorded = True
                edits.extend(_without_message(check.stmt))
            continue
        if is_array:  # `array == [...]` is no truth value: its list is compared instead
            as_list = _as_list(lines, check.side)
            if as_list is None:
                return None
            edits.append(as_list)
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
        if not _close(expected, got):
            recorded = True
            edits.extend(_without_message(check.stmt))
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
