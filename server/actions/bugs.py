"""Which failing generated tests are worth calling a possible bug.

A generated test that fails against the code is either a bug in the code or a mistake of the
model. Only the first is worth the user's attention, so a failing test is reported only when
nothing shows it to be the model's mistake:

- every call of the function in it binds to the function's signature (no invented argument,
  no missing required one);
- it fails on an assertion or an exception raised in the code under test, not on its own
  NameError/ImportError/TypeError of the call, nor on an attribute its own class never defines;
- its expectation does not contradict the function's own doctests (same call, other value);
- its expectation is backed by the docstring: a doctest with that value, or the value written in
  it. A small model's failing test is far more often its own miscalculation than a bug, and a
  false "possible bug" costs the user more than a missed one (the passing tests still guard).

The others are dropped and counted, with the reason, in the action's result.
"""

from __future__ import annotations

import ast
import doctest
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

from server.actions.sandbox import STOPPED_FROM_OUTSIDE

# Exceptions a test raises by its own fault before the code under test decides anything.
_TEST_MISTAKES = re.compile(
    r"\b(NameError|ImportError|ModuleNotFoundError|SyntaxError|IndentationError|fixture '\w+' not found)\b"
)
# A TypeError about how the function was called (its arguments), as CPython words it.
_BAD_CALL = re.compile(
    r"TypeError: .*(positional argument|keyword argument|required argument|takes \d+|"
    r"missing \d+ required|unexpected keyword)"
)


# A traceback frame as the sandbox reports it ("path:line: in name"; a generated test's own lines
# are named "tests/test_m.py (generated `test_x`): in test_x"), and the frames that are not the
# code under test: the test's own, and the sandbox's alarm that stopped it.
_FRAME = re.compile(r"(?m)^(\S[^\n]*?): in [\w<>.]+$")
_TEST_SIDE_FRAMES = ("(generated `", "sandbox_runner.py")


def _own_endless_loop(message: str) -> str:
    """The test's fault when it ran past its time limit in its own code: no frame of the stopped
    test is outside it (more-itertools' `locate`: `[... for n in count()]` in the test, bench
    actions-8, reported as two possible bugs)."""
    if "TestTimedOut" not in message:
        return ""
    if STOPPED_FROM_OUTSIDE in message:
        # Deaf to its alarm, in C code no traceback shows: the loop may be the test's as well as
        # the function's, and a report without evidence is the false one this module prevents.
        return "the test ran past the time limit where no frame says whose loop it was"
    frames = _FRAME.findall(message)
    if frames and all(any(mark in frame for mark in _TEST_SIDE_FRAMES) for frame in frames):
        return "the test's own code ran past the time limit (an endless loop of its own)"
    return ""


# An attribute missing on an instance or class, as CPython words it.
_NO_ATTRIBUTE = re.compile(r"AttributeError: (?:'(\w+)' object|type object '(\w+)') has no attribute '(\w+)'")


def _own_class_lacks(test_source: str, message: str) -> str:
    """The test's fault when it reads an attribute off a class it defines itself and whose body
    never names that attribute (no def, assignment or `self.<name> =`): nothing the code under
    test could have done would give it one. ("" otherwise: a class the code gave a missing
    attribute, or an object the code returned, may be the code's bug.)"""
    m = _NO_ATTRIBUTE.search(message)
    if m is None:
        return ""
    cls, attr = m.group(1) or m.group(2), m.group(3)
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return ""
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef) or node.name != cls:
            continue
        plain_bases = all(isinstance(b, ast.Name) and b.id == "object" for b in node.bases)
        if node.decorator_list or node.keywords or not plain_bases:
            return ""  # a base, decorator or metaclass (perhaps the code under test) may add it
        named: set[str] = set()
        for n in ast.walk(node):
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                named.add(n.name)
            elif isinstance(n, ast.Name):
                named.add(n.id)
            elif isinstance(n, ast.Attribute):
                named.add(n.attr)
        if attr not in named:
            return f"the test reads `{attr}` off its own class `{cls}`, which never defines it"
    return ""


