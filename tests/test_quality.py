"""What generated tests would catch: the mutator, branch coverage, the measure in the sandbox,
and which failing tests count as possible bugs."""

from __future__ import annotations

import ast
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from server.actions.bugs import doctest_facts, not_a_bug, signature_of, supported
from server.actions.quality import (
    branches_of,
    covered,
    measure,
    missing_branches,
    missing_lines,
    mutants,
    spread,
    useful_tests,
)
from server.actions.sandbox import RunResult, Sandbox, isolation_available

DATA = Path(__file__).parent / "data" / "actions"
needs_isolation = pytest.mark.skipif(
    not isolation_available()[0], reason=f"no sandbox on this machine: {isolation_available()[1]}"
)

CLAMP = '''def clamp(x, lo=0, hi=10):
    """Limit x to [lo, hi].

    >>> clamp(12)
    10
    """
    if x < lo:  # below
        return lo
    if x > hi and not hi < 0:
        return hi
    return x + 0
'''


def test_the_mutator_changes_one_operator_or_constant_on_one_line() -> None:
    found = [(m.line, m.kind, m.description) for m in mutants(CLAMP, 1, 11)]
    assert (7, "comparison", "`<` -> `<=`") in found
    assert (1, "constant", "`10` -> `11`") in found  # the default argument's boundary
    assert (9, "boolean", "`and` -> `or`") in found
    assert (9, "negation", "`not` removed") in found
    assert (8, "return", "returns None") in found
    # An equivalent mutant (`x - 0`) is made too: the mutator cannot know; a score counts it.
    assert (11, "arithmetic", "`+` -> `-`") in found
    lines = CLAMP.splitlines()
    for m in mutants(CLAMP, 1, 11):
        changed = [i + 1 for i, (a, b) in enumerate(zip(lines, m.text.splitlines(), strict=True)) if a != b]
        assert changed == [m.line]
        compile(m.text, "mutant", "exec")
    # The rest of a mutated line stays as written (its comment too), and docstrings are left alone.
    lt = next(m for m in mutants(CLAMP, 7, 7) if m.description == "`<` -> `<=`")
    assert lt.text.splitlines()[6] == "    if x <= lo:  # below"
    assert not mutants(CLAMP, 2, 5)


def test_every_single_line_mutant_has_its_inverse_among_the_repairs() -> None:
    """Fix this's boundary candidates undo whatever the mutator does to an operator or constant
    (a lost return value excepted: only the model can restore an expression)."""
    source = (
        "def f(form, a, b):\n    x = form[0] + a * b\n    return x // 2 if a < 3 else x / 2 % 7\n\n\n"
        "def g(xs, strict):\n    return not any(map(strict, xs))  # sorted\n\n\n"
        # A comprehension's filter (pydash's is_monotone lost its `not`, bench actions-14).
        "def h(xs, op):\n    return next((False for x, y in zip(xs, xs[1:]) if not op(x, y)), True)\n\n\n"
        # An operand of `and` over several lines (jsonpickle's is_sequence_subclass, actions-27).
        "def k(obj, kinds, plain):\n    return (\n        isinstance(obj, kinds)\n"
        "        and not plain(obj)\n    )\n"
    )
    for m in mutants(source, 1, 19):
        if m.kind == "return":
            continue
        repairs = {r.text for r in mutants(m.text, m.line, m.line, repair=True)}
        assert source in repairs, m.description
    # `not` lost from a returned truth value: negating the return restores the line as written.
    lost = next(m for m in mutants(source, 7, 7) if m.description == "`not` removed")
    [back] = [r for r in mutants(lost.text, 7, 7, repair=True) if r.description == "return value negated"]
    assert back.text == source
    # A negative constant is repaired as the number it reads as, never through `-0`.
    minus = next(m for m in mutants(source, 2, 2) if m.description == "`0` -> `-1`")
    fixes = [r.description for r in mutants(minus.text, 2, 2, repair=True) if r.kind == "constant"]
    assert fixes == ["`-1` -> `0`", "`-1` -> `-2`"]


