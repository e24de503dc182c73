"""Fix this: candidate generation, verification and ranking, with a scripted model, real
parsing and real test runs in the sandbox on the sample repositories."""

from __future__ import annotations

import ast
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.actions.calls import held_names, lost_calls
from server.actions.fix import (
    MAX_BOUNDARY_CANDIDATES,
    MAX_BOUNDARY_PER_LINE,
    MAX_CANDIDATES,
    Evidence,
    FixRequest,
    FixResult,
    Kind,
    Problem,
    _trim_middle,
    boundary_candidates,
    classify,
    enclosing_block,
    fim_candidate,
    fix,
    loop_exits,
    meant_names,
    module_header,
    sibling_functions,
    splice_rewrite,
    suspicious_lines,
    value_suspects,
)
from server.actions.sandbox import Sandbox
from server.actions.textedit import apply_line_edit, minimal_line_edit, split_lines
from server.model.chat import Generate, runtime_generator
from server.model.fake import FakeEngine
from server.model.runtime import Runtime
from server.model.templates import QWEN

DATA = Path(__file__).parent / "data" / "actions"


def _copy(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    shutil.copytree(DATA / name, root)
    return root


def _fake(fim: Callable[[str, str], str], chat: Callable[[str], str]) -> Runtime:
    """FIM prompts go to fim(prefix, suffix), chat prompts to chat(prompt)."""

    def script(prompt: str) -> str:
        if QWEN.middle in prompt:
            prefix = prompt.split(QWEN.prefix, 1)[1].split(QWEN.suffix, 1)[0]
            suffix = prompt.split(QWEN.suffix, 1)[1].split(QWEN.middle, 1)[0]
            return fim(prefix, suffix)
        return chat(prompt)

    return Runtime(FakeEngine(script))


def _model_that_never_helps() -> tuple[Generate, list[str]]:
    """A model whose every answer is empty, and the prompts it is given."""
    calls: list[str] = []

    def never(prompt: str) -> str:
        calls.append(prompt)
        return "```"

    return runtime_generator(_fake(lambda prefix, suffix: never(prefix), never)), calls


def _fix_without_model(
    root: Path, files: dict[str, str], module: str, problem: Problem, **options: Any
) -> tuple[FixResult, list[str]]:
    """Fix this on `module` of a workspace at `root` holding `files`, with a model that never
    helps: the result, and the prompts the model was given."""
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    never, calls = _model_that_never_helps()
    path = root / module
    request = FixRequest(path, path.read_text(), "python", problem, root)
    return fix(request, never, fim_template=QWEN, **options), calls


def _line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines()) if needle in ln)


def test_syntax_error_fixed_by_reinfill_and_verified(tmp_path: Path) -> None:
    root = _copy(tmp_path, "fixsyntax")
    path = root / "geometry.py"
    text = path.read_text()
    line = _line_of(text, "return math.sqrt(")
    seen: list[str] = []

    def fim(prefix: str, suffix: str) -> str:
        seen.append(prefix.splitlines()[-1])
        if "FIXME" in seen[-1]:
            return "    return math.sqrt(dx * dx + dy * dy\n"  # the same mistake: must be rejected
        # Like a small model: the right lines, then on into a new function (must be cut).
        fixed = "    dy = b[1] - a[1]\n    return math.sqrt(dx * dx + dy * dy)\n"
        return fixed + "\n\ndef area(points):\n    return 0.0\n"

    runtime = _fake(fim, lambda prompt: "not python at all (\n```")
    problem = Problem(line, 20, line, 21, "SyntaxError: '(' was never closed", "infiller")
    result = fix(
        FixRequest(path, text, "python", problem, root), runtime_generator(runtime), fim_template=QWEN
    )
    assert result.kind is Kind.SYNTAX
    best = result.verified[0]
    assert best.origin == "re-infill (wider)" and best.cause_verified
    assert best.checks == ["syntax error gone"]
    # The minimal edit touches only the broken line, though the hole was wider.
    assert (best.edit.start, best.edit.end) == (line, line + 1)
    assert best.edit.new_text == "    return math.sqrt(dx * dx + dy * dy)\n"
    assert "def area" not in best.text
    # The diagnostic guided the first re-infill as a comment the edit never keeps.
    assert seen[0] == "    # FIXME: SyntaxError: '(' was never closed"
    assert "FIXME" not in best.text
    compile(best.text, "fixed", "exec")
    assert result.rejected == [("re-infill", "no change")]


def test_an_off_by_one_is_fixed_without_the_model_where_the_traceback_points(tmp_path: Path) -> None:
    root = _copy(tmp_path, "fixbug")
    path = root / "intervals.py"
    text = path.read_text()
    start = _line_of(text, "def merge(")
    never, model_calls = _model_that_never_helps()
    problem = Problem(start, 0, start + 9, 0, "")  # the user selected the function
    result = fix(
        FixRequest(path, text, "python", problem, root),
        never,
        fim_template=QWEN,
    )
    assert result.kind is Kind.OTHER and result.evidence == "an assertion saw a wrong value"
    [best] = result.verified
    line = _line_of(text, "if result and start <") + 1
    assert best.origin == f"line {line} `<` -> `<=`"
    assert best.cause_verified and best.checks == ["parses", "3/3 related tests pass"]
    assert best.edit.new_text == "        if result and start <= result[-1][1]:\n"
    assert model_calls == []  # found before any generation
    # One readable line per candidate tried, the verified one last.
    assert result.tried[-1] == f"✓ line {line} `<` -> `<=`: parses, 3/3 related tests pass"
    assert all(t.startswith("✗ line ") for t in result.tried[:-1]) and len(result.tried) <= MAX_CANDIDATES
    assert "✗ line 8 `and` -> `or`: breaks test_merge_empty, test_merge_overlapping" not in result.tried


