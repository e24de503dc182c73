"""Generate pytest tests for the function or class at the cursor, keeping only what passes.

Pipeline (AgentCoder / self-debugging style; at most MAX_ROUNDS because later rounds decay):
find the target (Python `ast`), gather what the model needs (the target, the module-level
definitions it uses, the file's imports, the project's test style and fixtures), ask the chat
model for tests (the docstring's examples, as asserts, lead the suite: server/actions/examples.py),
normalise its answer (fences, prose, wrong module imports, redefinitions of the
code under test, missing imports), run every test in the sandbox, keep those that pass, and feed
the failures back for another round. Tests still failing at the end are reported as possible
bugs, with their failure message, as comments in the test file (never silently dropped).
"""

from __future__ import annotations

import ast
import doctest
import importlib
import logging
import re
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from server.actions.bugs import (
    Signature,
    doctest_facts,
    miscalculated,
    not_a_bug,
    parameters_given,
    signature_of,
)
from server.actions.examples import docstring_test
from server.actions.fix import candidate_timeout
from server.actions.naming import case_name, descriptive_names
from server.actions.pin import COMMENT, DID_NOT_RAISE, observed, observing_variant, pinned, raised_to_value
from server.actions.quality import (
    Quality,
    branches_of,
    called_parameter,
    measure,
    parameter_names,
    useful_tests,
)
from server.actions.raising import raising_variants
from server.actions.reach import (
    MAX_SURVIVOR_RUNS,
    choose,
    gaps_left,
    outcome,
    probe_calls,
    probe_test,
    test_of_probe,
    units_of,
)
from server.actions.sandbox import RunResult, Sandbox
from server.actions.verify import undefined_names
from server.model.chat import (
    Generate,
    Message,
    ProgressFn,
    closing_fence,
    extract_code,
    no_progress,
    render_chat,
)
from server.model.runtime import CancelToken

if TYPE_CHECKING:
    from context.index import Index

log = logging.getLogger(__name__)

# A generated test of a small function runs in milliseconds; one that runs past this is looping
# (`list(iterate(f, 1))` of an endless generator) and fails alone instead of sinking the run.
GENERATED_TEST_TIMEOUT_S = 2.0
# Rounds of generate -> run -> feed failures back; the studies saw gains stop after 2-3.
MAX_ROUNDS = 3
# Answer length for a first round (~6 small tests) and for one repaired test.
MAX_TOKENS_FIRST = 600
# A first round asks for 4-6 tests; a model that keeps going is cut at the start of one more
# (the extra, unfinished test is dropped), saving tokens that would be thrown away.
MAX_TESTS_FIRST = 6
MAX_TOKENS_REPAIR = 160
# Failing tests repaired per round (one generation each).
MAX_REPAIRS_PER_ROUND = 4
# Characters of context around the target (≈4 chars/token: ~600 tokens keeps a cold 0.5B prompt
# under ~5 s on two cores).
MAX_USED_DEFINITIONS_CHARS = 2_400
MAX_STYLE_CHARS = 1_200
MAX_TARGET_CHARS = 4_000
# Failure text per test shown to the model in a repair round and in the file's comments.
MAX_FEEDBACK_CHARS = 600
MAX_COMMENT_LINES = 6
# Failing tests kept as comments in the file; a small model's failures are often one mistake
# repeated, and a wall of commented-out tests buries the passing ones.
MAX_REPORTED_FAILURES = 3
# After the repair rounds, up to two more generations ask for tests of what the suite misses
# (uncovered branches, surviving mutants); coverage-guided generation gains most in its first
# steps, and a second round gets the branches the first one's tests opened up or missed.
MAX_COVERAGE_ROUNDS = 2
MAX_TOKENS_COVERAGE = 400
# Gaps named in that prompt: a small model addresses a few well, a long list badly.
MAX_GAPS_IN_PROMPT = 4
# Folders holding tests, by convention, in the order we prefer them.
TEST_DIRS = ("tests", "test")

SYSTEM_PROMPT = (
    "You are an expert Python developer who writes small, correct pytest unit tests. "
    "You read the code carefully and only assert values that the code really produces."
)


@dataclass(frozen=True)
class Target:
    """The function, method or class to test (lines 0-based, end exclusive)."""

    name: str
    kind: str  # "function" | "class" | "method"
    import_name: str  # the module-level name a test imports
    source: str
    start_line: int
    end_line: int


@dataclass(frozen=True)
class ModuleLocation:
    module: str  # dotted import name
    import_root: Path  # the folder that must be on sys.path for `import module`


@dataclass
class GeneratedTest:
    name: str
    source: str
    message: str = ""  # failure message of the last run, empty when passing


@dataclass
class Suite:
    """A normalised test file: import/helper header plus independent test units."""

    header: list[str] = field(default_factory=list)
    tests: list[GeneratedTest] = field(default_factory=list)

    def render(self, tests: Iterable[GeneratedTest] | None = None) -> str:
        chosen = self.tests if tests is None else list(tests)
        parts = ["\n".join(self.header).strip("\n")] if self.header else []
        parts += [t.source.strip("\n") for t in chosen]
        return "\n\n\n".join(p for p in parts if p) + "\n"


@dataclass
class GenerateTestsRequest:
    root: Path
    path: Path
    text: str
    line: int
    index: Index | None = None
    # The docstring's examples as the suite's first test (off where they are the yardstick, as in
    # bench/actions_bench.py, whose oracle tests are those examples).
    docstring_examples: bool = True


@dataclass
class GenerateTestsResult:
    target: Target
    module: ModuleLocation
    test_path: Path
    header: list[str]
    passing: list[GeneratedTest]
    failing: list[GeneratedTest]
    rounds: int
    timings: dict[str, float]
    notes: list[str] = field(default_factory=list)
    quality: Quality | None = None
    # Tests left out, with why: redundant (no new branch, no new mutant killed) or failing by
    # their own mistake (not reported as bugs).
    dropped: list[tuple[str, str]] = field(default_factory=list)
    # Tests whose expected values were taken from the code (`server.actions.pin`).
    recorded: list[str] = field(default_factory=list)
    # Tests of cases no other test reached, found by varying their inputs (`server.actions.reach`).
    reached: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """`6 tests, 92% of branches, catch 9 of 10 mutants` for `f`, and what was left out."""
        if self.quality is not None:
            text = f"`{self.target.name}`: {self.quality.summary()}"
        else:
            text = f"{len(self.passing)} passing test(s) for `{self.target.name}`"
        kept = {t.name for t in self.passing}
        recorded = sum(1 for name in self.recorded if name in kept)
        if recorded:
            text += f"; expected values of {recorded} test(s) recorded from the code"
        reached = sum(1 for name in self.reached if name in kept)
        if reached:
            text += f"; {reached} test(s) of cases no test reached, with another test's inputs varied"
        if self.failing:
            text += f"; {len(self.failing)} failing test(s) kept as comments (possible bugs)"
        redundant = sum(1 for _, why in self.dropped if why == REDUNDANT)
        examples = sum(1 for _, why in self.dropped if why == EXAMPLES_FAILED)
        mistaken = len(self.dropped) - redundant - examples
        if examples:
            text += "; the docstring's examples fail as a test (left out)"
        if redundant:
            text += f"; {redundant} redundant test(s) dropped"
        if mistaken:
            text += f"; {mistaken} failing test(s) dropped as the model's mistakes"
        return text + f" after {self.rounds} round(s)"


