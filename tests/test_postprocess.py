"""Post-processing on real shapes of model output: what the user sees, and why nothing is shown."""

from __future__ import annotations

import pytest

from server.model.postprocess import Mode, Reason, StreamFilter, finalize, plan_completion
from tests.conftest import split_cursor


def plan_for(source: str, language: str | None = "python"):
    prefix, suffix = split_cursor(source)
    return plan_completion(prefix, suffix, language)


MODE_CASES = [
    ("mid-line call", "x = compute(█)\n", Mode.LINE),
    ("end of statement line", "total = █\n", Mode.LINE),
    ("empty line after def", "def f(x):\n    █\n", Mode.BLOCK),
    ("end of def line", "def f(x):█\n", Mode.BLOCK),
    ("empty line inside function body", "def f(x):\n    y = 1\n    █\n    return y\n", Mode.BLOCK),
    ("inside a comment", "# compute the █\n", Mode.LINE),
    ("inside a one-line string", 'msg = "hello █"\n', Mode.LINE),
    ("empty line at module level", "import os\n\n█\n", Mode.BLOCK),
    ("js empty line after brace", "function f(a) {\n  █\n}\n", Mode.BLOCK),
    ("js mid-line", "const x = a.map(█);\n", Mode.LINE),
    ("dict literal line end colon is not a block in a string", "s = 'a:█'\n", Mode.LINE),
    ("a dict value after its key's colon", "T = {\n    'a': 1,\n    'b': █\n}\n", Mode.LINE),
    ("a lambda's body", "f = lambda x: █\n", Mode.LINE),
    ("a lambda inside an open call", "items.sort(\n    key=lambda x:█\n", Mode.LINE),
    ("a slice", "y = x[1:█\n", Mode.LINE),
    ("an annotation inside parameters", "def f(x: █\n", Mode.LINE),
    ("a def line with a dict default", "def f(x={}):█\n", Mode.BLOCK),
    ("a def header over several lines", "def f(\n    a,\n):█\n", Mode.BLOCK),
    ("a case with a dict pattern", "match x:\n    case {'a': 1}:█\n", Mode.BLOCK),
    ("a class attribute's annotation", "class Request:\n    cookies:█\n", Mode.LINE),
    ("an attribute annotated on self", "class A:\n    def f(self):\n        self.size: █\n", Mode.LINE),
    ("else opens a block", "if x:\n    pass\nelse:█\n", Mode.BLOCK),
    ("a bare except opens a block", "try:\n    f()\nexcept:█\n", Mode.BLOCK),
    ("try opens a block", "def f():\n    try:█\n", Mode.BLOCK),
]


@pytest.mark.parametrize(("name", "source", "mode"), MODE_CASES, ids=[c[0] for c in MODE_CASES])
def test_mode(name: str, source: str, mode: Mode) -> None:
    language = "javascript" if name.startswith("js") else "python"
    assert plan_for(source, language).mode is mode