def test_failing_function_fixed_on_its_suspicious_line_and_proved_by_its_tests(tmp_path: Path) -> None:
    root = _copy(tmp_path, "fixbug")
    path = root / "intervals.py"
    # Not a one-token bug: the boundary candidates all fail, the model's re-infill fixes it.
    text = (
        path.read_text()
        .replace("start < result", "start <= result")
        .replace("result.append((start, end))", "result.append((end, end))")
    )
    path.write_text(text)
    start = _line_of(text, "def merge(")
    hints: list[str] = []

    def fim(prefix: str, suffix: str) -> str:
        hint = prefix.splitlines()[-1]
        hints.append(hint)
        if suffix.lstrip().startswith("return result"):
            return "            result.append((start, end))\n"
        return "        pass\n"  # a wrong guess for every other line: the tests reject it

    unchanged = "".join(split_lines(text)[start:]) + "```"  # after the prefilled opening fence
    runtime = _fake(fim, lambda prompt: unchanged)
    problem = Problem(start, 0, start + 9, 0, "")
    result = fix(
        FixRequest(path, text, "python", problem, root), runtime_generator(runtime), fim_template=QWEN
    )
    assert result.kind is Kind.OTHER
    assert result.related_tests == ["tests/test_intervals.py"]
    [best] = result.verified
    assert best.origin == f"re-infill line {_line_of(text, 'result.append(') + 1}"
    assert best.cause_verified and best.checks == ["parses", "3/3 related tests pass"]
    # The failing assertion, from the real pytest run, was the hint; a wrong value returned
    # without a traceback into the function: the return line first, then the lines that build
    # what it returns, nearest first (the appended line has no operator to suspect).
    hint = "# FIXME: make this pass: assert merge([(1, 3), (2, 6), (8, 10)]) == [(1, 6), (8, 10)]"
    assert hints == [f"    {hint}", f"            {hint}"]
    assert result.tried[-1].startswith("✓ re-infill line")
    assert sum(t.startswith("✗ line ") for t in result.tried) >= 1  # boundary candidates went first
    assert result.generations == 2 and len(result.tried) <= MAX_CANDIDATES  # bounded, and stopped at the fix


def test_candidates_the_tests_reject_are_never_offered(tmp_path: Path) -> None:
    root = _copy(tmp_path, "fixbug")
    path = root / "intervals.py"
    text = path.read_text()
    start = _line_of(text, "def merge(")

    def fim(prefix: str, suffix: str) -> str:
        if not suffix.strip():  # the return line, re-infilled first (a wrong value came back)
            return "    return result)\n"
        if suffix.lstrip().startswith("return result"):  # then what builds the result
            return "            result.append((end, end))\n"  # plausible, and wrong
        return "        pass\n"

    runtime = _fake(fim, lambda prompt: "".join(split_lines(text)[start:]) + "```")
    problem = Problem(start, 0, start + 9, 0, "")
    result = fix(
        FixRequest(path, text, "python", problem, root),
        runtime_generator(runtime),
        fim_template=QWEN,
        boundary=False,  # the model's candidates only
    )
    assert result.verified == []
    assert result.rounds == 2 and result.generations == 4  # the cap: 2 re-infills, 2 rewrites
    reasons = [reason for _, reason in result.rejected]
    assert reasons[0] == "does not parse: unexpected 'return result)' at line 12"
    assert reasons[1].startswith("breaks test_merge_")  # a regression is never offered
    assert "no change" in reasons  # the rewrite that echoed the function
    assert [origin for origin, _ in result.rejected][-1] == "rewrite"  # round 2 starts with it


def test_a_typo_is_fixed_without_the_model(tmp_path: Path) -> None:
    root = _copy(tmp_path, "fixname")
    path = root / "prices.py"
    text = path.read_text()
    line = _line_of(text, "subtotl")
    calls: list[str] = []

    def fim(prefix: str, suffix: str) -> str:
        calls.append(prefix)
        return "    return round(subtotal * 100, 2)\n"  # resolves the name, changes the meaning

    problem = Problem(line, 17, line, 24, "Undefined name `subtotl`", "Ruff")
    result = fix(
        FixRequest(path, text, "python", problem, root),
        runtime_generator(_fake(fim, lambda p: "```")),
        fim_template=QWEN,
    )
    [best] = result.verified
    assert best.origin == "rename to `subtotal`" and best.checks == ["parses", "'subtotl' resolved"]
    assert best.edit.new_text == "    return round(subtotal * (1 + TAX_RATE), 2)\n"
    assert calls == []  # the exact candidate verified first: no generation at all


def test_undefined_name_fixed_by_the_model_and_a_candidate_adding_one_rejected(tmp_path: Path) -> None:
    root = _copy(tmp_path, "fixname")
    path = root / "prices.py"
    # No defined name resembles `amount`: only the model can say what was meant.
    text = path.read_text().replace("subtotl", "amount")
    line = _line_of(text, "amount")

    def fim(prefix: str, suffix: str) -> str:
        if prefix.endswith("# FIXME: undefined name 'amount'\n"):
            return "    return round(totl * (1 + TAX_RATE), 2)\n"  # still wrong: a new undefined name
        return "    subtotal = sum(prices) * (1 - discount)\n    return round(subtotal * (1 + TAX_RATE), 2)\n"

    chat = "def total(prices, discount=0.0):\n    return round(amount, 2)\n```"
    runtime = _fake(fim, lambda prompt: chat)
    problem = Problem(line, 17, line, 23, "undefined name 'amount'", "pyflakes")
    result = fix(
        FixRequest(path, text, "python", problem, root), runtime_generator(runtime), fim_template=QWEN
    )
    assert result.kind is Kind.UNDEFINED_NAME
    [best] = result.verified
    assert best.origin == "re-infill (wider)" and best.checks == ["parses", "'amount' resolved"]
    assert result.rejected == [("re-infill", "introduces undefined name(s): totl")]
    assert result.rounds == 1  # a verified candidate ends the search


def test_a_missing_stdlib_import_is_added() -> None:
    text = '"""Doc."""\n\nimport os\n\n\ndef root(x):\n    return math.sqrt(x) + len(os.sep)\n'
    problem = Problem(6, 11, 6, 15, "F821 undefined name 'math'", "flake8")
    result = fix(FixRequest(Path("m.py"), text, "python", problem, None), runtime_generator(_fake(str, str)))
    [best] = result.verified
    assert best.origin == "import math"
    assert (
        best.text
        == '"""Doc."""\n\nimport os\nimport math\n\n\ndef root(x):\n    return math.sqrt(x) + len(os.sep)\n'
    )


def test_classify_diagnostics_from_other_tools() -> None:
    ok = "x = 1\n"
    assert classify(Problem(0, 0, 0, 1, "Undefined name `foo`", "Ruff"), ok, "python") == (
        Kind.UNDEFINED_NAME,
        "foo",
    )
    assert classify(Problem(0, 0, 0, 1, '"bar" is not defined', "Pylance"), ok, "python") == (
        Kind.UNDEFINED_NAME,
        "bar",
    )
    assert classify(Problem(0, 0, 0, 1, "Expected expression", "Pylance"), ok, "python")[0] is Kind.SYNTAX
    assert classify(Problem(0, 0, 0, 1, "Argument of type int", "mypy"), ok, "python")[0] is Kind.OTHER
    assert classify(Problem(0, 0, 0, 1, ""), "def f(:\n", "python")[0] is Kind.SYNTAX


