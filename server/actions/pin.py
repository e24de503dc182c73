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
recorded, and only values whose repr reads back as an equal literal (numbers, strings, tuples,
lists, dicts, sets, None, booleans); an object keeps the test failing.

The other common mistake of the kind: comparing an iterator with a list (`assert
intersperse("!", [1, 2]) == [1, "!", 2]` where the docstring says `list(intersperse(...))`).
Where the expectation is a list or tuple literal and the value is an iterator, the variant
records its items, and the test takes `list(...)` (or `tuple(...)`) around the call; when the
model's items were right, that is the only change and the test carries no comment.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

# The marker the observing variant fails with, followed by the list of reprs it saw.
MARKER = "INFILLER-OBSERVED"
_OBSERVED = re.compile(re.escape(MARKER) + r"(\[.*\])")
# A recorded value longer than this is a data dump, not an expectation a reader can check.
MAX_VALUE_CHARS = 120
COMMENT = "# infiller: expected values recorded from what the code returns now"
_SEEN = "_infiller_seen"
# An iterator's items, as the variant reports them: this prefix, then the repr of the list.
ITEMS = "ITEMS:"
# Items taken from an iterator at most (an endless one would hang the run); more is a data dump.
MAX_ITEMS = 200
_ITEMS_OF = "_infiller_items"
# Defined inside the variant's body so that it needs nothing imported.
_ITEMS_HELPER = f"""def {_ITEMS_OF}(value):
    if iter(value) is not value:
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

    @property
    def wraps(self) -> bool:
        """The actual side can take `list(...)`: it is on the expected's line."""
        return bool(self.sequence) and self.actual.lineno == self.actual.end_lineno == self.line


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _checks(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[_Check] | None:
    """The body's recordable asserts, or None when one cannot be recorded safely (inside a loop
    or a branch, where one statement would stand for several values)."""
    out: list[_Check] = []
    for stmt in fn.body:
        if not _recordable(stmt):
            continue
        assert isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Compare)
        left, right = stmt.test.left, stmt.test.comparators[0]
        actual, expected = (left, right) if _literal(right) else (right, left)
        if expected.end_lineno != expected.lineno:
            return None  # a literal over several lines: replaced whole only on one line
        sequence = {ast.List: "list", ast.Tuple: "tuple"}.get(type(expected), "")
        out.append(
            _Check(actual, expected.lineno, expected.col_offset, expected.end_col_offset or 0, sequence)
        )
    nested = [
        n for stmt in fn.body if not isinstance(stmt, ast.Assert) for n in ast.walk(stmt) if _recordable(n)
    ]
    return None if nested or not out else out


def _recordable(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)):
        return False
    cmp = node.test
    if len(cmp.ops) != 1 or not isinstance(cmp.ops[0], ast.Eq):
        return False
    return _literal(cmp.comparators[0]) != _literal(cmp.left)  # exactly one side is the expectation


def _test_function(source: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if len(fns) != 1 or fns[0].decorator_list:
        return None  # parametrised or fixtures by decorator: one assert stands for several cases
    return fns[0]


def observing_variant(source: str) -> str | None:
    """The test rewritten to record what each expectation's other side evaluates to and fail
    with those values (`observed`), or None when it cannot be recorded."""
    fn = _test_function(source)
    if fn is None:
        return None
    checks = _checks(fn)
    if checks is None:
        return None
    by_actual = {id(c.actual): c for c in checks}
    body: list[ast.stmt] = [*ast.parse(_ITEMS_HELPER).body, ast.parse(f"{_SEEN} = []").body[0]]
    for stmt in fn.body:
        if isinstance(stmt, ast.Assert) and isinstance(stmt.test, ast.Compare):
            sides = (stmt.test.left, stmt.test.comparators[0])
            actual = next((s for s in sides if id(s) in by_actual), None)
            if actual is not None:
                show = _ITEMS_OF if by_actual[id(actual)].wraps else "repr"
                record = ast.parse(f"{_SEEN}.append({show}(None))").body[0]
                call = record.value  # type: ignore[attr-defined]
                call.args[0].args[0] = actual
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
    if len(text) > MAX_VALUE_CHARS:
        return False
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return bool(value == value)  # NaN never equals itself: an `==` test of it cannot pass


def pinned(source: str, values: list[str]) -> str | None:
    """The test with each expectation replaced by the value recorded for it, marked with a
    comment, and each iterator compared by its items; None when a value does not read back as a
    literal or nothing changes."""
    fn = _test_function(source)
    checks = _checks(fn) if fn is not None else None
    if fn is None or checks is None or len(checks) != len(values):
        return None
    items = [v.startswith(ITEMS) for v in values]
    values = [v.removeprefix(ITEMS) for v in values]
    if not all(_reads_back(v) for v in values):
        return None
    if any(i and len(ast.literal_eval(v)) > MAX_ITEMS for i, v in zip(items, values, strict=True)):
        return None
    lines = source.splitlines(keepends=True)
    # Edits as (line, start, end, text) in bytes, applied from the end so offsets stay valid.
    edits: list[tuple[int, int, int, str]] = []
    recorded = False
    for check, value, is_items in zip(checks, values, items, strict=True):
        raw = lines[check.line - 1].encode("utf-8")
        old = raw[check.start : check.end].decode("utf-8")
        if is_items:
            if check.sequence == "tuple":
                value = repr(tuple(ast.literal_eval(value)))
            actual = check.actual
            a_start, a_end = actual.col_offset, actual.end_col_offset or 0
            call = raw[a_start:a_end].decode("utf-8")
            edits.append((check.line, a_start, a_end, f"{check.sequence}({call})"))
        if ast.literal_eval(old) == ast.literal_eval(value):
            continue  # this expectation was right: keep the model's spelling of it
        edits.append((check.line, check.start, check.end, value))
        recorded = True
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


__all__ = ["COMMENT", "MARKER", "observed", "observing_variant", "pinned"]