# (name, source with cursor, raw model output, what the user sees or None, reason)
CASES = [
    (
        "single line stops at newline, drops the asserts after it",
        "def area(r):\n    return █\n",
        "3.14159 * r * r\n\nassert area(1) == 3.14159\nassert area(2) > 12\n",
        "3.14159 * r * r",
        Reason.LINE_END,
    ),
    (
        "rest of line is not duplicated",
        "print(█)\n",
        '"hello")\n',
        '"hello"',
        Reason.LINE_END,
    ),
    (
        "closers already after the cursor are dropped",
        "result = max(values, key=█)\n",
        "lambda v: abs(v))\n",
        "lambda v: abs(v)",
        Reason.LINE_END,
    ),
    (
        "brackets the completion opened are closed",
        "items = █\n",
        "sorted(data, key=len",
        "sorted(data, key=len)",
        "end",
    ),
    (
        "a call whose arguments already follow below is left open (black's layout)",
        '    if u == v:\n        raise █\n            "source and sink are the same node"\n        )\n',
        "nx.NetworkXError(\n",
        "nx.NetworkXError(",
        Reason.LINE_END,
    ),
    (
        "... also when the model stops right after the bracket",
        "    return █\n        environ, trusted_hosts\n    )\n",
        "utils.get_host(",
        "utils.get_host(",
        "end",
    ),
    (
        "a closer below that closes the cursor line's own bracket does not keep the completion's open",
        "    total = sum(█\n        values,\n    )\n",
        "len(x",
        "len(x)",
        "end",
    ),
    (
        "a call the completion opens and breaks goes on to the line that closes it",
        "def merge(a, b):\n    frame = █\n",
        "pd.concat(\n        [a, b],\n        axis=1,\n    )\n    return frame\n",
        "pd.concat(\n        [a, b],\n        axis=1,\n    )",
        Reason.LINE_END,
    ),
    (
        "... also when the model ends right after the closer",
        "def merge(a, b):\n    frame = █\n",
        "pd.concat(\n        [a, b], axis=1\n    )",
        "pd.concat(\n        [a, b], axis=1\n    )",
        Reason.LINE_END,
    ),
    (
        "... and when the model ends before closing it: its first line, closed",
        "def merge(a, b):\n    frame = █\n",
        "pd.concat(\n        [a, b],",
        "pd.concat()",
        Reason.LINE_END,
    ),
    (
        "... and when nothing closes it within the bound",
        "x = █\n",
        "dict(\n" + "    a=1,\n" * 20 + ")\n",
        "dict()",
        Reason.LINE_END,
    ),
    (
        "... and a hanging indent too",
        "x = █\n",
        "compute(alpha, beta,\n        gamma)\nprint(x)\n",
        "compute(alpha, beta,\n        gamma)",
        Reason.LINE_END,
    ),
    (
        "after a bracket the user opened at the line end, the argument lines come",
        "def f(a, b):\n    return dict(█\n",
        "\n        a=a,\n        b=b,\n    )\n\nprint(f(1, 2))\n",
        "\n        a=a,\n        b=b,\n    )",
        Reason.LINE_END,
    ),
    (
        "... or a hanging indent",
        "x = compute(█\n",
        "alpha,\n            beta)\nprint(x)\n",
        "alpha,\n            beta)",
        Reason.LINE_END,
    ),
    (
        "... but not where the call's arguments already follow below",
        "x = compute(█\n    alpha,\n)\n",
        "\n    alpha,\n)\n",
        None,
        Reason.EMPTY,
    ),
    (
        "... nor where its closer does",
        "x = compute(█\n)\n",
        "\n    alpha,\n)\n",
        None,
        Reason.EMPTY,
    ),
    (
        "a dict value whose call goes over lines comes whole, not cut where it closes",
        "TRANSFORMS = {\n    exp.A: █\n}\n",
        'lambda self, e: self.func(\n        "A", e.this\n    ),\n    exp.B: rename_func("B"),\n',
        'lambda self, e: self.func(\n        "A", e.this\n    ),',
        Reason.LINE_END,
    ),
    (
        "a deeper block below (the if's body) is no call's arguments",
        "    if █\n        return 1\n    return 2\n",
        "nx.is_directed(G",
        "nx.is_directed(G)",
        "end",
    ),
    (
        "brackets opened before the cursor are not closed by us",
        "value = compute(a, █\n",
        "b",
        "b",
        "end",
    ),
    (
        "completion that only repeats the rest of the line is suppressed",
        "x = foo(█bar)\n",
        "bar)\n",
        None,
        Reason.REPEATS_LINE_SUFFIX,
    ),
    (
        "whitespace only is suppressed",
        "x = █\n",
        "   \n",
        None,
        Reason.EMPTY,
    ),
    (
        "empty output is suppressed",
        "x = █\n",
        "",
        None,
        Reason.EMPTY,
    ),
    (
        "code fence ends a line completion",
        "name = █\n",
        "user.name``` This sets the name.",
        "user.name",
        Reason.CODE_FENCE,
    ),
    (
        "block ends at the first line indented less than the block",
        "def add(a, b):\n    █\n",
        "return a + b\n\nprint(add(1, 2))\nassert add(2, 2) == 4\n",
        "return a + b",
        Reason.DEDENT,
    ),
    (
        "two blank lines end a block even before the dedent",
        "def add(a, b):\n    █\n",
        "return a + b\n\n\nprint(add(1, 2))\n",
        "return a + b",
        Reason.BLANK_LINE,
    ),
    (
        "block keeps nested lines",
        "def first_even(xs):\n    █\n",
        "for x in xs:\n        if x % 2 == 0:\n            return x\n    return None\n\nfirst_even([1])\n",
        "for x in xs:\n        if x % 2 == 0:\n            return x\n    return None",
        Reason.DEDENT,
    ),
    (
        "block stops where it repeats the next line of the file",
        "def f(x):\n    y = x * 2\n    █\n    return y\n",
        "y += 1\n    return y\n",
        "y += 1",
        Reason.REPEATS_NEXT_LINE,
    ),
    (
        "js block keeps the closing brace of an if it opened, under the file's own brace",
        "function pick(paths, object) {\n  while (++index < length) {\n    █\n  }\n  return result;\n}\n",
        "var path = paths[index];\n    if (predicate(path)) {\n      baseSet(result, path);\n    }\n  }\n",
        "var path = paths[index];\n    if (predicate(path)) {\n      baseSet(result, path);\n    }",
        Reason.DEDENT,
    ),
    (
        "js block stops at a closing brace the file already has (an editor's auto-closed brace)",
        "if (ready) {\n  █\n}\nnext();\n",
        "emit(value);\n}\nnext();\n",
        "emit(value);",
        Reason.DEDENT,
    ),
    (
        "block that only repeats the suffix is suppressed",
        "def f(x):\n    █\n    y = x + 1\n    return y\n",
        "y = x + 1\n    return y\n",
        None,
        Reason.REPEATS_SUFFIX,
    ),
    (
        "markdown fence after code is cut",
        "def square(x):\n    █\n",
        "return x * x\n```\n\nThis function returns the square.",
        "return x * x",
        Reason.CODE_FENCE,
    ),
    (
        "block after opener at end of def line",
        "def f(x):█\n",
        "\n    return x + 1\n\ndef g():\n",
        "\n    return x + 1",
        Reason.DEDENT,
    ),
    (
        "module-level block ends at the blank line",
        "import os\n\n█\n",
        "HOME = os.environ['HOME']\nCACHE = os.path.join(HOME, '.cache')\n\ndef main():\n    pass\n",
        "HOME = os.environ['HOME']\nCACHE = os.path.join(HOME, '.cache')",
        Reason.BLANK_LINE,
    ),
    (
        "trailing whitespace of lines is removed",
        "def f():\n    █\n",
        "x = 1   \n    return x  \n",
        "x = 1\n    return x",
        "end",
    ),
    (
        "js block ends at the closing brace line that the file already has",
        "function sum(a) {\n  █\n}\n",
        "return a.reduce((s, x) => s + x, 0);\n}\n\nconsole.log(sum([1]));\n",
        "return a.reduce((s, x) => s + x, 0);",
        Reason.DEDENT,
    ),
    (
        "a line looping on a short pattern ends the block before it",
        "def count(text):\n    █\n",
        'print(count("hello world"))\n    print(count("a b c a b c a b c a b c a b c a b c a b c"',
        'print(count("hello world"))',
        Reason.REPETITION,
    ),
    (
        "the same line three times in a row is a loop",
        "def f(items):\n    █\n",
        "items.append(1)\n    items.append(1)\n    items.append(1)\n    items.append(1)\n",
        None,
        Reason.EMPTY,
    ),
    (
        "a ruler comment is not a loop",
        "def f():\n    █\n",
        "# ==================================================\n    return 1\n\nx = 2\n",
        "# ==================================================\n    return 1",
        Reason.DEDENT,
    ),
    (
        "a list of zeros is not a loop",
        "grid = █\n",
        "[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]\n",
        "[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]",
        Reason.LINE_END,
    ),
    (
        "a looping single line is suppressed",
        "name = █\n",
        "foo_bar_foo_bar_foo_bar_foo_bar_foo_bar_foo_bar_foo_bar_",
        None,
        Reason.EMPTY,
    ),
    (
        "no space just inside an opening bracket",
        "def total(rects):\n    return sum(█)\n",
        " rect.area() for rect in rects\n",
        "rect.area() for rect in rects",
        Reason.LINE_END,
    ),
    (
        "a space after a comma stays",
        "point = (1,█)\n",
        " 2\n",
        " 2",
        Reason.LINE_END,
    ),
    (
        "a bracket in a comment opens no call",
        "total = █\n",
        "0  # the sum of (price\n    * qty)\n",
        "0  # the sum of (price",
        Reason.LINE_END,
    ),
    (
        "an apostrophe in a comment does not hide the closer on the next line",
        "total = █\n",
        "combine(x,  # don't inline\n    y)\nprint(total)\n",
        "combine(x,  # don't inline\n    y)",
        Reason.LINE_END,
    ),
    (
        "a class attribute's type on its line",
        "class Request:\n    cookies:█\n",
        " dict[str, str] = {}\n    headers: dict[str, str]\n",
        " dict[str, str] = {}",
        Reason.LINE_END,
    ),
    (
        "unicode text survives",
        "greeting = █\n",
        '"héllo wörld 👋"\n',
        '"héllo wörld 👋"',
        Reason.LINE_END,
    ),
]