def test_enclosing_block_works_on_broken_code() -> None:
    lines = split_lines(
        "import math\n\n"
        "@cache\n"
        "def f(a,\n      b):\n    x = (a +\n    return x\n\n"
        "class K:\n    def m(self):\n        return 1\n\n"
        "y = 2\n"
    )
    block = enclosing_block(lines, 6)
    assert block is not None and (block.start, block.end, block.name) == (2, 7, "f")
    method = enclosing_block(lines, 10)
    assert method is not None and (method.name, method.indent) == ("m", "    ")
    assert enclosing_block(lines, 12) is None


def test_suspicious_lines_put_comparisons_first() -> None:
    lines = split_lines((DATA / "fixbug" / "intervals.py").read_text())
    block = enclosing_block(lines, 6)
    assert block is not None
    ranked = suspicious_lines(lines, block)
    assert lines[ranked[0]].strip() == "if result and start < result[-1][1]:"
    assert all('"""' not in lines[i] for i in ranked)


def test_a_raw_docstring_is_no_suspect_and_its_function_gets_one_token_repairs() -> None:
    # w3lib's read_bom (actions-20): `r"""` opened its docstring, the doctest lines inside were
    # ranked as the suspects, and `data[-1]` (for `data[0]`) got no one-token repair.
    text = (
        "def read_bom(data):\n"
        '    r"""The BOM.\n\n'
        "    >>> read_bom(b'\\xfe\\xff\\x6c\\x34')\n"
        "    ('utf-16-be', b'\\xfe\\xff')\n"
        '    """\n'
        "    if data and data[-1] in FIRST:\n"
        "        return 'utf-16-be', data[:2]\n"
        "    return None, None\n"
    )
    lines = split_lines(text)
    block = enclosing_block(lines, 6)
    assert block is not None
    assert suspicious_lines(lines, block) == [6, 7, 8]  # the body only
    # Other quotes inside the docstring do not close it (toolz' instanceproperty: a doctest
    # defines a class whose docstring has the other quotes).
    nested = [*lines[:3], "    ...     '''The class docstring'''\n", *lines[3:]]
    nested_block = enclosing_block(nested, 7)
    assert nested_block is not None and suspicious_lines(nested, nested_block) == [7, 8, 9]
    assert "line 7 `-1` -> `0`" in [origin for origin, _ in boundary_candidates(text, [6])]


def test_a_lines_odd_operator_out_is_changed_first() -> None:
    # python-utils' timedelta_to_seconds (actions-21): `*` -> `//` in one of three products; the
    # line's six constant changes came first, and its repair was cut at MAX_BOUNDARY_PER_LINE.
    text = "def seconds(delta):\n    total = 0\n    total += delta.days * 60 // 60 * 24\n    return total\n"
    assert boundary_candidates(text, [2])[0][0] == "line 3 `//` -> `*`"
    # Where no operator is the odd one out, the order is the mutator's.
    even = text.replace("60 // 60", "60 * 60")
    assert boundary_candidates(even, [2])[0][0] == "line 3 `24` -> `25`"


def test_trim_middle_stops_where_a_small_model_runs_on() -> None:
    middle = "    y = 2\n    return y\n\ndef other():\n    pass\n"
    assert _trim_middle(middle, "\n\ndef g():\n", 5, None, 4) == ("    y = 2\n    return y\n", True)
    assert _trim_middle("    a\n    b\n    c\n", "", 2, None, 4) == ("    a\n    b\n", True)
    assert _trim_middle("# FIXME: x\n    z = 1\n", "", 3, "# FIXME: x", 0)[0] == "    z = 1\n"
    assert _trim_middle("\n\n", "", 3, None, 0)[0] is None


@pytest.mark.parametrize(
    ("old", "new", "span"),
    [
        ("a\nb\nc\n", "a\nB\nc\n", (1, 2, "B\n")),
        ("a\nb\nc\n", "a\nb\nb2\nc\n", (2, 2, "b2\n")),
        ("a\nb", "a\nc", (1, 2, "c\n")),
        ("a\nb\n", "a\n", (1, 2, "")),
    ],
)
def test_minimal_line_edit(old: str, new: str, span: tuple[int, int, str]) -> None:
    edit = minimal_line_edit(old, new)
    assert edit is not None and (edit.start, edit.end, edit.new_text) == span
    assert apply_line_edit(old, edit).rstrip("\n") == new.rstrip("\n")
    assert minimal_line_edit(old, old) is None


def test_a_lost_return_value_is_restored_without_the_model(tmp_path: Path) -> None:
    root = _copy(tmp_path, "fixbug")
    path = root / "intervals.py"
    text = (
        path.read_text()
        .replace("start < result", "start <= result")
        .replace("    return result", "    return")
    )
    path.write_text(text)
    start = _line_of(text, "def merge(")
    never = _fake(lambda p, s: "        pass\n", lambda prompt: "```")
    result = fix(
        FixRequest(path, text, "python", Problem(start, 0, start + 9, 0, ""), root),
        runtime_generator(never),
        fim_template=QWEN,
    )
    line = _line_of(text, "    return") + 1
    # "assert None == [...]": the function's bare return is the suspect, tried first.
    assert result.evidence == f"an assertion saw a wrong value; implicated line(s) {line}"
    [best] = result.verified
    assert best.origin == f"line {line} returns `result`" and best.checks == [
        "parses",
        "3/3 related tests pass",
    ]
    assert result.tried == [f"✓ line {line} returns `result`: parses, 3/3 related tests pass"]


def test_a_project_without_pytest_gets_a_verified_fix_and_is_told(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = _copy(tmp_path, "fixbug")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / ".venv")], check=True)
    path = root / "intervals.py"
    text = path.read_text()
    start = _line_of(text, "def merge(")
    result = fix(
        FixRequest(path, text, "python", Problem(start, 0, start + 9, 0, ""), root),
        runtime_generator(_fake(lambda p, s: "        pass\n", lambda prompt: "```")),
        fim_template=QWEN,
    )
    assert [c.checks for c in result.verified] == [["parses", "3/3 related tests pass"]]
    assert result.notes == [
        f"pytest and coverage provided by infiller: the project's environment ({root / '.venv/bin/python'}) "
        "lacks them"
    ]