def test_two_identical_changes_on_one_line_say_which_expression_they_change() -> None:
    # sieve's line (more-itertools, bench actions-8): Fix this listed "`*` -> `//`" twice.
    source = "def f(i, n):\n    return i * i * n  # square times n\n"
    described = [m.description for m in mutants(source, 2, 2, repair=True) if m.kind == "arithmetic"]
    assert described == [
        "`*` -> `//` in `i * i * n`",
        "`*` -> `/` in `i * i * n`",
        "`*` -> `//` in `i * i`",
        "`*` -> `/` in `i * i`",
    ]
    # The same text twice (convolve's line, bench actions-10): which one, counted from the left.
    zeros = "def f(n):\n    return [0] * (n - 1) + [0]\n"
    described = [
        m.description for m in mutants(zeros, 2, 2, repair=True) if m.description.startswith("`0` -> `1`")
    ]
    assert sorted(described) == [
        "`0` -> `1` in the 1st `0` of the line",
        "`0` -> `1` in the 2nd `0` of the line",
    ]
    # One change of its kind on a line needs no more words.
    assert [m.description for m in mutants("def f(i):\n    return i * 2\n", 2, 2, repair=True)][-2:] == [
        "`*` -> `//`",
        "`*` -> `/`",
    ]


def test_spread_takes_every_line_before_a_second_mutant_of_one() -> None:
    chosen = spread(mutants(CLAMP, 1, 11), 5)
    assert len({m.line for m in chosen}) == 5


def test_branch_coverage_counts_arcs_of_the_function_only() -> None:
    branches = branches_of(CLAMP, 1, 11)
    assert (7, 8) in branches.arcs and (7, 9) in branches.arcs
    assert covered(branches, set()) == (0, len(branches.arcs))
    assert covered(branches, set(branches.arcs)) == (len(branches.arcs),) * 2


def test_a_branch_no_test_takes_is_said_as_the_case_to_test() -> None:
    source = (
        "def first_big(xs, limit):\n"
        "    for x in xs:\n"
        "        if x > limit:\n"
        "            return x\n"
        "    while limit > 0:\n"
        "        limit -= 1\n"
        "    return None\n"
    )
    branches = branches_of(source, 1, 7)
    # A test with one small item: the loop runs and ends, the condition is false, the while
    # loop never runs (limit 0).
    executed = {(2, 3), (3, 2), (2, 5), (5, 7)}
    said = missing_branches(branches, executed, source.splitlines())
    assert said == [
        "line 3 the condition `x > limit` is never true",
        "line 5 the loop `while limit > 0` never runs its body",
    ]
    said = missing_branches(branches, set(), source.splitlines())
    assert "line 2 the loop over `xs` never runs (no test gives it an item)" in said
    assert any(s.startswith("line 2 the loop over `xs` never runs to its end") for s in said)
    assert "line 3 the condition `x > limit` is never false" in said
    # A local the condition reads is said through its assignment: a test sets the parameters.
    local = "def poly(cs, x):\n    n = len(cs)\n    if n == 0:\n        return x * 0\n    return n\n"
    said = missing_branches(branches_of(local, 1, 5), {(3, 5)}, local.splitlines())
    assert said == ["line 3 the condition `n == 0` is never true, that is: `len(cs) == 0`"]
    # A name assigned twice has no one value: the condition stays as written.
    twice = local.replace("    if n == 0", "    n += 1\n    if n == 0")
    said = missing_branches(branches_of(twice, 1, 6), {(4, 6)}, twice.splitlines())
    assert said == ["line 4 the condition `n == 0` is never true"]


def test_a_handler_no_test_reaches_is_said_as_the_exception_to_raise() -> None:
    # more-itertools' iterate: no branch for coverage.py to count, so no gap was named and the
    # coverage round never asked for the test that stops it.
    source = (DATA / "endless" / "stop.py").read_text()  # iterate, as more-itertools has it
    branches = branches_of(source, 1, 7)
    assert not branches.arcs
    executed = {(-1, 1), (1, -1), (-2, 2), (2, 3), (3, 4), (4, 5), (5, 2)}
    assert missing_lines(branches, executed, source) == [
        "line 6 the handler `except StopIteration:` never runs: no test makes "
        "`start = func(start)` raise StopIteration: pass as `func` a function of the test that "
        "raises it, such as `def func_raising(*args): raise StopIteration`"
    ]
    assert missing_lines(branches, executed | {(5, 6), (6, 7), (7, -2)}, source) == []
    # A handler in a nested function is walked from both functions: it is said once.
    nested = (
        "def outer(func):\n    def inner():\n        try:\n            return func()\n"
        "        except KeyError:\n            return 0\n    return inner()\n"
    )
    ran = {(-1, 1), (1, 2), (2, 7), (7, -1), (-2, 3), (3, 4), (4, -2)}
    said = missing_lines(branches_of(nested, 1, 7), ran, nested)
    assert len(said) == 1 and said[0].startswith("line 5 the handler `except KeyError:` never runs")