@pytest.mark.parametrize(("name", "source", "raw", "shown", "reason"), CASES, ids=[c[0] for c in CASES])
def test_finalize(name: str, source: str, raw: str, shown: str | None, reason: str) -> None:
    language = "javascript" if name.startswith("js") else "python"
    outcome = finalize(raw, plan_for(source, language))
    assert outcome.text == shown
    assert outcome.reason == reason


@pytest.mark.parametrize(("name", "source", "raw", "shown", "reason"), CASES, ids=[c[0] for c in CASES])
def test_streaming_agrees_with_whole_output(
    name: str, source: str, raw: str, shown: str | None, reason: str
) -> None:
    """Feeding token-sized pieces stops early but shows exactly what the whole output would."""
    language = "javascript" if name.startswith("js") else "python"
    plan = plan_for(source, language)
    filt = StreamFilter(plan)
    consumed = 0
    for i in range(0, len(raw), 3):
        consumed = i + 3
        if not filt.feed(raw[i : i + 3]):
            break
    assert filt.finish().text == shown
    if filt.stop_reason is not None:
        assert consumed <= len(raw) + 3


def test_streaming_stops_before_the_overrun() -> None:
    """The model is stopped at the line end: nothing after it is generated."""
    plan = plan_for("x = █\n")
    filt = StreamFilter(plan)
    pieces = ["compute", "(1)", "\n", "assert", " x == 1"]
    fed = 0
    for piece in pieces:
        fed += 1
        if not filt.feed(piece):
            break
    assert fed == 3
    assert filt.stop_reason is Reason.LINE_END