REDUNDANT = "adds no branch and catches no mutant the others miss"
EXAMPLES_FAILED = "the docstring's examples fail when run as asserts"


# ---------------------------------------------------------------------------------------------
# Finding the target and its context


def find_target(text: str, line: int) -> Target | None:
    """The innermost function (or method) containing the 0-based line, else the class there."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    lines = text.splitlines(keepends=True)
    best: tuple[ast.AST, ast.ClassDef | None] | None = None

    def visit(body: list[ast.stmt], owner: ast.ClassDef | None) -> None:
        nonlocal best
        for node in body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            end = node.end_lineno or node.lineno
            if start <= line < end:
                best = (node, owner)
                if isinstance(node, ast.ClassDef):
                    visit(node.body, node)
                return

    visit(tree.body, None)
    if best is None:
        return None
    node, owner = best
    assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
    end = node.end_lineno or node.lineno
    source = "".join(lines[start:end])
    if isinstance(node, ast.ClassDef):
        return Target(node.name, "class", node.name, source, start, end)
    if owner is not None:
        if node.name.startswith("__") and node.name != "__init__":
            # Dunder methods are exercised through the class: test the class as a whole.
            cls_start = owner.lineno - 1
            cls_src = "".join(lines[cls_start : owner.end_lineno or owner.lineno])
            return Target(
                owner.name, "class", owner.name, cls_src, cls_start, owner.end_lineno or owner.lineno
            )
        header = lines[owner.lineno - 1] if owner.lineno - 1 < len(lines) else f"class {owner.name}:\n"
        return Target(f"{owner.name}.{node.name}", "method", owner.name, header + source, start, end)
    return Target(node.name, "function", node.name, source, start, end)


def module_location(root: Path, path: Path) -> ModuleLocation:
    """Dotted module name of a file and the folder to import it from (packages climb upward)."""
    path = path.resolve()
    parts = [path.stem] if path.stem != "__init__" else []
    folder = path.parent
    root = root.resolve()
    while (folder / "__init__.py").is_file() and folder != root:
        parts.insert(0, folder.name)
        folder = folder.parent
    if folder != root and folder.is_relative_to(root) and _imports_relatively(path):
        # A namespace package (no __init__.py, PEP 420: pyteomics, actions-32): a module that
        # imports its siblings relatively loads only by its dotted name from the root (or src/).
        while folder not in (root, root / "src"):
            parts.insert(0, folder.name)
            folder = folder.parent
    return ModuleLocation(".".join(parts) or path.parent.name, folder)


_RELATIVE_IMPORT = re.compile(r"^\s*from\s+\.", re.MULTILINE)


def _imports_relatively(path: Path) -> bool:
    try:
        return _RELATIVE_IMPORT.search(path.read_text(encoding="utf-8", errors="replace")) is not None
    except OSError:
        return False


def conventional_test_path(root: Path, path: Path) -> Path:
    """The conventional test file: tests/test_<module>.py (an existing `test/` folder wins if alone)."""
    stem = path.stem if path.stem != "__init__" else path.parent.name
    folder = root / TEST_DIRS[0]
    if not folder.is_dir():
        for name in TEST_DIRS[1:]:
            if (root / name).is_dir():
                folder = root / name
                break
    return folder / f"test_{stem}.py"


def _top_level_definitions(tree: ast.Module, lines: list[str]) -> dict[str, str]:
    defs: dict[str, str] = {}
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [name for t in node.targets for name in _assigned_names(t)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        if not names:
            continue
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
        src = "".join(lines[start : node.end_lineno or node.lineno])
        for name in names:
            defs[name] = src
    return defs


def _assigned_names(target: ast.expr) -> list[str]:
    """The names an assignment target binds, unpacked ones included: aima3's logic module makes
    its symbols with `A, B, C, ... = map(Expr, 'ABC...')`, and its docstrings' examples, which
    tests copy, use them (bench actions-35/36: `find_pure_symbol` and `subst` kept no test, all
    of them dropped for a NameError on `A`)."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Starred):
        return _assigned_names(target.value)
    if isinstance(target, ast.Tuple | ast.List):
        return [name for element in target.elts for name in _assigned_names(element)]
    return []


def _names_in(source: str) -> set[str]:
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return set(re.findall(r"[A-Za-z_]\w*", source))
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
    }


