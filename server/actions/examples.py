"""A docstring's examples as one pytest test: the first test of a generated suite.

The examples are the author's own statement of what the code does, and the one kind of test a
small model cannot get wrong by miscalculating: the expected values are written down. Each
`>>> expr` with an output becomes `assert expr == <output>` (the output read as a Python literal,
else compared as its repr), an example that raises becomes `with pytest.raises(...)`, and the
rest (imports, definitions, assignments) runs as written, in order, since later examples use
what earlier ones bound. Examples a test cannot check as doctest would (skipped ones, ellipses,
printed output, object addresses) run without an assertion.
"""

from __future__ import annotations

import ast
import builtins
import doctest
import re
import textwrap

# `# doctest: +ELLIPSIS` says how doctest compares; in a test it is noise.
_DIRECTIVE = re.compile(r"[ \t]*#\s*doctest:.*$", re.MULTILINE)
# Outputs that depend on the run (object addresses) cannot be compared.
_UNSTABLE = ("0x",)


def docstring_test(test_name: str, docstring: str) -> str | None:
    """The source of `def test_name():` running the docstring's examples, or None when they
    assert nothing (no example with an output or an exception)."""
    try:
        examples = doctest.DocTestParser().get_examples(docstring)
    except ValueError:
        return None
    body: list[str] = []
    checks = 0
    for example in examples:
        if example.options.get(doctest.SKIP):
            continue
        line = _statement(example)
        if line is None:
            return None  # an example that is not Python: the rest may depend on it
        body.append(line)
        checks += line.startswith(("assert ", "with pytest.raises"))
    if not checks:
        return None
    code = f"def {test_name}():\n" + textwrap.indent("\n".join(body), "    ") + "\n"
    try:
        ast.parse(code)
    except SyntaxError:
        return None
    return code


def _statement(example: doctest.Example) -> str | None:
    source = _DIRECTIVE.sub("", example.source).strip()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    if example.exc_msg is not None:
        exception = _exception_name(example.want)
        return f"with pytest.raises({exception}):\n" + textwrap.indent(source, "    ")
    want = example.want.strip()
    loose = example.options.get(doctest.ELLIPSIS) or example.options.get(doctest.NORMALIZE_WHITESPACE)
    single = len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr)
    if not want or not single or loose or any(u in want for u in _UNSTABLE):
        return source
    expr = tree.body[0]
    assert isinstance(expr, ast.Expr)
    if (
        isinstance(expr.value, ast.Call)
        and isinstance(expr.value.func, ast.Name)
        and expr.value.func.id == "print"
    ):
        return source  # printed output is not a value
    try:
        ast.literal_eval(want)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return f"assert repr({source}) == {want!r}"
    if want in ("True", "False", "None"):
        return f"assert ({source}) is {want}"
    return f"assert ({source}) == {want}"


def _exception_name(want: str) -> str:
    """`ValueError` from doctest's `Traceback ...\\nValueError: message`; a project's own
    exception class may not be importable by its bare name, so only builtins are named."""
    for line in reversed(want.strip().splitlines()):
        name = line.split(":", 1)[0].strip().rsplit(".", 1)[-1]
        if name.isidentifier():
            found = getattr(builtins, name, None)
            if isinstance(found, type) and issubclass(found, BaseException):
                return name
            break
    return "Exception"