def test_a_reinfill_far_down_a_module_sees_its_imports_and_helpers_from_the_top() -> None:
    top = (
        "import math\n"
        "from itertools import (\n    repeat,\n    starmap,\n)\n\n"
        "_sumprod = getattr(math, 'sumprod', None)\n"
        "TABLE = [\n    1,\n    2,\n    3,\n]\n\n\n"
    )
    filler = "".join(f"def f{i}():\n    return {i}\n\n\n" for i in range(40))
    body = "def evaluate(coefficients, x):\n    powers = map(pow, repeat(x), range(3))\n    return None\n"
    lines = split_lines(top + filler + body)
    prompts: list[str] = []

    def generate(prompt: str, **_: object) -> str:
        prompts.append(prompt)
        return "    return _sumprod(coefficients, powers)\n"

    hole = len(lines) - 1
    fixed = fim_candidate(lines, hole, hole + 1, QWEN, generate, hint=None)  # type: ignore[arg-type]
    assert fixed is not None and fixed.endswith("return _sumprod(coefficients, powers)\n")
    prefix = prompts[0].split(QWEN.prefix, 1)[1].split(QWEN.suffix, 1)[0]
    # The whole multi-line import and the one-line helper come first; the data table does not.
    assert prefix.startswith(
        "import math\nfrom itertools import (\n    repeat,\n    starmap,\n)\n"
        "_sumprod = getattr(math, 'sumprod', None)\n\n\n"
    )
    assert "TABLE" not in prefix and prefix.endswith("    powers = map(pow, repeat(x), range(3))\n")
    # A window that reaches the top already shows them: nothing is repeated.
    assert module_header(lines, 0) == ""
    assert module_header(split_lines(top + body), 3) == "import math\n\n\n"


def _spliced(source: str, line: int, answer: str, name: str) -> str:
    """`answer` spliced in place of the function around 1-based `line` of `source`; it compiles."""
    lines = split_lines(source)
    block = enclosing_block(lines, line)
    assert block is not None
    text = splice_rewrite(lines, block, answer, name, "python")
    assert text is not None
    compile(text, "spliced", "exec")
    return text


def test_a_rewrite_echoing_a_parenthesised_import_adds_only_what_is_new_after_it() -> None:
    source = (
        '"""Sorting helpers."""\n'
        "from itertools import (\n    chain,\n    tee,\n)\n\n\n"
        "def is_sorted(xs):\n    a, b = tee(xs)\n    next(b, None)\n    return any(map(lt, b, a))\n"
    )
    # The model repeats the imports it was shown, in its own layout, and adds one.
    answer = (
        "```python\nfrom itertools import chain, tee\nfrom operator import lt\n\n"
        "def is_sorted(xs):\n    a, b = tee(xs)\n    next(b, None)\n    return not any(map(lt, b, a))\n```"
    )
    text = _spliced(source, 9, answer, "is_sorted")
    assert text.count("import") == 2 and "from operator import lt\n" in text
    assert text.index("from operator import lt") > text.index("    tee,\n)\n")
    assert "    return not any(map(lt, b, a))\n" in text


def test_a_rewrite_without_the_functions_name_brings_no_future_import_into_the_module() -> None:
    # colour's XYZ_to_UCS (bench actions-40): both rewrites echoed the module's header, and with
    # no definition of that name to take, the whole answer went in at the function's line, where
    # `from __future__` does not compile.
    source = (
        "from __future__ import annotations\n\nimport numpy as np\n\n\n"
        "def XYZ_to_UCS(XYZ):\n    X, Y, Z = XYZ\n    return np.array([2 * 3 * X, Y, Z])\n"
    )
    answer = (
        "```python\nfrom __future__ import annotations\n\n"
        "import numpy as np\nfrom fractions import Fraction\n\n"
        "def xyz_to_ucs(XYZ):\n    X, Y, Z = XYZ\n    return np.array([Fraction(2, 3) * X, Y, Z])\n```"
    )
    text = _spliced(source, 6, answer, "XYZ_to_UCS")
    assert text.count("from __future__") == 1 and text.startswith("from __future__")
    assert text.count("import numpy") == 1
    assert text.index("from fractions import Fraction") < text.index("def xyz_to_ucs")
    # With the name, too, an echoed future import stays out.
    named = answer.replace("xyz_to_ucs", "XYZ_to_UCS").replace("import numpy as np\n", "")
    assert _spliced(source, 6, named, "XYZ_to_UCS").count("from __future__") == 1


def test_a_product_of_two_number_literals_is_read_as_a_fraction_first() -> None:
    # colour's XYZ_to_UCS again: `2 / 3 * X` had become `2 * 3 * X`; the line's other `/`
    # evening out and ten constant changes came first, and `*` -> `/` in `2 * 3` never came.
    text = "def ucs(X, Y, Z):\n    return [2 * 3 * X, Y, 1 / 2 * (-X + 3 * Y + Z)]\n"
    origins = [origin for origin, _ in boundary_candidates(text, [1])]
    assert origins[0] == "line 2 `*` -> `/` in `2 * 3`"
    # A product with a name in it is no written fraction.
    assert "`*` -> `/` in `3 * Y`" not in " ".join(origins[:2])


def _fix_lost_return(
    path: Path, module: str, test: str, expression: str
) -> tuple[FixResult, list[str], list[str]]:
    """Fix this on lines 1-5 of `module`, written to `path` with `test` beside it, with a model
    that writes `expression` after `return ` and a bare return when asked for the whole line;
    with the FIM prefixes and suffixes it was shown."""
    path.write_text(module)
    (path.parent / f"test_{path.name}").write_text(test)
    prefixes: list[str] = []
    suffixes: list[str] = []

    def fim(prefix: str, suffix: str) -> str:
        prefixes.append(prefix)
        suffixes.append(suffix)
        return expression if prefix.endswith("    return ") else "    return\n"

    result = fix(
        FixRequest(path, path.read_text(), "python", Problem(0, 0, 5, 0, ""), path.parent),
        runtime_generator(_fake(fim, lambda prompt: "```")),
        fim_template=QWEN,
    )
    return result, prefixes, suffixes


@pytest.mark.parametrize(
    ("name", "module", "test", "expression", "evidence", "hint"),
    [
        # `return None` where a pair was returned: the caller's unpacking fails with "cannot
        # unpack non-iterable NoneType object" (no quotes around NoneType), in the test.
        (
            "pairs",
            "def peek(seq):\n"
            '    """The first item, and an iterator over all the items."""\n'
            "    iterator = iter(seq)\n"
            "    item = next(iterator)\n"
            "    return None\n",
            "from pairs import peek\n\n\ndef test_peek():\n"
            "    first, rest = peek([1, 2])\n    assert (first, list(rest)) == (1, [1, 2])\n",
            "item, iter([item, *iterator])",
            "TypeError raised; implicated line(s) 5",
            "# FIXME: TypeError: cannot unpack non-iterable NoneType object\n    return ",
        ),
        # pydash's pull_all_with (actions-17): the doctest compares the result inside repr(), so
        # the failure reads "assert 'False' == 'True'" and never shows the None; a bare `return`
        # ending the function is what says it lost its expression.
        (
            "arrays",
            "def pull_all(array, values):\n"
            '    """`array` without `values`."""\n'
            "    values = list(values)\n"
            "    item = None\n"
            "    return\n",
            "from arrays import pull_all\n\n\ndef test_pull_all():\n"
            "    res = pull_all([1, 2, 3], [2])\n    assert repr(res == [1, 3]) == 'True'\n",
            "[x for x in array if x not in values]",
            "an assertion saw a wrong value; implicated line(s) 5",
            "# FIXME: make this pass: assert repr(res == [1, 3]) == 'True'\n    return ",
        ),
    ],
    ids=["the failure shows None", "no failure shows None"],
)
def test_an_expression_a_bare_return_lost_is_written_after_return(
    tmp_path: Path, name: str, module: str, test: str, expression: str, evidence: str, hint: str
) -> None:
    # Asked for the whole line, the model writes the bare return again.
    result, prefixes, _ = _fix_lost_return(tmp_path / f"{name}.py", module, test, expression + "\n")
    assert result.evidence == evidence
    best = result.verified[0]
    assert best.origin == "re-infill line 5 after `return`" and best.cause_verified
    assert best.edit.new_text == f"    return {expression}\n"
    # The lost names were tried first, without the model; the re-infill was its first call.
    assert result.tried[0].startswith("✗ line 5 returns `") and result.tried[0].endswith("tests still fail")
    assert result.generations == 1 and prefixes[0].endswith(hint)