def module_names(text: str) -> set[str]:
    """Every name a module defines or imports at top level (what a test may import from it)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return set()
    names = set(_top_level_definitions(tree, text.splitlines(keepends=True)))
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


@dataclass
class PromptContext:
    imports: str
    used_definitions: str
    style: str
    fixtures: list[str]


def _imports_of(tree: ast.Module, lines: list[str]) -> str:
    out = []
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append("".join(lines[node.lineno - 1 : node.end_lineno or node.lineno]))
    return "".join(out)


def _fixtures(conftest: str) -> list[str]:
    try:
        tree = ast.parse(conftest)
    except SyntaxError:
        return []
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(
            "fixture" in ast.unparse(d) for d in node.decorator_list
        ):
            out.append(node.name)
    return out


def gather_context(request: GenerateTestsRequest, target: Target, test_path: Path) -> PromptContext:
    """What the model sees besides the target: imports, used definitions, test style, fixtures."""
    tree = ast.parse(request.text)
    lines = request.text.splitlines(keepends=True)
    defs = _top_level_definitions(tree, lines)
    wanted = _names_in(target.source) - {target.import_name}
    used: list[str] = []
    budget = MAX_USED_DEFINITIONS_CHARS
    for name in sorted(wanted):
        src = defs.get(name)
        if src and src not in used and len(src) <= budget:
            used.append(src)
            budget -= len(src)
    if request.index is not None:
        used += _index_definitions(request.index, request.text, wanted - set(defs), budget)
    style = ""
    if test_path.is_file():
        style = test_path.read_text(encoding="utf-8", errors="replace")[:MAX_STYLE_CHARS]
    elif test_path.parent.is_dir():
        # Another module's tests: only their imports. A small model shown their asserts copies
        # them (inputs and all) into tests of the wrong function.
        for other in sorted(test_path.parent.glob("test_*.py"))[:1]:
            text = other.read_text(encoding="utf-8", errors="replace")
            style = "".join(
                ln for ln in text.splitlines(keepends=True) if ln.startswith(("import ", "from "))
            )
    fixtures: list[str] = []
    for conftest in (request.root / "conftest.py", test_path.parent / "conftest.py"):
        if conftest.is_file():
            fixtures += _fixtures(conftest.read_text(encoding="utf-8", errors="replace"))
    return PromptContext(_imports_of(tree, lines), "\n".join(used), style, sorted(set(fixtures)))


def _index_definitions(index: Index, text: str, names: set[str], budget: int) -> list[str]:
    """Signatures of imported workspace definitions the target uses (from the index)."""
    out: list[str] = []
    imported = {n for n in names if re.search(rf"\bimport\b[^\n]*\b{re.escape(n)}\b", text)}
    for name in sorted(imported):
        try:
            symbols = index.definitions_named(name, limit=1)
        except Exception as exc:  # the index is a helper here, never a reason to fail
            log.debug("index lookup of %s failed: %s", name, exc)
            continue
        for sym in symbols:
            snippet = f"# from {sym.path}\n{sym.snippet or sym.signature}\n"
            if len(snippet) <= budget:
                out.append(snippet)
                budget -= len(snippet)
    return out


# ---------------------------------------------------------------------------------------------
# Prompts


def _code(target: Target, ctx: PromptContext) -> str:
    return "\n".join(p for p in (ctx.imports, ctx.used_definitions, target.source[:MAX_TARGET_CHARS]) if p)


def first_round_prompt(target: Target, module: ModuleLocation, ctx: PromptContext) -> tuple[str, str]:
    """(user message, assistant prefill) for the first round."""
    code = _code(target, ctx)
    what = {"function": "function", "method": "method", "class": "class"}[target.kind]
    parts = [f"Module `{module.module}`:\n```python\n{code.rstrip()}\n```"]
    if ctx.style:
        parts.append(f"Existing tests in this project look like this:\n```python\n{ctx.style.rstrip()}\n```")
    if ctx.fixtures:
        parts.append("Available pytest fixtures: " + ", ".join(ctx.fixtures) + ".")
    parts.append(
        f"Write pytest tests for the {what} `{target.name}`.\n"
        f"- Import it with `from {module.module} import {target.import_name}`.\n"
        "- Write 4 to 6 short test functions, each checking exact values with assert, each named "
        f"after the behaviour it checks (test_{target.name.split('.')[-1]}_<behaviour>).\n"
        "- Work out every expected value step by step from the code; cover normal and edge cases.\n"
        f"- Do not copy or redefine `{target.import_name}`; no classes, no main block.\n"
        "Answer with one ```python code block only."
    )
    prefill = f"```python\nimport pytest\n\nfrom {module.module} import {target.import_name}\n\n\ndef test_"
    return "\n\n".join(parts), prefill


def _signature(test: GeneratedTest) -> str:
    """Decorators and the `def` line of a test: the start of its repaired version."""
    out = []
    for line in test.source.splitlines(keepends=True):
        out.append(line)
        if line.lstrip().startswith(("def ", "async def ", "class ")):
            break
    return "".join(out)


def repair_prompt(
    target: Target, module: ModuleLocation, ctx: PromptContext, test: GeneratedTest
) -> tuple[str, str]:
    """(user message, assistant prefill) asking to correct one test that failed when run.

    One test per request: a small model asked to rewrite several rewrites none well, and the
    prefilled signature keeps it to exactly the test in question.
    """
    message = _clip(test.message, MAX_FEEDBACK_CHARS)
    hint = _not_callable_hint(target, test.message)
    user = (
        f"Module `{module.module}`:\n```python\n{_code(target, ctx).rstrip()}\n```\n\n"
        "This pytest test was run against the code above and failed:\n"
        f"```python\n{test.source.strip()}\n```\nFailed with:\n```\n{message}\n```\n\n"
        f"{hint}"
        "Rewrite the test so that it passes: recompute the expected values from the code, or fix "
        "the test's own mistake. Answer with the corrected test in one ```python code block."
    )
    prefill = f"```python\nfrom {module.module} import {target.import_name}\n\n\n{_signature(test)}"
    return user, prefill


_NOT_CALLABLE = re.compile(r"TypeError: '(\w+)' object is not callable")


def _not_callable_hint(target: Target, message: str) -> str:
    """For a test that passed data where the function calls a parameter: which parameter, and
    what to pass instead ("" otherwise). more-itertools' `iter_except(func, exception)`: the
    1.5B passed `[1, 2, 3]` as `func` in all six tests and in every repair of them, told only
    "'list' object is not callable"."""
    m = _NOT_CALLABLE.search(message)
    if m is None:
        return ""
    try:
        tree = ast.parse(textwrap.dedent(target.source))
    except SyntaxError:
        return ""
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None)
    if fn is None:
        return ""
    name = called_parameter(fn, parameter_names(fn))
    if name is None:
        return ""
    return (
        f"`{target.name}` calls its argument `{name}`: pass a function there (a lambda, or a bound "
        f"method such as `items.pop` of a list the test made), not a {m.group(1)}.\n\n"
    )


def coverage_prompt(
    target: Target,
    module: ModuleLocation,
    ctx: PromptContext,
    passing: list[GeneratedTest],
    quality: Quality,
    module_text: str,
) -> tuple[str, str]:
    """(user message, assistant prefill) asking for tests of what the passing ones miss. The
    prefill starts a test named after the first branch no test takes, so that the answer begins
    with that case rather than another copy of the passing tests."""
    gaps = [f"- {u}" for u in quality.uncovered[:MAX_GAPS_IN_PROMPT]]
    room = MAX_GAPS_IN_PROMPT - len(gaps)
    for m in quality.survivors[: max(room, 1)]:
        line = _target_line(target, m.line)
        gaps.append(f"- line {m.line} (`{line}`): the tests still pass if {m.description}")
    # The tests that each add something: a small model copies the pattern of what it is shown.
    useful = set(useful_tests([t.name for t in passing], quality)[0])
    existing = "\n\n".join(t.source.strip() for t in passing if t.name in useful)
    user = (
        f"Module `{module.module}`:\n```python\n{_code(target, ctx).rstrip()}\n```\n\n"
        f"These tests pass:\n```python\n{_clip(existing, MAX_STYLE_CHARS)}\n```\n\n"
        "They miss these cases:\n" + "\n".join(gaps) + "\n\n"
        "Write 1 to 3 new test functions that exercise exactly these cases and assert the exact "
        "values the code returns there; name each after the case it checks. Answer with one "
        "```python code block."
    )
    first = next((n for arc in quality.missing_arcs if (n := case_name(target.name, module_text, arc))), None)
    start = f"def {first}():\n" if first else "def test_"
    prefill = f"```python\nimport pytest\n\nfrom {module.module} import {target.import_name}\n\n\n{start}"
    return user, prefill


def _target_line(target: Target, line: int) -> str:
    """The text of a 1-based line of the module, when it is in the target (functions)."""
    lines = target.source.splitlines()
    index = line - 1 - target.start_line
    return lines[index].strip() if 0 <= index < len(lines) else ""


def _body(source: str) -> str:
    """A test without its `def` line: two tests that differ only in name are one."""
    return source.split("\n", 1)[-1]


def _squash(source: str) -> str:
    return "".join(source.split()).replace("'", '"')


def _enough_tests(text: str) -> bool:
    """StopWhen for a first round (the prefill opened the first test): a closing fence, or the
    start of one test more than asked for."""
    if closing_fence(text):
        return True
    starts = sum(1 for ln in text.split("\n")[:-1] if ln.startswith(("def test", "async def test")))
    return starts >= MAX_TESTS_FIRST


def _end_of_test(text: str) -> bool:
    """StopWhen for a repaired test: a closing fence or a new top-level statement ends it."""
    complete = text.split("\n")[:-1]
    return any(ln.startswith("```") or (ln.strip() and not ln[:1].isspace()) for ln in complete)


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit // 3] + "\n...\n" + text[-(2 * limit) // 3 :]


# ---------------------------------------------------------------------------------------------
# Normalising the model's answer


def _parse_leniently(code: str) -> ast.Module | None:
    """Parse, dropping a truncated tail line by line (max_tokens can cut the last test)."""
    lines = code.splitlines(keepends=True)
    for cut in range(len(lines), 0, -1):
        try:
            return ast.parse("".join(lines[:cut]))
        except SyntaxError:
            continue
    return None


def _split_top_level(code: str) -> list[str]:
    """Top-level chunks (imports, defs with decorators) when the whole answer does not parse."""
    chunks: list[list[str]] = [[]]
    for line in code.splitlines(keepends=True):
        starts_unit = line[:1] not in (" ", "\t", "\n", "\r", "") and not line.startswith((")", "]", "}"))
        if starts_unit and chunks[-1] and not chunks[-1][-1].startswith("@"):
            chunks.append([])
        chunks[-1].append(line)
    return ["".join(c) for c in chunks if "".join(c).strip()]


def _unit_name(node: ast.stmt) -> str | None:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
        return node.name
    if isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
        return node.name
    return None


def _rewrite_import(node: ast.ImportFrom, module: str, provided: set[str]) -> ast.ImportFrom:
    """`from my_module import f` -> `from pkg.real import f` when the names come from our module."""
    names = {a.name for a in node.names}
    foreign = node.level == 0 and node.module != module and not _importable_elsewhere(node.module or "")
    if foreign and names & provided:
        return ast.ImportFrom(module=module, names=node.names, level=0)
    return node


def _importable_elsewhere(name: str) -> bool:
    top = name.split(".")[0]
    return top in sys.stdlib_module_names or top in ("pytest", "hypothesis")


def _segment(node: ast.stmt, source: str) -> str:
    """The node's own text (decorators included), so the model's formatting survives."""
    lines = source.splitlines(keepends=True)
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
    return "".join(lines[first : node.end_lineno or node.lineno]).rstrip() + "\n"


def _statements(code: str) -> list[tuple[ast.stmt, str]]:
    """Top-level statements with the text they came from; salvages what parses of a broken answer."""
    tree = _parse_leniently(code)
    if tree is not None and any(_unit_name(n) for n in tree.body):
        return [(n, code) for n in tree.body]
    out: list[tuple[ast.stmt, str]] = []
    for chunk in _split_top_level(code):
        try:
            out += [(n, chunk) for n in ast.parse(chunk).body]
        except SyntaxError:
            continue
    return out


def _rename(source: str, old: str, new: str) -> str:
    return re.sub(rf"\b(def|class)\s+{re.escape(old)}\b", rf"\1 {new}", source, count=1)


def normalize_tests(
    answer: str,
    module: ModuleLocation,
    target: Target,
    provided: set[str],
) -> Suite:
    """Turn a chat answer into a runnable Suite for `target` (see the module docstring)."""
    suite = Suite()
    seen: set[str] = set()
    header: list[str] = []
    wanted = {target.import_name, *target.name.split(".")}
    for node, source in _statements(extract_code(answer)):
        name = _unit_name(node)
        text = _segment(node, source)
        if name is not None:
            if not (_names_in(text) & wanted):
                continue  # a test that never touches the target cannot tell us anything
            unique = name
            n = 2
            while unique in seen:
                unique = f"{name}_{n}"
                n += 1
            seen.add(unique)
            suite.tests.append(GeneratedTest(unique, _rename(text, name, unique) if unique != name else text))
        elif isinstance(node, ast.ImportFrom):
            fixed = _rewrite_import(node, module.module, provided)
            header.append(text.rstrip() if fixed is node else ast.unparse(fixed))
        elif isinstance(node, ast.Import):
            header.append(text.rstrip())
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name in provided:
                continue  # the model pasted the code under test: test the real one instead
            header.append(text.rstrip())  # helpers and fixtures
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            header.append(text.rstrip())
        # Anything else (main blocks, bare calls, prints) is dropped.
    suite.header = _complete_imports(header, suite, module, provided, doctest_helpers(target))
    return suite


def _module_import(name: str) -> str | None:
    """`import name` where a test uses `name` unimported and it is pytest or a standard module."""
    return f"import {name}" if name == "pytest" or name in sys.stdlib_module_names else None


def _missing_module_imports(header: list[str], source: str) -> list[str]:
    """The module imports a test needs beyond `header` (a recorded value's pytest.approx or
    itertools.islice: the header drops an import no test used)."""
    names = sorted({u.name for u in undefined_names("\n".join([*header, source]))})
    return [line for name in names if (line := _module_import(name)) is not None]


def _is_import(line: str) -> bool:
    return line.startswith(("import ", "from "))


def _import_bound(line: str) -> set[str]:
    try:
        node = ast.parse(line).body[0]
    except (SyntaxError, IndexError):
        return set()
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    return set()


# Standard modules whose functions tests use bare, as docstring examples do (`add`, `partial`,
# `itemgetter`, `Counter`; `SimpleNamespace`, `date`, `Path`, `UUID` as the objects they pass:
# littleutils' setattrs, bench actions-33, lost its six tests to `SimpleNamespace` unbound): an
# undefined name found in one of them is imported from it.
NAME_HOMES = (
    "operator", "functools", "itertools", "collections", "math", "string", "decimal", "fractions",
    "types", "datetime", "pathlib", "uuid",
)  # fmt: skip


def _stdlib_home(name: str) -> str | None:
    """The first of NAME_HOMES that defines `name` publicly, if any."""
    if name.startswith("_"):
        return None
    for module in NAME_HOMES:
        if hasattr(importlib.import_module(module), name):
            return module
    return None


def doctest_helpers(target: Target) -> dict[str, str]:
    """Names the target's docstring examples define or import (`>>> def inc(x): ...`,
    `>>> from operator import add`), with the statement that binds each: tests copy the
    examples' calls and use those names bare."""
    out: dict[str, str] = {}
    try:
        examples = doctest.DocTestParser().get_examples(_docstring(target))
    except ValueError:
        return {}
    for example in examples:
        try:
            statements = ast.parse(example.source).body
        except SyntaxError:
            continue
        for stmt in statements:
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                names = [(a.asname or a.name).split(".")[0] for a in stmt.names]
            elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [stmt.name]
            elif isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Lambda):
                names = [t.id for t in stmt.targets if isinstance(t, ast.Name)]
            else:
                continue  # data assignments belong to one example, not to every test
            for name in names:
                out.setdefault(name, ast.unparse(stmt))
    return out