@dataclass(frozen=True)
class Signature:
    positional: tuple[str, ...]  # positional-or-keyword and positional-only, in order
    positional_only: int
    required_positional: int
    keyword_only: tuple[str, ...]
    required_keyword_only: frozenset[str]
    varargs: bool
    varkw: bool

    def binds(self, call: ast.Call) -> str:
        """Why `call` cannot bind to this signature ("" when it can, or when it cannot be told)."""
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            return ""  # *args/**kwargs at the call: not decidable statically
        n = len(call.args)
        if n > len(self.positional) and not self.varargs:
            return f"{n} positional arguments, the signature takes {len(self.positional)}"
        named = [k.arg for k in call.keywords if k.arg is not None]
        allowed = set(self.positional[self.positional_only :]) | set(self.keyword_only)
        for name in named:
            if name not in allowed and not self.varkw:
                return f"unknown keyword argument `{name}`"
            if name in self.positional[:n]:
                return f"`{name}` given twice"
        given = set(self.positional[:n]) | set(named)
        missing = [p for p in self.positional[: self.required_positional] if p not in given]
        missing += sorted(self.required_keyword_only - set(named))
        if missing:
            return f"missing required argument(s) {', '.join(f'`{m}`' for m in missing)}"
        return ""


def signature_of(node: ast.FunctionDef | ast.AsyncFunctionDef, *, bound: bool = False) -> Signature:
    """The call signature of a def (`bound`: a method called on an instance, `self` dropped)."""
    a = node.args
    positional = [p.arg for p in (*a.posonlyargs, *a.args)]
    posonly = len(a.posonlyargs)
    required = len(positional) - len(a.defaults)
    if bound and positional:
        positional, posonly, required = positional[1:], max(0, posonly - 1), max(0, required - 1)
    kwonly = tuple(p.arg for p in a.kwonlyargs)
    required_kw = frozenset(p.arg for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is None)
    return Signature(
        tuple(positional), posonly, required, kwonly, required_kw, a.vararg is not None, a.kwarg is not None
    )


def parameters_given(test_source: str, name: str, signature: Signature) -> set[str]:
    """The parameters of `name` a test passes explicitly (by position or keyword)."""
    out: set[str] = set()
    for call in _calls(test_source, name):
        plain = [a for a in call.args if not isinstance(a, ast.Starred)]
        out.update(signature.positional[: len(plain)])
        out.update(k.arg for k in call.keywords if k.arg is not None)
    return out


def _calls(test_source: str, name: str) -> list[ast.Call]:
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return []
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    ]


@dataclass(frozen=True)
class DoctestFact:
    call: str  # ast.dump of the example's expression
    value: object


def doctest_facts(function_source: str) -> list[DoctestFact]:
    """`>>> f(1, 2)` / `3` examples of a docstring whose output is a Python literal."""
    try:
        tree = ast.parse(function_source)
    except SyntaxError:
        try:
            tree = ast.parse(textwrap.dedent(function_source))
        except SyntaxError:
            return []
    facts = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        doc = ast.get_docstring(node) or ""
        for example in doctest.DocTestParser().get_examples(doc):
            try:
                expr = ast.parse(example.source.strip(), mode="eval").body
                value = ast.literal_eval(example.want.strip()) if example.want.strip() else None
            except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
                continue
            facts.append(DoctestFact(ast.dump(expr), value))
        break
    return facts


def _doctest_checks(test_source: str, facts: list[DoctestFact]) -> Iterator[tuple[ast.expr, object, object]]:
    """(call, expected value, the doctest's value) for each `assert call == literal` of the test
    (either side) whose call is one of the docstring's examples."""
    if not facts:
        return
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return
    known = {f.call: f.value for f in facts}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare)):
            continue
        cmp = node.test
        if len(cmp.ops) != 1 or not isinstance(cmp.ops[0], ast.Eq):
            continue
        for call, expected in ((cmp.left, cmp.comparators[0]), (cmp.comparators[0], cmp.left)):
            key = ast.dump(call)
            if key not in known:
                continue
            try:
                value = ast.literal_eval(expected)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            yield call, value, known[key]


def _contradicts(test_source: str, facts: list[DoctestFact]) -> str:
    """The doctest an `assert call == value` of the test contradicts, or ""."""
    for call, value, said in _doctest_checks(test_source, facts):
        if value != said:
            example = f"`{ast.unparse(call)}` is {said!r}"
            return f"the docstring's example says {example}, the test expects {value!r}"
    return ""


def _expected_values(test_source: str) -> list[object]:
    """The literal right-hand sides of the test's `assert x == literal` (either side)."""
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return []
    out: list[object] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1:
            for side in (node.test.comparators[0], node.test.left):
                try:
                    out.append(ast.literal_eval(side))
                    break
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    continue
    return out