def test_a_lost_expression_is_found_among_the_answers_that_start_otherwise(tmp_path: Path) -> None:
    # pydash's pull_all_by (actions-13): greedy, the model wrote `return values`; the answer
    # starting with its 3rd likeliest first token was the original `pull_all(array, values)`.
    module = (
        "def pull_all_by(array, values):\n"
        '    """`array` without `values`."""\n'
        "    values = set(values)\n"
        "    array = list(array)\n"
        "    return None\n"
        "\n\n"
        # Parameters named unlike the caller's names: no call of it is proposed without the model
        # (`lost_calls`), the model's answers are what is tested here.
        "def pull_all(items, drop):\n"
        "    return [x for x in items if x not in drop]\n"
    )
    (tmp_path / "arrays.py").write_text(module)
    (tmp_path / "test_arrays.py").write_text(
        "from arrays import pull_all_by\n\n\ndef test_pull_all_by():\n"
        "    assert pull_all_by([1, 2, 3], [2]) == [1, 3]\n"
    )
    # The model's likeliest first tokens after `return ` and how it goes on from each.
    answers = {"values": "\n", "array": "\n", "pull": "_all(array, values)\n", "x": " for x in array\n"}
    likeliest = [("values", 0.4), ("array", 0.3), ("pull", 0.1), ("x", 0.01)]
    asked: list[int] = []

    def script(prompt: str) -> str:
        if QWEN.middle not in prompt:
            return "```"
        start = prompt.rsplit(QWEN.middle, 1)[1]
        return answers.get(start, "values\n") if start else "values\n"

    def first_tokens(prompt: str, k: int) -> list[tuple[str, float]]:
        assert prompt.endswith(QWEN.middle)
        asked.append(k)
        return likeliest[:k]

    result = fix(
        FixRequest(tmp_path / "arrays.py", module, "python", Problem(0, 0, 5, 0, ""), tmp_path),
        runtime_generator(Runtime(FakeEngine(script))),
        fim_template=QWEN,
        first_tokens=first_tokens,
    )
    best = result.verified[0]
    assert best.origin == "re-infill line 5 after `return`, its 3rd likeliest start" and best.cause_verified
    assert best.edit.new_text == "    return pull_all(array, values)\n"
    tried = [line.split(":")[0] for line in result.tried]
    assert tried[-3:] == [
        "✗ re-infill line 5 after `return`",
        "✗ re-infill line 5 after `return`, its 2nd likeliest start",
        "✓ re-infill line 5 after `return`, its 3rd likeliest start",
    ]
    # Answers to a prompt the model has read cost no generation of their own.
    # The model was asked for the prompt's likeliest first tokens once, for all its branches.
    assert result.generations == 1 and asked == [4]
    # A first token as unlikely as `x` is not tried: the search goes on to the next prompt.
    likeliest[2] = ("pull", 0.01)
    result = fix(
        FixRequest(tmp_path / "arrays.py", module, "python", Problem(0, 0, 5, 0, ""), tmp_path),
        runtime_generator(Runtime(FakeEngine(script))),
        fim_template=QWEN,
        first_tokens=first_tokens,
    )
    assert not any("likeliest start" in line and "3rd" in line for line in result.tried)
    assert "✗ re-infill line 5 after `return`, the function alone" in [
        line.split(":")[0] for line in result.tried
    ]


def test_a_helper_the_model_misremembers_is_read_as_the_one_the_module_defines(tmp_path: Path) -> None:
    # The helper is defined far below the function: the re-infill's window never shows it, and
    # the model writes a name one word short of it.
    filler = "".join(f"\n\ndef _unused_{i}():\n    return {i}\n" for i in range(12))
    module = (
        "def merge(*seqs, key=None):\n"
        '    """Merge sorted sequences."""\n'
        "    if key is None:\n"
        "        return sorted(x for s in seqs for x in s)\n"
        "    return None\n" + filler + "\n\n"
        # Parameters named unlike merge's names, so only the model proposes the call (`lost_calls`).
        "def _merge_sorted_binary_key(sequences, by):\n"
        "    return sorted((x for s in sequences for x in s), key=by)\n"
    )
    test = "from merging import merge\n\n\ndef test_key():\n"
    test += "    assert merge([3, 1], [2], key=lambda x: -x) == [3, 2, 1]\n"
    result, _, suffixes = _fix_lost_return(
        tmp_path / "merging.py", module, test, "_merge_sorted_key(seqs, key)\n"
    )
    assert "_merge_sorted_binary_key" not in suffixes[0]  # beyond what the model saw
    best = result.verified[0]
    assert best.origin == "re-infill line 5 after `return`" and best.cause_verified
    assert best.edit.new_text == "    return _merge_sorted_binary_key(seqs, key)\n"
    # Also where the hole is its block's only statement (toolz' merge_sorted, actions-8: the file
    # without it did not parse, and the name was left as the model wrote it).
    before = "def merge(seqs, key=None):\n    if key is None:\n        return seqs\n    else:\n"
    after = "\n\ndef _merge_sorted_binary_key(seqs, key):\n    return seqs\n"
    hole = meant_names(before, "        return _merge_sorted_key(seqs, key)\n", after)
    assert hole == "        return _merge_sorted_binary_key(seqs, key)\n"
    # A name nothing in the file resembles stays, and the candidate is rejected for it.
    assert meant_names("x = 1\n", "y = frobnicate(x)\n", "") == "y = frobnicate(x)\n"