def _complete_imports(
    header: list[str],
    suite: Suite,
    module: ModuleLocation,
    provided: set[str],
    helpers: dict[str, str] | None = None,
) -> list[str]:
    """Add imports for names the tests use but nothing binds (pytest, the module's names, the
    docstring examples' helpers, stdlib), and drop imports nothing uses."""
    helpers = helpers or {}
    imports = [h for h in header if _is_import(h)]
    others = [h for h in header if h and not _is_import(h)]
    for _ in range(2):  # a second pass settles names exposed by the first pass's additions
        text = "\n".join([*imports, *others, *(t.source for t in suite.tests)])
        missing = sorted({u.name for u in undefined_names(text)})
        if not missing:
            break
        from_module = [m for m in missing if m in provided]
        if from_module:
            imports.append(f"from {module.module} import {', '.join(from_module)}")
        for name in missing:
            if name in helpers and name not in from_module:
                helper = helpers[name]
                (imports if _is_import(helper) else others).append(helper)
            elif (line := _module_import(name)) is not None:
                imports.append(line)
            elif name not in from_module and (home := _stdlib_home(name)) is not None:
                imports.append(f"from {home} import {name}")
    used = set().union(*(_names_in(t) for t in (*others, *(t.source for t in suite.tests))))
    imports = [i for i in imports if not _import_bound(i) or _import_bound(i) & used]
    return _order_header(imports, others, module)