def _prose(docstring: str) -> str:
    """The docstring without its doctest examples (their source lines and their output)."""
    try:
        parts = doctest.DocTestParser().parse(docstring)
    except ValueError:  # a malformed example: keep the text as it is
        return docstring
    return "".join(p for p in parts if isinstance(p, str))


def _doctest_says(test_source: str, facts: list[DoctestFact]) -> bool:
    """Whether one of the test's `assert call == value` is a doctest of the docstring: the same
    call with the same value."""
    return any(
        value == said and type(value) is type(said) for _, value, said in _doctest_checks(test_source, facts)
    )


def supported(test_source: str, docstring: str, facts: list[DoctestFact]) -> bool:
    """Whether the docstring backs the test's expectation: a doctest of the same call with the
    same value, or the expected string or container written in its prose. A model's own
    arithmetic is not evidence of a bug.

    A value matched alone proves nothing: a doctest's `True` says nothing of another call's, and
    the numbers of prose and examples are as often inputs (`x^3 - 4 * x^2 - 17 * x + 60 at
    x = 2.5`) as results. Both made false reports on released code (bench/actions_bench.py)."""
    if _doctest_says(test_source, facts):
        return True
    prose = _prose(docstring)
    for value in _expected_values(test_source):
        if isinstance(value, bool | type(None) | int | float | complex):
            continue  # a truth value, None or a number in prose says nothing about this call
        if repr(value) in prose or (isinstance(value, str) and len(value) > 1 and value in prose):
            return True
    return False


def _call_mistake(test_source: str, message: str, name: str, signature: Signature | None) -> str:
    """Why the test fails by how it calls the function or by its own error ("" when neither)."""
    if signature is not None:
        for call in _calls(test_source, name):
            why = signature.binds(call)
            if why:
                return f"calls `{name}` with {why}"
    if _BAD_CALL.search(message):
        return "calls the function in a way its signature does not allow"
    mistake = _TEST_MISTAKES.search(message)
    if mistake:
        return f"the test itself fails ({mistake.group(1)})"
    return _own_class_lacks(test_source, message) or _own_endless_loop(message)


def _failing_assertions(test_source: str, message: str) -> str:
    """The test's assert statements the failure report shows (their source, one per line), or ""
    when it shows none of them (the code raised, or the report is cut)."""
    try:
        tree = ast.parse(test_source)
    except SyntaxError:
        return ""
    shown = {line.strip() for line in message.splitlines()}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            segment = ast.get_source_segment(test_source, node) or ""
            if segment and segment.splitlines()[0].strip() in shown:
                found.append(textwrap.dedent(segment))
    return "\n".join(found)


def _unbacked(test_source: str, message: str, facts: list[DoctestFact], docstring: str | None) -> str:
    """Why the test's expected value is not evidence ("" when the docstring backs it).

    The backing must be the failing assertion's: a test that repeats a doctest and then asserts
    its own guess is backed only where it passes (inflection's underscore, bench actions-17: the
    model's `underscore("HTTPError404") == "http_error_404"` after the doctest's `DeviceType`)."""
    contradiction = _contradicts(test_source, facts)
    if contradiction:
        return contradiction
    failing = _failing_assertions(test_source, message) or test_source
    if docstring is not None and not supported(failing, docstring, facts):
        return "its expected value is the model's own: nothing in the docstring backs it"
    return ""


def not_a_bug(
    test_source: str,
    message: str,
    name: str,
    signature: Signature | None,
    facts: list[DoctestFact],
    docstring: str | None = None,
) -> str:
    """Why a failing test is the test's mistake, not the code's ("" when it may be a real bug).

    With `docstring` given, a failing assertion must also be backed by it (`supported`)."""
    return _call_mistake(test_source, message, name, signature) or _unbacked(
        test_source, message, facts, docstring
    )


def miscalculated(
    test_source: str,
    message: str,
    name: str,
    signature: Signature | None,
    facts: list[DoctestFact],
    docstring: str,
) -> bool:
    """Whether a failing test calls the function as its signature allows, fails by no error of
    its own, and expects a value nothing backs: good inputs, the model's own arithmetic. Such a
    test can keep its inputs and take its expected values from the code (`server.actions.pin`)."""
    if _call_mistake(test_source, message, name, signature):
        return False
    return bool(_unbacked(test_source, message, facts, docstring))


__all__ = [
    "DoctestFact",
    "Signature",
    "doctest_facts",
    "miscalculated",
    "not_a_bug",
    "parameters_given",
    "signature_of",
    "supported",
]