def test_a_lost_expression_is_written_again_seeing_only_the_function(tmp_path: Path) -> None:
    # pydash's min_by lost `min(iterator_with_default(...), key=...)`; shown the next function as
    # the suffix, the 1.5B wrote a call of the function itself. The second re-infill after
    # `return` sees the function alone, and the rewrite goes before other lines' re-infills.
    module = (
        "def smallest(items, default=0):\n"
        '    """The smallest item, or `default` when there is none."""\n'
        "    items = list(items)\n"
        "    return None\n"
        "\n\n"
        "def largest(items, default=0):\n"
        "    return max(items, default=default)\n"
    )
    (tmp_path / "extremes.py").write_text(module)
    (tmp_path / "test_extremes.py").write_text(
        "from extremes import smallest\n\n\ndef test_smallest():\n"
        "    assert smallest([3, 1, 2]) == 1\n    assert smallest([]) == 0\n"
    )
    suffixes: list[str] = []

    def fim(prefix: str, suffix: str) -> str:
        suffixes.append(suffix)
        if not prefix.endswith("    return "):
            return "    return\n"
        return "smallest(items, default)\n" if "def largest" in suffix else "min(items, default=default)\n"

    path = tmp_path / "extremes.py"
    result = fix(
        FixRequest(path, module, "python", Problem(0, 0, 4, 0, ""), tmp_path),
        runtime_generator(_fake(fim, lambda prompt: "```")),
        fim_template=QWEN,
    )
    best = result.verified[0]
    assert best.origin == "re-infill line 4 after `return`, the function alone" and best.cause_verified
    assert best.edit.new_text == "    return min(items, default=default)\n"
    assert "def largest" in suffixes[0] and suffixes[1] == ""
    assert result.generations == 2


# A module like pydash's numerical.py: twins far apart, unrelated functions between them.
_TWINS = (
    "import typing as t\n\n\n"
    "@t.overload\n"
    "def min_by(collection: list[int], iteratee: None = None) -> int: ...\n\n\n"
    "def max_by(collection, iteratee=None, default=0):\n"
    '    """The largest value of `collection` by `iteratee`, or `default` when it is empty."""\n'
    "    if isinstance(collection, dict):\n"
    "        collection = collection.values()\n"
    "    return max(collection, key=iteratee or (lambda v: v), default=default)\n"
    + "".join(
        f"\n\ndef unrelated_{i}(path):\n"
        f'    """Path number {i}, read and split."""\n'
        f"    return str(path).split('/')[{i % 3}]\n"
        for i in range(20)
    )
    + "\n\ndef min_by(collection, iteratee=None, default=0):\n"
    '    """The smallest value of `collection` by `iteratee`, or `default` when it is empty."""\n'
    "    if isinstance(collection, dict):\n"
    "        collection = collection.values()\n"
    "    return None\n"
)


def test_the_twins_of_a_function_are_the_module_functions_most_like_it() -> None:
    lines = split_lines(_TWINS)
    hole = len(lines) - 1
    block = enclosing_block(lines, hole)
    assert block is not None and block.name == "min_by"
    names, shown = sibling_functions(lines, block, hole)
    assert names == ["max_by"]  # not the overload stub of min_by, not the unrelated functions
    assert shown.startswith("def max_by(collection, iteratee=None, default=0):\n")
    assert "return max(collection" in shown and '"""' not in shown  # the docstring is left out
    # A wrapper of the function is no twin: read, it invites the model to call the function.
    wrapped = split_lines(
        _TWINS.replace(
            "def unrelated_3(path):",
            "def min_(collection, default=0):\n    return min_by(collection, default=default)\n\n\n"
            "def unrelated_3(path):",
        )
    )
    wrapped_block = enclosing_block(wrapped, len(wrapped) - 1)
    assert wrapped_block is not None
    assert sibling_functions(wrapped, wrapped_block, len(wrapped) - 1)[0] == ["max_by"]


def test_a_lost_expression_is_written_again_beside_its_twin(tmp_path: Path) -> None:
    # pydash's max_by lost `return max(iterator_with_default(...), key=...)`, and both re-infills
    # after `return` missed it; its twin min_by, 100 lines away, holds the same expression.
    (tmp_path / "numerical.py").write_text(_TWINS)
    (tmp_path / "test_numerical.py").write_text(
        "from numerical import min_by\n\n\ndef test_min_by():\n"
        "    assert min_by([3, 1, 2]) == 1\n    assert min_by({'a': 4, 'b': -1}) == -1\n"
        "    assert min_by([]) == 0\n"
    )
    prefixes: list[str] = []

    def fim(prefix: str, suffix: str) -> str:
        prefixes.append(prefix)
        if "return max(collection" in prefix:  # copies the twin's shape
            return "min(collection, key=iteratee or (lambda v: v), default=default)\n"
        return "min(collection)\n" if prefix.endswith("    return ") else "    pass\n"

    lines = split_lines(_TWINS)
    result = fix(
        FixRequest(
            tmp_path / "numerical.py",
            _TWINS,
            "python",
            Problem(len(lines) - 5, 0, len(lines), 0, ""),
            tmp_path,
        ),
        runtime_generator(_fake(fim, lambda prompt: "```")),
        fim_template=QWEN,
    )
    best = result.verified[0]
    assert (
        best.origin == f"re-infill line {len(lines)} after `return`, beside `max_by`" and best.cause_verified
    )
    assert (
        best.edit.new_text == "    return min(collection, key=iteratee or (lambda v: v), default=default)\n"
    )
    assert result.generations == 3 and "return max(collection" not in prefixes[0]


def test_the_rewrite_goes_before_other_lines_when_the_function_gave_none(tmp_path: Path) -> None:
    module = (
        "def total(prices, tax):\n"
        '    """The sum of the prices with tax."""\n'
        "    net = sum(prices)\n"
        "    return None\n"
    )
    (tmp_path / "shop.py").write_text(module)
    (tmp_path / "test_shop.py").write_text(
        "from shop import total\n\n\ndef test_total():\n    assert total([1, 2], 0.5) == 4.5\n"
    )

    def fim(prefix: str, suffix: str) -> str:
        return "net\n" if prefix.endswith("    return ") else "    net = sum(prices)\n"

    path = tmp_path / "shop.py"
    result = fix(
        FixRequest(path, module, "python", Problem(0, 0, 4, 0, ""), tmp_path),
        runtime_generator(_fake(fim, lambda prompt: "```")),
        fim_template=QWEN,
    )
    assert not any(c.cause_verified for c in result.verified)
    # The lost names, the two re-infills after `return`, the rewrite, then the other lines.
    assert [line.split(":")[0] for line in result.tried[3:]] == [
        "✗ re-infill line 4 after `return`",
        "✗ re-infill line 4 after `return`, the function alone",
        "✗ rewrite",
        "✗ re-infill",
    ]