def _order_header(imports: list[str], others: list[str], module: ModuleLocation) -> list[str]:
    """isort's layout: stdlib and third-party imports, a blank line, the project's imports."""
    unique = list(dict.fromkeys(imports))
    first_party = module.module.split(".")[0]

    def is_local(line: str) -> bool:
        name = line.split()[1] if len(line.split()) > 1 else ""
        return name.split(".")[0] == first_party

    outside = sorted((i for i in unique if not is_local(i)), key=lambda i: (i.startswith("from "), i))
    local = sorted((i for i in unique if is_local(i)), key=lambda i: (i.startswith("from "), i))
    out = outside + ([""] if outside and local else []) + local
    return out + ([""] if others and out else []) + others


# ---------------------------------------------------------------------------------------------
# Running


def outcome_of(test: GeneratedTest, run: RunResult) -> tuple[bool, str]:
    """A unit passes when every case of it ran and passed (parametrised cases, class methods)."""
    if run.collection_error:
        return False, "\n".join(run.collection_errors) or run.output[-MAX_FEEDBACK_CHARS:]
    cases = [
        o
        for key, o in run.outcomes.items()
        if key.split("[", 1)[0] == test.name or key.startswith(f"{test.name}.")
    ]
    if run.timed_out and not cases:
        return False, "timed out"
    if not cases:
        return False, "not collected by pytest (no test ran)"
    failed = [o for o in cases if not o.passed]
    return (not failed), "\n".join(o.message for o in failed)


def run_suite(sandbox: Sandbox, rel_path: str, suite: Suite, tests: list[GeneratedTest]) -> RunResult:
    return sandbox.run_pytest({rel_path: suite.render(tests)}, [rel_path])


# ---------------------------------------------------------------------------------------------
# The pipeline