def test_an_isinstance_branch_is_said_with_a_value_that_takes_it() -> None:
    # toolz' nth: the 1.5B, told only "never false", passed lists in every test it wrote.
    source = (
        "def nth(n, seq):\n"
        "    if isinstance(seq, (tuple, list, Sequence)):\n"
        "        return seq[n]\n"
        "    else:\n"
        "        return next(islice(seq, n, None))\n"
    )
    said = missing_branches(branches_of(source, 1, 5), {(2, 3)}, source.splitlines())
    assert said == [
        "line 2 the condition `isinstance(seq, (tuple, list, Sequence))` is never false: give `seq`"
        " something that is not a tuple, list or Sequence, such as `iter([1, 2, 3])`"
    ]
    negated = "def f(x):\n    if not isinstance(x, numbers.Number):\n        return 0\n    return x\n"
    said = missing_branches(branches_of(negated, 1, 4), {(2, 3)}, negated.splitlines())
    assert said == [
        "line 2 the condition `not isinstance(x, numbers.Number)` is never false:"
        " give `x` a Number, such as `3`"
    ]
    # The project's own class: no value to suggest, the case is said as before.
    own = "def f(x):\n    if isinstance(x, Node):\n        return 0\n    return 1\n"
    said = missing_branches(branches_of(own, 1, 4), {(2, 4)}, own.splitlines())
    assert said == ["line 2 the condition `isinstance(x, Node)` is never true"]


def test_useful_tests_keeps_what_adds_a_branch_or_a_kill() -> None:
    from server.actions.quality import Quality

    quality = Quality(3, 2, 4, 2, 3)
    quality.arcs = {"a": {(7, 8)}, "b": {(7, 8)}, "c": {(7, 9)}}
    quality.kills = {"a": {0}, "b": {0}, "c": {1}}
    assert useful_tests(["a", "b", "c"], quality) == (["a", "c"], ["b"])
    quality.kills["b"] = {0, 2}
    assert useful_tests(["a", "b", "c"], quality) == (["a", "b", "c"], [])


@pytest.fixture
def fixbug(tmp_path: Path) -> Path:
    root = tmp_path / "fixbug"
    shutil.copytree(DATA / "fixbug", root)
    return root


WEAK = "from intervals import merge\n\n\ndef test_empty():\n    assert merge([]) == []\n"
STRONG = WEAK + (
    "\n\ndef test_overlap():\n    assert merge([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)]\n"
    "\n\ndef test_apart():\n    assert merge([(5, 6), (1, 2)]) == [(1, 2), (5, 6)]\n"
    "\n\ndef test_inside():\n    assert merge([(1, 9), (2, 3)]) == [(1, 9)]\n"
)


@needs_isolation
def test_a_suite_that_checks_values_scores_higher_than_one_that_barely_runs(fixbug: Path) -> None:
    text = (fixbug / "intervals.py").read_text()

    def score(suite: str) -> tuple[int, int, int, int]:
        with Sandbox(fixbug) as sandbox:

            def run(overlay: Mapping[str, str], with_coverage: bool) -> RunResult:
                files = {**overlay, "tests/test_gen.py": suite}
                cover = ["intervals.py"] if with_coverage else []
                return sandbox.run_pytest(files, ["tests/test_gen.py"], coverage=cover)

            names = [n.name for n in ast.parse(suite).body if isinstance(n, ast.FunctionDef)]
            q = measure("intervals.py", text, 4, 12, names, run)
        return q.branches_covered, q.branches_total, q.mutants_killed, q.mutants_total

    weak, strong = score(WEAK), score(STRONG)
    assert weak[1] == strong[1] == 4 and weak[3] == strong[3] > 5
    assert weak[0] < strong[0] == 4  # every branch of the loop and the `if`
    assert weak[2] < strong[2]
    assert strong[2] >= strong[3] - 3  # a few equivalent/untestable mutants may survive