def test_streaming_an_opened_call_stops_after_its_closing_line() -> None:
    """The model goes on past the line end while its call is open, and stops once it closes."""
    filt = StreamFilter(plan_for("def merge(a, b):\n    frame = █\n"))
    pieces = ["pd.concat(", "\n", "        [a, b],", "\n", "    )", "\n", "    return", " frame"]
    fed = 0
    for piece in pieces:
        fed += 1
        if not filt.feed(piece):
            break
    assert fed == 6 and filt.stop_reason is Reason.LINE_END
    assert filt.finish().text == "pd.concat(\n        [a, b],\n    )"


CUT_OFF_CASES = [
    (
        "block cut mid-statement keeps the finished statements",
        "def positives(xs, strictly_positive):\n    █\n",
        "out = []\n    for x in xs:\n        out.append(x)\n    if strictly_positive and",
        "out = []\n    for x in xs:\n        out.append(x)",
    ),
    (
        "block cut after an opener drops the header with no body",
        "def f(xs):\n    █\n",
        "total = 0\n    for x in xs:\n        ",
        "total = 0",
    ),
    (
        "block cut inside open brackets drops back to where they balance",
        "def f():\n    █\n",
        "a = 1\n    data = {\n        'k': 1,\n        'j': 2,\n        'l",
        "a = 1",
    ),
    (
        "block cut inside a call opened after a comment with an apostrophe",
        "def f(x):\n    █\n",
        "y = x + 1\n    # don't recurse here\n    z = g(\n        y\n",
        "y = x + 1",
    ),
    (
        "a '#' in a string does not hide the operator the line ends with",
        "def f(name):\n    █\n",
        "x = 1\n    label = 'a#b' +\n    ",
        "x = 1",
    ),
    ("block with nothing finished is not shown", "def f():\n    █\n", "return compute(\n        x,", None),
    ("line cut with a bracket open is not shown", "x = █\n", "compute(alpha, beta, gam", None),
    ("line cut mid-expression is not shown", "x = █\n", "alpha + beta +", None),
    ("line cut at a complete expression is kept", "x = █\n", "alpha + beta", "alpha + beta"),
    (
        "an opened call cut before its closing line is its first line, closed",
        "x = █\n",
        "compute(\n    alpha,\n    be",
        "compute()",
    ),
    (
        "an opened call closed before the cut is kept whole",
        "x = █\n",
        "compute(\n    alpha,\n)\nprint(x",
        "compute(\n    alpha,\n)",
    ),
]