def generate_tests(
    request: GenerateTestsRequest,
    generate: Generate,
    *,
    cancel: CancelToken | None = None,
    progress: ProgressFn = no_progress,
    sandbox_factory: Callable[[Path], Sandbox] = Sandbox,
    max_rounds: int = MAX_ROUNDS,
) -> GenerateTestsResult:
    """The whole Generate-tests action, without LSP. Raises Cancelled when cancelled."""
    cancel = cancel or CancelToken()
    timings: dict[str, float] = {"model_s": 0.0, "sandbox_s": 0.0}
    started = time.perf_counter()
    target = find_target(request.text, request.line)
    if target is None:
        raise ValueError("no function or class at the cursor (or the file does not parse)")
    module = module_location(request.root, request.path)
    test_path = conventional_test_path(request.root, request.path)
    ctx = gather_context(request, target, test_path)
    provided = module_names(request.text)
    # The sandbox runs the generated file under a name of its own so existing tests stay apart.
    rel_test = test_path.relative_to(request.root).with_name(f"{test_path.stem}_infiller_gen.py").as_posix()
    progress("copying the workspace to a sandbox", 5)
    passing: list[GeneratedTest] = []
    failing: list[GeneratedTest] = []
    header: list[str] = []
    notes: list[str] = []
    dropped: list[tuple[str, str]] = []
    recorded: list[str] = []
    reached: list[str] = []
    last_run_s = 0.0  # the latest test run's duration: bounds the mutant runs
    rounds = 0
    root = request.root.resolve()
    import_from = (
        module.import_root.relative_to(root).as_posix() if module.import_root.is_relative_to(root) else "."
    )
    with sandbox_factory(request.root) as sandbox:
        # The buffer may be unsaved: the sandbox must test what the user sees.
        buffer_rel = request.path.resolve().relative_to(root).as_posix()
        overlay_src = {buffer_rel: request.text}

        notes.extend(sandbox.notes)

        def run(suite: Suite, tests: list[GeneratedTest] | None = None) -> RunResult:
            files = {**overlay_src, rel_test: suite.render(tests)}
            return sandbox.run_pytest(
                files, [rel_test], python_path=[import_from], test_timeout_s=GENERATED_TEST_TIMEOUT_S
            )

        def run_measured(overlay: Mapping[str, str], with_coverage: bool) -> RunResult:
            files = {**overlay, rel_test: Suite(header, passing).render()}
            cover = [buffer_rel] if with_coverage else []
            return sandbox.run_pytest(files, [rel_test], python_path=[import_from], coverage=cover)

        signature = _signature_of(target, request.text)
        facts = doctest_facts(target.source)
        docstring = _docstring(target)
        examples_name = f"test_{target.name.replace('.', '_')}_docstring_examples"
        examples_source = docstring_test(examples_name, docstring) if request.docstring_examples else None
        examples = GeneratedTest(examples_name, examples_source) if examples_source else None

        def run_variants(
            variants: list[GeneratedTest], suite_header: list[str], message: str, percent: int
        ) -> RunResult:
            """One sandbox run of rewritten tests, reported as `message`."""
            cancel.check()
            progress(message, percent)
            t0 = time.perf_counter()
            seen = run(Suite(suite_header), variants)
            timings["sandbox_s"] += time.perf_counter() - t0
            return seen

        def record_values(
            tests: list[GeneratedTest], suite_header: list[str], percent: int
        ) -> list[GeneratedTest]:
            """The failing tests whose only fault is their expected values (or an iterator compared
            with a list), with the code's values instead (verified by a run); they leave `tests`."""
            variants = []
            for t in tests:
                if not miscalculated(t.source, t.message, target.import_name, signature, facts, docstring):
                    continue
                variant = observing_variant(t.source)
                if variant is not None:
                    variants.append((t, GeneratedTest(t.name, variant)))
            if not variants:
                return []
            message = f"recording the code's values for {len(variants)} test(s)"
            seen = run_variants([v for _, v in variants], suite_header, message, percent)
            candidates = []
            for t, v in variants:
                values = observed(outcome_of(v, seen)[1])
                source = pinned(t.source, values) if values is not None else None
                if source is not None:
                    candidates.append((t, GeneratedTest(t.name, source)))
            needed = [i for _, c in candidates for i in _missing_module_imports(suite_header, c.source)]
            check_header = [*dict.fromkeys(needed), *suite_header]
            t0 = time.perf_counter()
            check = run(Suite(check_header), [c for _, c in candidates]) if candidates else None
            timings["sandbox_s"] += time.perf_counter() - t0
            out = []
            for t, c in candidates:
                if check is not None and outcome_of(c, check)[0]:
                    suite_header[:0] = _missing_module_imports(suite_header, c.source)
                    t.source, t.message = c.source, ""
                    tests.remove(t)
                    if COMMENT in t.source:  # else only `list(...)` was missing: the model's values stand
                        recorded.append(t.name)
                    out.append(t)
            log.info("expected values recorded for %d of %d failing test(s)", len(out), len(variants))
            return out

        def reach_raises(
            tests: list[GeneratedTest], suite_header: list[str], percent: int
        ) -> list[GeneratedTest]:
            """The tests that expected an exception their call does not raise, with literal
            arguments the code does raise it for (`server.actions.raising`; one run for all);
            they leave `tests`."""
            variants: list[tuple[GeneratedTest, GeneratedTest]] = []
            for t in tests:
                if DID_NOT_RAISE not in t.message:
                    continue
                for i, source in enumerate(raising_variants(t.source, target.name.rsplit(".", 1)[-1])):
                    name = f"{t.name}_reach_{i}"
                    variants.append((t, GeneratedTest(name, _rename(source, t.name, name))))
            if not variants:
                return []
            message = f"looking for inputs that raise, {len(variants)} variant(s)"
            seen = run_variants([v for _, v in variants], suite_header, message, percent)
            out: list[GeneratedTest] = []
            for t, v in variants:
                if t in out or not outcome_of(v, seen)[0]:
                    continue
                t.source, t.message = _rename(v.source, v.name, t.name), ""
                tests.remove(t)
                out.append(t)
            log.info("inputs that raise found for %d test(s)", len(out))
            return out

        def search_inputs(
            quality: Quality | None, mistaken: Sequence[GeneratedTest] = ()
        ) -> list[GeneratedTest]:
            """Tests of the cases no kept test reaches and of the mutants none catches, from the
            kept tests' calls with one literal changed (`server.actions.reach`): every variant
            runs once under coverage on the code, and once on each surviving mutant it may tell
            apart; the few that close gaps or catch a survivor are kept with what the code
            returns (or the builtin exception it raises) there, only if the suite still passes.
            With no test kept (`quality` None), the calls of the `mistaken` tests, as written and
            varied, are the inputs, and every branch is a gap."""
            if target.kind != "function":
                return []
            branches = branches_of(request.text, target.start_line + 1, target.end_line)
            done: set[tuple[int, int]] = set().union(*quality.arcs.values()) if quality else set()
            gaps = gaps_left(branches, done)
            sources = [t.source for t in (passing if quality else mistaken)]
            calls = probe_calls(sources, target.name, target.source, with_originals=quality is None)
            survivors_left = quality.survivors if quality else []
            if not calls or not (gaps or survivors_left):
                return []
            cancel.check()
            progress(f"trying {len(calls)} varied input(s) for what no test reaches or catches", 93)
            probes = {f"test_infiller_probe_{i}": call for i, call in enumerate(calls)}
            variants = [
                GeneratedTest(name, variant)
                for name, call in probes.items()
                if (variant := observing_variant(probe_test(name, call))) is not None
            ]

            def run_probes(module_text: str, with_coverage: bool) -> dict[str, str]:
                """The probes' failure messages (each ends by reporting what its call did)."""
                files = {buffer_rel: module_text, rel_test: Suite(header).render(variants)}
                t0 = time.perf_counter()
                seen = sandbox.run_pytest(
                    files, [rel_test], python_path=[import_from], test_timeout_s=GENERATED_TEST_TIMEOUT_S,
                    coverage=[buffer_rel] if with_coverage else [],
                )  # fmt: skip
                timings["sandbox_s"] += time.perf_counter() - t0
                if with_coverage:
                    arcs.update(seen.test_arcs)
                return {v.name: outcome_of(v, seen)[1] for v in variants}

            arcs: dict[str, set[tuple[int, int]]] = {}
            on_code = run_probes(request.text, True)
            found = {
                name: GeneratedTest(name, source)
                for name, message in on_code.items()
                if (source := test_of_probe(name, probes[name], message)) is not None
            }
            reached = {n: units_of(arcs.get(n, set()), branches) for n in found}
            chosen = choose(reached, gaps)
            run_lines = {a for a, _ in done} | {b for _, b in done}
            run_lines |= {line for n in found for pair in arcs.get(n, set()) for line in pair}
            survivors = [m for m in survivors_left if m.line in run_lines][:MAX_SURVIVOR_RUNS]
            if survivors:
                # A mutant that loops forever must not hold the search: bound it by the code's run.
                sandbox.timeout_s = candidate_timeout(last_run_s, sandbox.timeout_s)
            for mutant in survivors:
                cancel.check()
                on_mutant = run_probes(mutant.text, False)
                telling = [n for n in found if outcome(on_mutant[n]) != outcome(on_code[n])]
                # A value reads better than an exception (`ratio(6, 1) == 6.0`, not `ratio(None, 0)`
                # raising TypeError where the mutant raises ZeroDivisionError).
                telling.sort(key=lambda n: str(outcome(on_code[n])).startswith("raised"))
                if telling and not set(telling) & set(chosen):
                    chosen.append(telling[0])
            if not chosen:
                log.info("no varied input of %d reaches a gap or catches a survivor", len(calls))
                return []
            taken = {t.name for t in (*passing, *failing)}
            tests = []
            # Numbered, so that they are named after the case they check, as the model's are.
            numbers = (k for k in range(1, 10_000) if f"test_{target.name}_{k}" not in taken)
            for name in chosen:
                new_name = f"test_{target.name}_{next(numbers)}"
                tests.append(GeneratedTest(new_name, _rename(found[name].source, name, new_name)))
            trial_header = [
                *dict.fromkeys(i for t in tests for i in _missing_module_imports(header, t.source)),
                *header,
            ]
            t0 = time.perf_counter()
            check = run(Suite(trial_header, passing + tests))
            timings["sandbox_s"] += time.perf_counter() - t0
            if check.collection_error or not all(outcome_of(t, check)[0] for t in passing):
                return []
            kept = [t for t in tests if outcome_of(t, check)[0]]
            if kept:
                header[:] = trial_header
            log.info(
                "varied inputs: %d of %d probe(s) usable, %d survivor(s) tried, %d test(s) kept",
                len(found), len(calls), len(survivors), len(kept),
            )  # fmt: skip
            return kept

        def quality_now() -> Quality:
            # Mutants of loop bounds can loop forever: bound each run by the suite's own time.
            sandbox.timeout_s = candidate_timeout(last_run_s, sandbox.timeout_s)
            t0 = time.perf_counter()
            progress(f"measuring {len(passing)} test(s): coverage and mutants", 90)
            q = measure(
                buffer_rel,
                request.text,
                target.start_line + 1,
                target.end_line,
                [t.name for t in passing],
                run_measured,
                check=cancel.check,
            )
            timings["quality_s"] = timings.get("quality_s", 0.0) + time.perf_counter() - t0
            return q

        for round_no in range(1, max_rounds + 1):
            cancel.check()
            rounds = round_no
            if round_no > 1 and not failing:
                break
            progress(f"round {round_no}: asking the model for tests", 10 + 80 * (round_no - 1) // max_rounds)
            t0 = time.perf_counter()
            if round_no == 1:
                user, prefill = first_round_prompt(target, module, ctx)
                chat = render_chat([Message("system", SYSTEM_PROMPT), Message("user", user)])
                answer = prefill + generate(
                    chat + prefill, max_tokens=MAX_TOKENS_FIRST, stop_when=_enough_tests
                )
                suite = normalize_tests(answer, module, target, provided)
                if not suite.tests:
                    # A greedy answer that fell into a loop (`def test_000…`) goes the same way
                    # again; started on the name the prompt asks for, it takes another path.
                    prefill += f"{target.name.split('.')[-1]}_"
                    notes.append("round 1: the first answer held no usable test, asked again")
                    log.info("round 1: no usable test in the first answer:\n%s", answer)
                    answer = prefill + generate(
                        chat + prefill, max_tokens=MAX_TOKENS_FIRST, stop_when=_enough_tests
                    )
                    suite = normalize_tests(answer, module, target, provided)
            else:
                answers = []
                for test in failing[:MAX_REPAIRS_PER_ROUND]:
                    cancel.check()
                    user, prefill = repair_prompt(target, module, ctx, test)
                    prompt = render_chat([Message("system", SYSTEM_PROMPT), Message("user", user)]) + prefill
                    body = generate(prompt, max_tokens=MAX_TOKENS_REPAIR, stop_when=_end_of_test)
                    answers.append(extract_code(prefill + body))
                # One fenced answer, as the other rounds give `normalize_tests`: where the block
                # ends is extract_code's to say, not the first backticks inside a test.
                answer = "```python\n" + "\n\n".join(answers) + "```\n"
                suite = normalize_tests(answer, module, target, provided)
            timings["model_s"] += time.perf_counter() - t0
            if round_no == 1 and examples is not None:
                # The docstring's examples lead the suite; the model's tests join them.
                suite.tests = [examples, *(t for t in suite.tests if t.name != examples.name)]
                suite.header = _complete_imports(
                    suite.header, suite, module, provided, doctest_helpers(target)
                )
            if not suite.tests:
                notes.append(f"round {round_no}: the model's answer held no usable test")
                log.info("round %d: no usable test in answer:\n%s", round_no, answer)
                continue
            if round_no > 1:
                # Keep only answers to what failed, plus genuinely new tests; a repair that
                # repeats the failing test verbatim carries no new information.
                tried = {_squash(t.source) for t in failing}
                suite.tests = [
                    t
                    for t in suite.tests
                    if t.name not in {p.name for p in passing} and _squash(t.source) not in tried
                ]
                if not suite.tests:
                    notes.append(f"round {round_no}: the model repeated the failing tests")
                    break
            cancel.check()
            running_percent = 10 + 80 * (2 * round_no - 1) // (2 * max_rounds)
            progress(f"round {round_no}: running {len(suite.tests)} test(s)", running_percent)
            t0 = time.perf_counter()
            result = run(suite)
            last_run_s = result.duration_s
            if result.collection_error and suite.header:
                # A bad helper or import in the header sinks every test: retry with imports only.
                suite.header = _complete_imports([], suite, module, provided, doctest_helpers(target))
                result = run(suite)
            timings["sandbox_s"] += time.perf_counter() - t0
            header = _merge_header(header, suite.header, module)
            still_failing: dict[str, GeneratedTest] = {t.name: t for t in failing}
            for test in suite.tests:
                ok, message = outcome_of(test, result)
                if ok:
                    test.message = ""
                    passing.append(test)
                    still_failing.pop(test.name, None)
                else:
                    test.message = message
                    still_failing[test.name] = test
            failing = list(still_failing.values())
            if examples is not None and examples in failing:
                # Not the model's to repair, nor a bug to report: doctest may accept what an
                # assert does not (an output it reads as a literal, a name the module leaves out).
                failing.remove(examples)
                dropped.append((examples.name, EXAMPLES_FAILED))
                log.info("the docstring's examples fail as a test: %s", examples.message[:300])
            passing.extend(record_values(failing, header, running_percent))
            log.info("round %d: %d passing, %d failing", round_no, len(passing), len(failing))
            for test in failing:
                log.debug(
                    "round %d: %s fails:\n%s\n%s", round_no, test.name, test.source, test.message[-600:]
                )
            if not failing:
                break
        if rounds > 1 and passing:
            # Tests kept in different rounds now share one header: prove they pass together.
            final = Suite(header, passing)
            result = run(final)
            for test in list(passing):
                ok, message = outcome_of(test, result)
                if not ok:
                    test.message = message
                    passing.remove(test)
                    failing.append(test)
        if not passing and failing:
            # No test of the model's passed, but a test that is its mistake (a wrong expected
            # value, an assert that cannot be recorded) still calls the function with inputs worth
            # testing: those calls, and their neighbours, as tests of the code's values.
            mistaken = [
                t
                for t in failing
                if not_a_bug(t.source, t.message, target.import_name, signature, facts, docstring)
            ]
            found = search_inputs(None, mistaken)
            passing.extend(found)
            reached.extend(t.name for t in found)
        quality: Quality | None = None
        if passing:
            quality = quality_now()
            for _ in range(MAX_COVERAGE_ROUNDS):
                if not (quality.uncovered or quality.survivors):
                    break
                cancel.check()
                progress(f"asking for tests of {len(quality.uncovered)} case(s) no test reaches", 92)
                t0 = time.perf_counter()
                user, prefill = coverage_prompt(target, module, ctx, passing, quality, request.text)
                prompt = render_chat([Message("system", SYSTEM_PROMPT), Message("user", user)]) + prefill
                answer = prefill + generate(prompt, max_tokens=MAX_TOKENS_COVERAGE, stop_when=_enough_tests)
                timings["model_s"] += time.perf_counter() - t0
                extra = normalize_tests(answer, module, target, provided)
                taken = {t.name for t in (*passing, *failing)}
                known = {_squash(_body(t.source)) for t in passing}
                extra.tests = [
                    t for t in extra.tests if t.name not in taken and _squash(_body(t.source)) not in known
                ]
                if not extra.tests:
                    notes.append("the coverage round gave no new test")
                    break
                rounds += 1
                trial_header = _merge_header(header, extra.header, module)
                t0 = time.perf_counter()
                result = run(Suite(trial_header, passing + extra.tests))
                timings["sandbox_s"] += time.perf_counter() - t0
                fresh = [t for t in extra.tests if outcome_of(t, result)[0]]
                if result.collection_error or not all(outcome_of(t, result)[0] for t in passing):
                    fresh = []  # the new header or tests disturb the kept ones: keep the old suite
                else:
                    wrong = [t for t in extra.tests if t not in fresh]
                    for t in wrong:
                        t.message = outcome_of(t, result)[1]
                        log.debug("coverage round: %s fails:\n%s\n%s", t.name, t.source, t.message[-600:])
                    # Aimed at a raise but given inputs that miss it: other inputs may reach it.
                    fresh += reach_raises(wrong, trial_header, 91)
                    for t in wrong:
                        # The case it reaches is the gap asked for; the exception was the model's
                        # guess. (Only here: a first-round test that expects a raise may show a bug.)
                        as_value = raised_to_value(t.source) if DID_NOT_RAISE in t.message else None
                        t.source = as_value or t.source
                    fresh += record_values(wrong, trial_header, 92)
                unrepaired = len(extra.tests) - len(fresh)
                if unrepaired:
                    notes.append(f"{unrepaired} coverage-round test(s) failed and were not kept")
                if not fresh:
                    break
                header = trial_header
                passing.extend(fresh)
                quality = quality_now()
            if quality.uncovered or quality.survivors:
                # What the model's rounds left: inputs it did not think of, often a neighbour of one it did.
                found = search_inputs(quality)
                if found:
                    passing.extend(found)
                    reached.extend(t.name for t in found)
                    quality = quality_now()
            params = {
                t.name: parameters_given(t.source, target.import_name, signature) if signature else set()
                for t in passing
            }
            kept, redundant = useful_tests([t.name for t in passing], quality, params)
            if redundant:
                dropped.extend((name, REDUNDANT) for name in redundant)
                passing = [t for t in passing if t.name in set(kept)]
                quality.tests = len(passing)
            names = descriptive_names(
                [(t.name, t.source) for t in passing], target.name, request.text, quality.arcs
            )
            for t in passing:
                if t.name in names:
                    t.source, t.name = _rename(t.source, t.name, names[t.name]), names[t.name]
            recorded[:] = [names.get(n, n) for n in recorded]
            reached[:] = [names.get(n, n) for n in reached]
        failing = _possible_bugs(target, request.text, failing, dropped, rel_test, test_path, request.root)
    timings["total_s"] = time.perf_counter() - started
    progress("done", 100)
    return GenerateTestsResult(
        target, module, test_path, header, passing, failing, rounds, timings, notes, quality, dropped,
        recorded, reached,
    )  # fmt: skip


def _signature_of(target: Target, text: str) -> Signature | None:
    """The call signature of a module-level function target (None for methods and classes)."""
    if target.kind != "function":
        return None
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == target.name:
            return signature_of(node)
    return None


def _docstring(target: Target) -> str:
    """The target's own docstring ("" when it has none or does not parse alone)."""
    try:
        tree = ast.parse(textwrap.dedent(target.source))
    except SyntaxError:
        return ""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return ast.get_docstring(node) or ""
    return ""


def _possible_bugs(
    target: Target,
    text: str,
    failing: list[GeneratedTest],
    dropped: list[tuple[str, str]],
    rel_test: str,
    test_path: Path,
    root: Path,
) -> list[GeneratedTest]:
    """The failing tests that may show a real bug; the others go to `dropped` with the reason.

    Messages name the workspace's test file instead of the sandbox's temporary one."""
    signature = _signature_of(target, text)
    facts = doctest_facts(target.source)
    docstring = _docstring(target)
    shown = test_path.relative_to(root).as_posix() if test_path.is_relative_to(root) else test_path.name
    out = []
    for test in failing:
        why = not_a_bug(test.source, test.message, target.import_name, signature, facts, docstring)
        if why:
            dropped.append((test.name, why))
            continue
        test.message = re.sub(
            rf"{re.escape(rel_test)}:\d+", f"{shown} (generated `{test.name}`)", test.message
        )
        test.message = test.message.replace(rel_test, shown)
        out.append(test)
    return out


def _merge_header(old: list[str], new: list[str], module: ModuleLocation) -> list[str]:
    merged = [h for h in dict.fromkeys([*old, *new]) if h]
    return _order_header(
        [h for h in merged if _is_import(h)], [h for h in merged if not _is_import(h)], module
    )


# ---------------------------------------------------------------------------------------------
# The test file edit


@dataclass(frozen=True)
class NewTestsEdit:
    """Either create `path` with `text`, or insert into it: imports at a line, tests at the end."""

    path: Path
    create: bool
    text: str  # the whole new file when creating, else the block appended at the end
    import_line: int = 0  # 0-based line where missing imports go (existing files)
    imports: str = ""


def _commented(test: GeneratedTest) -> str:
    message = _clip(test.message, MAX_FEEDBACK_CHARS).splitlines()[-MAX_COMMENT_LINES:]
    head = [f"# infiller: possible bug: `{test.name}` fails against the current code:"]
    head += [f"#   {m}".rstrip() for m in message]
    body = [f"# {line}".rstrip() for line in test.source.strip("\n").splitlines()]
    return "\n".join(head + body)


def _block(result: GenerateTestsResult) -> str:
    parts = [t.source.strip("\n") for t in result.passing]
    parts += [_commented(t) for t in result.failing[:MAX_REPORTED_FAILURES]]
    if len(result.failing) > MAX_REPORTED_FAILURES:
        more = len(result.failing) - MAX_REPORTED_FAILURES
        parts.append(f"# infiller: {more} more failing test(s) not shown (see the action's message)")
    return "\n\n\n".join(parts) + "\n"


def new_tests_edit(result: GenerateTestsResult, existing: str | None) -> NewTestsEdit:
    """The edit delivering the result: a new file, or new imports + tests appended to the old one."""
    imports = [h for h in result.header if _is_import(h) or not h]
    while imports and not imports[-1]:
        imports.pop()
    helpers = [h for h in result.header if h and not _is_import(h)]
    if existing is None:
        doc = f'"""Tests for `{result.module.module}`, generated by infiller and verified by running them."""'
        head = "\n".join(imports)
        body = "\n\n\n".join(p for p in ["\n\n".join(helpers), _block(result).rstrip("\n")] if p)
        return NewTestsEdit(result.test_path, True, f"{doc}\n\n{head}\n\n\n{body}\n")
    present = set(existing.splitlines())
    missing = [i for i in imports if i and i not in present]
    last_import = 0
    try:
        for node in ast.parse(existing).body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                last_import = node.end_lineno or node.lineno
    except SyntaxError:
        pass
    existing_names = module_names(existing)
    block_parts = [h for h in helpers if _defined_name(h) not in existing_names]
    block = "\n\n\n".join([*block_parts, _block(result).rstrip("\n")])
    sep = "" if existing.endswith("\n\n\n") else ("\n\n" if existing.endswith("\n") else "\n\n\n")
    return NewTestsEdit(
        result.test_path,
        False,
        f"{sep}{block}\n",
        import_line=last_import,
        imports="".join(f"{i}\n" for i in missing),
    )


def _defined_name(source: str) -> str | None:
    m = re.match(r"(?:@.*\n)*(?:async\s+)?(?:def|class)\s+(\w+)|(\w+)\s*[:=]", source)
    return (m.group(1) or m.group(2)) if m else None


def rename_clashes(result: GenerateTestsResult, existing: str | None) -> None:
    """Rename generated tests whose names an existing test file already uses."""
    if not existing:
        return
    taken = module_names(existing)
    for test in (*result.passing, *result.failing):
        if test.name in taken:
            new = f"{test.name}_generated"
            n = 2
            while new in taken:
                new = f"{test.name}_generated_{n}"
                n += 1
            test.source = re.sub(
                rf"\b(def|class)\s+{re.escape(test.name)}\b", rf"\1 {new}", test.source, count=1
            )
            test.name = new
            taken.add(new)


__all__ = [
    "GenerateTestsRequest",
    "GenerateTestsResult",
    "GeneratedTest",
    "ModuleLocation",
    "NewTestsEdit",
    "Suite",
    "Target",
    "conventional_test_path",
    "find_target",
    "generate_tests",
    "module_location",
    "new_tests_edit",
    "normalize_tests",
    "rename_clashes",
]