def test_a_generators_wrong_values_are_looked_for_where_it_yields_them() -> None:
    lines = split_lines(
        "def evens(n):\n"
        "    if n > 100:\n"
        "        raise ValueError(n)\n"
        "    step = 3\n"
        "    for i in range(0, n, step):\n"
        "        yield i\n"
    )
    block = enclosing_block(lines, 0)
    assert block is not None
    ranked = value_suspects(lines, block, Evidence(wrong_value=True))
    # The yield first, then the lines that mention what it yields, nearest first; the comparison
    # that suspicion alone would put first comes after them.
    assert ranked[:3] == [5, 4, 1]


# The related tests apply a decorator at import, and the bug stops their collection (toolz'
# instanceproperty, `is` -> `is not`). In actions-6 the traceback passed through the function;
# in actions-12 the function returned a wrong object, and the decorator line that called it
# failed ("object is not callable"), in no frame of the function: the call names it.
_BREAKS_IMPORT = {
    "in the function": (
        "import functools\n\n\n"
        "def tagged(fn=None, *, tag='x'):\n"
        '    """Mark a function with a tag; usable bare or with arguments."""\n'
        "    if fn is not None:\n"
        "        return functools.partial(tagged, tag=tag)\n"
        "    fn.tag = tag\n"
        "    return fn\n",
        "from deco import tagged\n\n\n@tagged(tag='y')\ndef f():\n    return 1\n\n\n"
        "def test_tagged():\n    assert f.tag == 'y' and f() == 1\n",
        Problem(3, 0, 9, 0, ""),
        "AttributeError raised; implicated line(s) 8",
        "line 6 `is not` -> `is`",
    ),
    "where its result is used": (
        "import functools\n\n\n"
        "class Tagged:\n"
        "    def __init__(self, fn, tag):\n"
        "        self.fn, self.tag = fn, tag\n\n\n"
        "def tagged(fn=None, *, tag='x'):\n"
        '    """Wrap a function with a tag; usable bare or with arguments."""\n'
        "    if fn is not None:\n"
        "        return functools.partial(tagged, tag=tag)\n"
        "    return Tagged(fn, tag)\n",
        "import deco\n\n\n@deco.tagged(tag='y')\ndef f():\n    return 1\n\n\n"
        "def test_tagged():\n    assert f.tag == 'y' and f.fn() == 1\n",
        Problem(8, 0, 13, 0, ""),
        "TypeError raised; where its result is used at test_deco.py:4",
        "line 11 `is not` -> `is`",
    ),
}


@pytest.mark.parametrize("where", list(_BREAKS_IMPORT))
def test_a_bug_that_breaks_the_tests_import_is_fixed_like_a_failing_test(tmp_path: Path, where: str) -> None:
    module, test, problem, evidence, origin = _BREAKS_IMPORT[where]
    (tmp_path / "deco.py").write_text(module)
    (tmp_path / "test_deco.py").write_text(test)
    path = tmp_path / "deco.py"
    result = fix(
        FixRequest(path, module, "python", problem, tmp_path),
        runtime_generator(_fake(lambda p, s: "    pass\n", lambda prompt: "```")),
        fim_template=QWEN,
    )
    assert result.evidence == evidence
    best = result.verified[0]
    assert best.origin == origin and best.cause_verified
    assert best.checks == ["parses", "1/1 related tests pass"]


def test_a_bug_two_assignments_above_the_return_is_reached_by_candidates_along_the_value_flow(
    tmp_path: Path,
) -> None:
    # wcwidth's `center` (actions-23): the round's one-token candidates went to the return and
    # the busiest line above it; the bug was in the assignment that feeds them both.
    root = tmp_path / "pads"
    (root / "tests").mkdir(parents=True)
    path = root / "pads.py"
    text = (
        "def center(text: str, width: int, fill: str = ' ') -> str:\n"
        '    """`text` in the middle of `width` cells."""\n'
        "    size = len(text)\n"
        "    total = max(0, width + size)\n"
        "    left = total // 2 + (total & width & 1)\n"
        "    right = total - left\n"
        "    return fill * left + text + fill * right\n"
    )
    path.write_text(text)
    (root / "tests" / "test_pads.py").write_text(
        "from pads import center\n\n\n"
        "def test_center_odd():\n    assert center('abc', 7) == '  abc  '\n\n\n"
        "def test_center_even():\n    assert center('ab', 7) == '   ab  '\n\n\n"
        "def test_center_wide():\n    assert center('abcd', 9) == '   abcd  '\n"
    )
    unchanged = "".join(split_lines(text)) + "```"
    runtime = _fake(lambda prefix, suffix: "    pass\n", lambda prompt: unchanged)
    problem = Problem(0, 0, 7, 0, "")
    result = fix(
        FixRequest(path, text, "python", problem, root), runtime_generator(runtime), fim_template=QWEN
    )
    [best] = result.verified
    assert best.origin == "line 4 `+` -> `-`", result.tried
    assert best.edit.new_text == "    total = max(0, width - size)\n"
    # Round 1 spent its one-token candidates on other lines, then the model, before this one.
    first_model = next(i for i, t in enumerate(result.tried) if "re-infill" in t or "rewrite" in t)
    assert sum(t.startswith("✗ line ") for t in result.tried[:first_model]) == MAX_BOUNDARY_CANDIDATES
    assert len(result.tried) <= MAX_CANDIDATES


SEARCH = (
    "def first_true(low, high, predicate):\n"
    '    """The smallest x in low..high with predicate(x), or -1."""\n'
    "    result = -1\n"
    "    while low <= high:\n"
    "        mid = (low + high) // 2\n"
    "        if predicate(mid):\n"
    "            result = mid\n"
    "            high = mid + 1\n"
    "        else:\n"
    "            low = mid + 1\n"
    "    return result\n"
)


def test_the_exits_of_a_loop_that_never_ends_and_what_moves_them_are_suspected_first() -> None:
    lines = split_lines(SEARCH)
    block = enclosing_block(lines, 0)
    assert block is not None
    # The while's test, then the bounds it reads (latest first), then what they are made of.
    assert loop_exits(lines, block, [4]) == [3, 9, 7, 4]
    guarded = split_lines(
        "def factor(n):\n    for v in range(3, n):\n        g = step(v, n)\n"
        "        if g == 1:\n            continue\n        if g == n:\n            break\n"
        "        if 1 < g < n:\n            return g\n"
    )
    block = enclosing_block(guarded, 0)
    assert block is not None
    # No while test: the ifs that break or return are the exits (not the one that continues),
    # then what they read, then the `for` that binds what that reads.
    assert loop_exits(guarded, block, [2]) == [5, 7, 2, 1]