def test_a_failing_test_calling_the_function_wrongly_is_not_a_bug() -> None:
    sig = signature_of(ast.parse(CLAMP).body[0])  # type: ignore[arg-type]
    invented = "def test_a():\n    assert clamp(5, lo=0, high=3) == 3\n"
    assert "unknown keyword argument `high`" in not_a_bug(invented, "assert 5 == 3", "clamp", sig, [])
    too_many = "def test_b():\n    assert clamp(1, 2, 3, 4) == 3\n"
    assert "4 positional arguments" in not_a_bug(too_many, "", "clamp", sig, [])
    missing = "def test_c():\n    assert clamp(lo=1) == 1\n"
    assert "missing required argument(s) `x`" in not_a_bug(missing, "", "clamp", sig, [])
    fine = "def test_d():\n    assert clamp(-1, hi=3) == 1\n"
    assert not_a_bug(fine, "assert 0 == 1", "clamp", sig, []) == ""


def test_a_failing_test_contradicted_by_the_doctest_is_not_a_bug() -> None:
    facts = doctest_facts(CLAMP)
    assert len(facts) == 1 and facts[0].value == 10
    sig = signature_of(ast.parse(CLAMP).body[0])  # type: ignore[arg-type]
    wrong = "def test_e():\n    assert clamp(12) == 12\n"
    assert "docstring's example says `clamp(12)` is 10" in not_a_bug(
        wrong, "assert 10 == 12", "clamp", sig, facts
    )
    agrees = "def test_f():\n    assert clamp(12) == 10\n"
    assert not_a_bug(agrees, "assert 12 == 10", "clamp", sig, facts) == ""


def test_a_test_failing_on_its_own_name_error_is_not_a_bug() -> None:
    msg = "E   NameError: name 'math' is not defined"
    assert "NameError" in not_a_bug("def test_g():\n    assert clamp(math.pi) == 3\n", msg, "clamp", None, [])


POLYNOMIAL = '''def polynomial_eval(coefficients, x):
    """Evaluate a polynomial at a specific value.

    Example: evaluating x^3 - 4 * x^2 - 17 * x + 60 at x = 2.5:

    >>> polynomial_eval([1, -4, -17, 60], 2.5)
    8.125
    >>> polynomial_eval([2, 3], 'spam')
    'spam'
    """
'''


def test_a_doctest_the_test_repeats_does_not_back_the_assertion_that_fails() -> None:
    # inflection's underscore (bench actions-17): the test began with the doctest's call, then
    # asserted the model's guess, which failed on the released code and was reported as a bug.
    code = 'def underscore(word):\n    """>>> underscore("DeviceType")\n    \'device_type\'\n    """\n'
    facts = doctest_facts(code)
    doc = ast.get_docstring(ast.parse(code).body[0]) or ""  # type: ignore[arg-type]
    test = (
        "def test_underscore():\n"
        '    assert underscore("DeviceType") == "device_type"\n'
        '    assert underscore("HTTPError404") == "http_error_404"\n'
    )
    guess = (
        'in test_underscore\n    assert underscore("HTTPError404") == "http_error_404"\n'
        "E   AssertionError: assert 'http_error404' == 'http_error_404'\n"
    )
    assert "nothing in the docstring backs it" in not_a_bug(test, guess, "underscore", None, facts, doc)
    # Failing where the doctest says what it expects, it may be a bug.
    said = (
        'in test_underscore\n    assert underscore("DeviceType") == "device_type"\n'
        "E   AssertionError: assert 'devicetype' == 'device_type'\n"
    )
    assert not_a_bug(test, said, "underscore", None, facts, doc) == ""


def test_numbers_and_inputs_in_the_docstring_do_not_back_an_expectation() -> None:
    facts = doctest_facts(POLYNOMIAL)
    doc = ast.get_docstring(ast.parse(POLYNOMIAL).body[0]) or ""  # type: ignore[arg-type]

    def backed(expected: str) -> bool:
        return supported(f"def test_p():\n    assert polynomial_eval([1, 2], 3) == {expected}\n", doc, facts)

    # A miscalculated value that happens to be a coefficient of the prose's example, or an input
    # of a doctest, is the model's own arithmetic.
    assert not backed("17") and not backed("60") and not backed("2.5") and not backed("[1, -4, -17, 60]")
    # A doctest's output backs the same call only; a string the prose states backs any call.
    assert not backed("8.125") and not backed("'spam'")
    assert supported("def test_r():\n    assert polynomial_eval([2, 3], 'spam') == 'spam'\n", doc, facts)
    assert not supported("def test_s():\n    assert polynomial_eval([2, 3], 'spam') == 'eggs'\n", doc, facts)
    assert supported("def test_q():\n    assert f() == 'a specific value'\n", doc, facts)
    # A truth value a doctest shows for one call says nothing of another call's.
    sorted_facts = doctest_facts('def is_sorted(xs):\n    """>>> is_sorted([1, 2])\n    True\n    """\n')
    assert not supported("def test_t():\n    assert is_sorted([2, 1]) == True\n", "", sorted_facts)
    assert supported("def test_u():\n    assert is_sorted([1, 2]) == True\n", "", sorted_facts)