@pytest.mark.parametrize(("name", "source", "raw", "shown"), CUT_OFF_CASES, ids=[c[0] for c in CUT_OFF_CASES])
def test_a_completion_cut_off_by_the_token_limit_shows_only_what_is_complete(
    name: str, source: str, raw: str, shown: str | None
) -> None:
    outcome = finalize(raw, plan_for(source), cut_off=True)
    assert outcome.text == shown
    if shown is None:
        assert outcome.reason == Reason.CUT_OFF


def test_a_javascript_block_cut_off_keeps_a_private_field_line_and_reads_its_comments() -> None:
    """`#` is code in JavaScript (`this.#count`); `//` starts its comments."""
    plan = plan_for("class Counter {\n  reset() {\n    █\n  }\n}\n", "javascript")
    raw = "this.total = 0; // totals:\n    this.#count = 0;\n    this.items = [\n      "
    outcome = finalize(raw, plan, cut_off=True)
    assert outcome.text == "this.total = 0; // totals:\n    this.#count = 0;"


def test_the_same_output_not_cut_off_is_shown_as_it_is() -> None:
    outcome = finalize("alpha + beta +", plan_for("x = █\n"))
    assert outcome.text == "alpha + beta +"


def test_a_completion_that_retypes_the_line_is_not_shown() -> None:
    """`head = ` completed with `head = []` would read `head = head = []`."""
    outcome = finalize("head = []\n", plan_for("    head = █\n"))
    assert outcome.text is None and outcome.reason == Reason.REPEATS_TYPED
    assert finalize("[]\n", plan_for("    head = █\n")).text == "[]"
    # Short line text ("x") is too weak a signal: `x` then `x + 1` is ordinary.
    assert finalize("x_total\n", plan_for("x█\n")).text == "x_total"


def test_a_callback_whose_body_runs_on_for_hundreds_of_lines_keeps_its_call_open() -> None:
    # rxjs: `return operate((source, subscriber) => {` over a 150-line body, then `});`. Closing
    # the call at once offered `operate((source, subscriber) => {})`, which breaks the file.
    body = "".join(f"    const v{i} = source.next({i});\n" for i in range(150))
    source = f"export function f<T>() {{\n  return █\n{body}  }});\n}}\n"
    outcome = finalize("operate((source, subscriber) => {\n", plan_for(source, "typescript"))
    assert outcome.text == "operate((source, subscriber) => {"