def test_tests_that_hang_say_where_and_the_loop_bound_that_never_moves_is_fixed(tmp_path: Path) -> None:
    # As algorithms' binary_search_first_true (actions-29, there `high + low` in the midpoint):
    # the search never ends, the run was killed at its timeout with no traceback, and only the
    # model was tried.
    tests = (
        "from search import first_true\n\n\n"
        "def test_found():\n    assert first_true(0, 10, lambda x: x >= 7) == 7\n\n\n"
        "def test_square():\n    assert first_true(0, 10, lambda x: x * x >= 25) == 5\n\n\n"
        "def test_absent():\n    assert first_true(0, 5, lambda x: x > 10) == -1\n"
    )
    result, model_calls = _fix_without_model(
        tmp_path,
        {"search.py": SEARCH, "tests/test_search.py": tests},
        "search.py",
        Problem(0, 0, 11, 0, ""),
        sandbox_factory=lambda where: Sandbox(where, timeout_s=6),
    )
    assert result.evidence.startswith("the tests hang; implicated line(s) "), result.evidence
    best = result.verified[0]
    assert best.cause_verified and best.origin == "line 8 `+` -> `-`", result.tried
    assert best.edit.new_text == "            high = mid - 1\n"
    assert model_calls == []  # found before any generation
    # Candidates that still loop fail at their alarm ("tests still fail"), none is offered.
    assert [c for c in result.verified if not c.cause_verified] == []


def test_a_lost_call_of_an_imported_helper_is_restored_from_the_names_its_parameters_have(
    tmp_path: Path,
) -> None:
    # uniseg's line_break_units (actions-29): `return break_units(s, breakables)` lost its
    # expression; the helper comes from another module, its parameters named as the function's.
    breaking = (
        "def boundaries(breakables):\n    return [i for i, b in enumerate(breakables) if b]\n\n\n"
        "def break_units(s, breakables, /):\n"
        "    out, start = [], 0\n"
        "    for i in boundaries(breakables)[1:]:\n"
        "        out.append(s[start:i])\n"
        "        start = i\n"
        "    return out + [s[start:]] if s else out\n"
    )
    lines = (
        "from .breaking import boundaries, break_units\n\n\n"
        "def line_break_units(s, tailor=None):\n"
        '    """The pieces of `s` a line may break after."""\n'
        "    breakables = [1] + [int(s[i - 1] == ' ') for i in range(1, len(s))]\n"
        "    if tailor is not None:\n"
        "        breakables = tailor(s, breakables)\n"
        "    return None\n"
    )
    tests = (
        "from words.lines import line_break_units\n\n\n"
        "def test_units():\n    assert line_break_units('ab cd e') == ['ab ', 'cd ', 'e']\n\n\n"
        "def test_empty():\n    assert line_break_units('') == []\n"
    )
    files = {
        "src/words/__init__.py": "",
        "src/words/breaking.py": breaking,
        "src/words/lines.py": lines,
        "tests/test_lines.py": tests,
    }
    result, model_calls = _fix_without_model(tmp_path, files, "src/words/lines.py", Problem(3, 0, 9, 0, ""))
    best = result.verified[0]
    assert best.cause_verified and best.origin == "line 9 returns `break_units(s, breakables)`", result.tried
    assert model_calls == []
    # The names alone were tried first, each one test run.
    assert result.tried[0].startswith("✗ line 9 returns `breakables`")


def test_a_lost_truth_value_is_restored_where_the_module_itself_asserts_the_function(tmp_path: Path) -> None:
    # aima3's is_definite_clause (actions-36): `return True` had lost its value; the module's
    # own code asserts the function at import, so no test showed a None, and only the model
    # was tried. A bare return in a function whose other returns give values is suspect, and
    # the constants of those returns (and a truth value's opposite) are tried without the model.
    clauses = (
        "def is_definite(s):\n"
        '    """Whether `s` is a definite clause."""\n'
        "    if s.isalpha():\n"
        "        return\n"
        "    elif '=>' in s:\n"
        "        head, tail = s.split('=>')\n"
        "        return head.isalpha() and tail.isalpha()\n"
        "    else:\n"
        "        return False\n\n\n"
        "RULES = ['A', 'A=>B']\n"
        "for rule in RULES:\n"
        "    assert is_definite(rule), rule\n"
    )
    tests = (
        "from clauses import is_definite\n\n\n"
        "def test_or():\n    assert not is_definite('A|B')\n\n\n"
        "def test_atom():\n    assert is_definite('A') is True\n"
    )
    files = {"clauses.py": clauses, "tests/test_clauses.py": tests}
    result, model_calls = _fix_without_model(tmp_path, files, "clauses.py", Problem(0, 0, 9, 0, ""))
    assert result.evidence.endswith("implicated line(s) 4"), result.evidence
    best = result.verified[0]
    assert best.cause_verified and best.edit.new_text == "        return True\n", result.tried
    assert model_calls == []


def test_lost_calls_pass_keyword_only_parameters_by_name_and_skip_names_of_inner_scopes() -> None:
    text = (
        "def tally(items, *, key):\n    return {key(i) for i in items}\n\n\n"
        "def scaled(values, factor=2, /):\n    return [v * factor for v in values]\n\n\n"
        "def count_by(items, key):\n"
        "    labels = [str(i) for i in items]\n"
        "    values = sorted(labels)\n"
        "    return None\n"
    )
    # `tally`'s key is keyword-only: passed by keyword; `scaled`'s defaulted factor is
    # positional-only: left to its default; the comprehension's `i` is not a name count_by holds.
    assert lost_calls(text, 11, None, Path("m.py")) == ["tally(items, key=key)", "scaled(values)"]
    function = ast.parse(text).body[2]
    assert isinstance(function, ast.FunctionDef)
    assert held_names(function, 12) == ["values", "labels", "items", "key"]


def test_a_lines_candidates_past_the_first_cap_come_later(tmp_path: Path) -> None:
    # mercantile's `ul` (actions-35): `ytile / Z2` had become `ytile * Z2` on a line of three `*`
    # and two constants; the repair was its 9th one-token change and the cap of 6 per line
    # never reached it, in the first pass or along the value's flow.
    tests = (
        "from tiles import scale\n\n\n"
        "def test_half():\n    assert scale(3, 2) == -2.0\n\n\n"
        "def test_quarter():\n    assert scale(1, 4) == 0.5\n"
    )
    files = {"tiles.py": "def scale(y, z):\n    return 1 - 2 * y * z\n", "tests/test_tiles.py": tests}
    result, _ = _fix_without_model(tmp_path, files, "tiles.py", Problem(0, 0, 2, 0, ""))
    best = result.verified[0]
    assert best.cause_verified and best.edit.new_text == "    return 1 - 2 * y / z\n", result.tried
    first_model = next(i for i, t in enumerate(result.tried) if "re-infill" in t or "rewrite" in t)
    assert first_model == MAX_BOUNDARY_PER_LINE  # the first pass's 6, then the model, then this