def test_a_test_reading_an_attribute_its_own_class_never_defines_is_not_a_bug() -> None:
    # toolz' instanceproperty (bench actions-6): the test's class defines `__doc__` only, then
    # reads `obj.val`; the docstring backs its other assertion, so only the error tells.
    own = (
        "def test_f():\n"
        "    class MyClass:\n"
        "        @instanceproperty(classval=None)\n"
        "        def __doc__(self):\n"
        "            return 'An object docstring'\n"
        "    obj = MyClass()\n"
        "    assert obj.__doc__ == 'An object docstring'\n"
        "    assert obj.val is None\n"
    )
    error = "E   AttributeError: 'MyClass' object has no attribute 'val'"
    why = not_a_bug(own, error, "instanceproperty", None, [])
    assert why == "the test reads `val` off its own class `MyClass`, which never defines it"
    # The class names the attribute (the code under test should have made it work): maybe a bug.
    defined = own.replace("def __doc__(self)", "def val(self)")
    assert not_a_bug(defined, error, "instanceproperty", None, []) == ""
    # A class with a base, or an object the function returned, may lack it by the code's fault.
    based = own.replace("class MyClass:", "class MyClass(Base):")
    assert not_a_bug(based, error, "instanceproperty", None, []) == ""
    returned = "def test_g():\n    assert make().val is None\n"
    assert (
        not_a_bug(returned, "E   AttributeError: 'Made' object has no attribute 'val'", "make", None, [])
        == ""
    )


def test_a_test_that_loops_forever_in_its_own_code_is_not_a_bug() -> None:
    # more-itertools' locate (bench actions-8): the test builds a list over `count()` itself and
    # never gets to a verdict on the function; the sandbox's alarm stops it in its own frame.
    test = (
        "def test_locate_normal():\n"
        "    source = [3 * n + 1 if (n % 2) else n // 2 for n in count()]\n"
        "    assert next(locate(source)) == 1\n"
    )
    own = (
        "tests/test_more.py (generated `test_locate_normal`): in test_locate_normal\n"
        "    source = [3 * n + 1 if (n % 2) else n // 2 for n in count()]\n"
        "tests/test_more.py (generated `test_locate_normal`): in <listcomp>\n"
        "    source = [3 * n + 1 if (n % 2) else n // 2 for n in count()]\n"
        "/run/infiller/sandbox_runner.py:47: in _timed_out\n"
        '    raise TestTimedOut(f"the test ran past {_test_timeout_s:g} s")\n'
        "E   sandbox_runner.TestTimedOut: the test ran past 2 s (an endless loop or iterator?)"
    )
    why = not_a_bug(test, own, "locate", None, [])
    assert why == "the test's own code ran past the time limit (an endless loop of its own)"
    # Stopped inside the function: the function may be what never ends.
    inside = own.replace(
        "/run/infiller/sandbox_runner.py:47",
        "more_itertools/more.py:2411: in locate\n"
        "    return compress(count(), it)\n"
        "/run/infiller/sandbox_runner.py:47",
    )
    assert not_a_bug(test, inside, "locate", None, []) == ""


@needs_isolation
def test_a_test_stopped_from_outside_is_not_reported_as_a_bug(fixbug: Path) -> None:
    # `list(iterate(f, 1))` inside the test, or an endless loop the function runs in C code: the
    # sandbox stops either from outside, without a traceback, so nothing says it is the code's.
    test = "import itertools\n\n\ndef test_spin():\n    assert sum(itertools.repeat(1)) == 3\n"
    with Sandbox(fixbug, timeout_s=30) as sandbox:
        run = sandbox.run_pytest({"tests/test_gen.py": test}, ["tests/test_gen.py"], test_timeout_s=1)
    (failure,) = run.failed()
    why = not_a_bug(test, failure.message, "total", None, [])
    assert why == "the test ran past the time limit where no frame says whose loop it was"
