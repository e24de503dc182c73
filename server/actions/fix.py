"""Fix this: propose repairs for a diagnostic or a selection, keep only the ones that verify.

Strategies, in the order the evidence chooses (the failing assertion, the traceback's lines in
the function, the exception, the diagnostic's kind): exact candidates without the model (a typo
of a defined name, a missing import; one operator or constant of a suspect line changed, the
off-by-ones and boundaries single-line bugs mostly are); FIM re-infills of the suspect lines
(the diagnostic or failing assertion as a hint comment just before the hole, which the edit
never keeps); a chat rewrite of the enclosing function (with the failing tests' output). Each
candidate is checked: the whole file parses (tree-sitter without ERROR/MISSING nodes, and
Python's compiler), it adds no undefined name, the diagnostic's cause is gone where that can be
re-checked (syntax errors, undefined names), and the related tests (tests that mention the
function) pass in the sandbox without regressions. The shared round loop
(server/actions/rounds.py) runs them: the first candidate that verifies its cause ends the
search; a second round shows the rewrite why the first failed; candidates, generations and time
are capped (FIX_BUDGET). Survivors are ranked: cause verified, more tests passing, smaller edit.
"""

from __future__ import annotations

import ast
import difflib
import enum
import functools
import io
import logging
import math
import re
import symtable
import sys
import textwrap
import time
import tokenize
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from server.actions.calls import lost_calls
from server.actions.quality import Mutant, mutants
from server.actions.rounds import Budget, Constant, Proposal, Strategy, Verdict, run_rounds
from server.actions.sandbox import RunResult, Sandbox
from server.actions.textedit import LineEdit, apply_line_edit, minimal_line_edit, split_lines
from server.actions.verify import (
    looks_like_syntax_error,
    parses_cleanly,
    python_syntax_error,
    syntax_issues,
    undefined_name_in,
    undefined_names,
)
from server.model.chat import (
    FirstTokens,
    Generate,
    Message,
    ProgressFn,
    closing_fence,
    extract_code,
    no_progress,
    render_chat,
)
from server.model.runtime import CancelToken
from server.model.templates import FimTemplate

log = logging.getLogger(__name__)

# Generate -> verify rounds; the second one sees why the first round's candidates failed.
MAX_ROUNDS = 2
# The hard caps of one Fix this (server/actions/rounds.py): gains stop after 2-3 rounds; a
# candidate verified is a sandbox run (1-3 s), a generation 5-20 s on 2 cores; the unbounded
# search took 17 candidates and 18 minutes to find nothing (bench/results/actions_bench_1.5b.md).
# The one-token candidates (MAX_BOUNDARY_CANDIDATES) leave room for one per generation.
MAX_GENERATIONS = 4
MAX_CANDIDATES = 28
FIX_BUDGET_S = 120.0
FIX_BUDGET = Budget(MAX_ROUNDS, MAX_CANDIDATES, MAX_GENERATIONS, FIX_BUDGET_S)
# FIM window around the hole: enough to see the function and its neighbours, cheap to read.
FIM_PREFIX_LINES = 80
FIM_SUFFIX_LINES = 30
# Above that window, the module's imports and short assignments (at most this many lines): the
# names a lost expression may have used that the window does not reach, such as a helper bound at
# the top (`_sumprod = getattr(math, "sumprod", ...)` in more-itertools, 900 lines above its use).
FIM_HEADER_LINES = 40
# An assignment longer than this is data, not a name worth its tokens.
FIM_HEADER_ASSIGN_LINES = 2
# Tokens per line of the hole, plus slack for a line the fix adds, capped for latency.
FIM_TOKENS_PER_LINE = 40
FIM_EXTRA_TOKENS = 48
FIM_MAX_TOKENS = 320
# A re-infill may add at most this many lines beyond the hole (a fix is small).
FIM_EXTRA_LINES = 3
# Sibling functions shown to a lost expression's last re-infill: a module's twins hold the same
# expression shape (pydash's min_by/max_by, pull_all_by/pull_all_with). Similarity is the
# IDF-weighted share of words (docstring boilerplate every function has weighs little), plus
# this much for each shared part of the name, as a share of all name parts.
SIBLING_NAME_WEIGHT = 0.3
# Below this a function is not a twin (measured on pydash: twins 0.55-1.0, unrelated 0.05-0.3).
SIBLING_MIN_SCORE = 0.35
SIBLING_KEEP = 2
# Lines of a sibling shown, docstring removed: its signature and a short body.
SIBLING_MAX_LINES = 20
# A logic-error span up to this long is re-infilled whole; a longer one line by line.
MAX_FIM_SPAN_LINES = 3
# Suspect lines re-infilled per round when the faulty line is unknown (one generation each):
# the evidence ranks the likeliest first, and the rewrite follows.
LINE_REINFILLS_PER_ROUND = 2
# A lost expression's first re-infill also tries the answers that start with the model's next
# likeliest first tokens, since the tests judge each: of five lost expressions every way missed
# (pydash, inflection), four were then repaired (pull_all_by: greedy `values`, after its 3rd
# likeliest start the original `pull_all(array, values)`). The prompt is still in the KV cache, so
# one costs only its own tokens.
BRANCHES = 3
# A first token less likely than this is not worth its generation and sandbox run.
MIN_BRANCH_PROBABILITY = 0.02
# A chat rewrite returns the whole function: room for ~60 lines.
CHAT_MAX_TOKENS = 900
# Enclosing functions longer than this are not rewritten whole (the model cannot echo them intact).
MAX_REWRITE_LINES = 120
# Lines around the problem used instead of a function when there is none (module-level code).
FALLBACK_CONTEXT_LINES = 4
# Related test files run per candidate (each run is a pytest process).
MAX_RELATED_TEST_FILES = 3
# Boundary candidates (no model: one operator or constant of a suspect line changed, the
# related tests decide) verified before any generation; each costs one test run, so they leave
# room in MAX_CANDIDATES for the model's. Measured without the model (bench/fix_boundary_rank.py,
# 72 bench mutants, 55 of them one token from their repair): the exact repair is among 8
# candidates at 4 per line for 52, among 12 at 6 per line for 54, among 24 for all 55; a
# candidate is one test run (1-2 s), a generation 5-20 s.
MAX_BOUNDARY_CANDIDATES = 12
# Per suspect line, so that several lines get a try within the budget: 2 per line on lines no
# traceback implicates found 40 of the 52 above.
MAX_BOUNDARY_PER_LINE = 6
# One-token candidates after the first re-infills: the next ones along the returned value's
# flow back through the assignments that feed it (wcwidth's `center`, actions-23: the bug was
# two assignments above the return, whose 12 candidates went to the return and the line before
# it). After the model's first answers, so they cost the repairs those find nothing;
# MAX_CANDIDATES leaves room.
MAX_DEEPER_CANDIDATES = 12
# Failure output shown to the model.
MAX_FEEDBACK_CHARS = 1_200
TEST_GLOBS = ("test_*.py", "*_test.py")

_DEF = re.compile(r"^(?P<indent>[ \t]*)(?:async[ \t]+)?(?:def|class)[ \t]+(?P<name>\w+)")


class Kind(enum.Enum):
    SYNTAX = "syntax"
    UNDEFINED_NAME = "undefined-name"
    OTHER = "other"
    EDIT = "edit"  # edit by instruction: verified like a fix, but nothing is expected to start passing


@dataclass(frozen=True)
class Problem:
    """A diagnostic or selection: 0-based lines, code-point columns, end inclusive of its line."""

    start_line: int
    start_column: int
    end_line: int
    end_column: int
    message: str = ""
    source: str | None = None


@dataclass
class FixRequest:
    path: Path
    text: str
    language: str
    problem: Problem
    root: Path | None = None


@dataclass
class Candidate:
    origin: str
    text: str
    edit: LineEdit
    checks: list[str] = field(default_factory=list)
    cause_verified: bool = False
    tests_passed: int = 0
    original: str = ""

    def sort_key(self) -> tuple[bool, int, int, float]:
        return (not self.cause_verified, -self.tests_passed, self.edit.size, self.changed_chars)

    @property
    def changed_chars(self) -> float:
        """How much of the touched text changed: a typo fix beats a rewritten line."""
        old = "".join(split_lines(self.original)[self.edit.start : self.edit.end])
        matcher = difflib.SequenceMatcher(None, old, self.edit.new_text, autojunk=False)
        return (1 - matcher.ratio()) * max(len(old), len(self.edit.new_text))

    @property
    def title(self) -> str:
        return ", ".join(self.checks)


@dataclass
class FixResult:
    kind: Kind
    verified: list[Candidate]
    rejected: list[tuple[str, str]]
    rounds: int
    related_tests: list[str]
    timings: dict[str, float]
    # One readable line per candidate tried, in order: `✗ line 8 `<` -> `<=`: breaks test_a`.
    tried: list[str] = field(default_factory=list)
    evidence: str = ""  # what chose the order of the strategies
    notes: list[str] = field(default_factory=list)
    generations: int = 0  # model calls made
    candidates: int = 0  # candidates verified (a sandbox run each where there are tests)


@dataclass(frozen=True)
class Evidence:
    """What the failing tests say: the lines of the function their tracebacks pass through
    (0-based, innermost first), whether an assertion compared values, the exception raised."""

    lines: tuple[int, ...] = ()
    wrong_value: bool = False
    exception: str | None = None
    none_returned: tuple[int, ...] = ()  # the bare returns, when the function gave None
    # Frames ("path:line") whose line calls the function and fails after it returned: what it
    # returned is wrong, though no frame is inside it (a decorator's result called at import).
    callers: tuple[str, ...] = ()
    # The tests ran on past their time: `lines` are where a test was when its alarm stopped it.
    hang: bool = False

    def describe(self) -> str:
        parts = []
        if self.hang:
            parts.append("the tests hang")
        if self.exception:
            parts.append(f"{self.exception} raised")
        elif self.wrong_value:
            parts.append("an assertion saw a wrong value")
        if self.lines:
            parts.append("implicated line(s) " + ", ".join(str(i + 1) for i in self.lines))
        elif self.callers:
            parts.append("where its result is used at " + ", ".join(self.callers))
        return "; ".join(parts)


_EXCEPTION = re.compile(r"^E\s+(\w+(?:Error|Exception)|StopIteration|KeyError)\b", re.MULTILINE)


# The function gave None where a value was expected, as pytest reports it (also through repr()).
_GOT_NONE = re.compile(
    r"assert (?:None|'None') (?:==|is|!=)|== (?:None|'None')$|\bwhere None = |\bNoneType\b", re.M
)
_BARE_RETURN = re.compile(r"^\s*return(?:\s+None)?\s*(?:#.*)?$")
# A return that gives a value (not None).
_VALUE_RETURN = re.compile(r"^\s*return\s+(?!None\s*(?:#.*)?$)\S")
# A traceback frame as pytest --tb=short prints it: "path:line: in scope", then the source line.
_FRAME = re.compile(r"^(?P<path>\S+):(?P<line>\d+): in .*\n[ \t]+(?P<source>.*)$", re.MULTILINE)


def read_evidence(
    failures: str, rel_path: str, block: Block | None, block_lines: Sequence[str] = ()
) -> Evidence:
    """Evidence from the baseline's failure messages (pytest --tb=short)."""
    if not failures:
        return Evidence()
    found: list[int] = []
    for m in re.finditer(rf"(?m)^{re.escape(rel_path)}:(\d+): in ", failures):
        line = int(m.group(1)) - 1
        if block is None or block.start <= line < block.end:
            found.append(line)
    # The deepest frame in the file is the likeliest place; tracebacks list it last.
    lines = tuple(dict.fromkeys(reversed(found)))
    bare: list[int] = []
    if block is not None and _GOT_NONE.search(failures):
        # The function gave None where a value was expected: its bare returns are the suspects.
        bare = [i for i in range(block.start, block.end) if _BARE_RETURN.match(block_lines[i])]
    elif block is not None and block_lines:
        # Failures that never show the None (`assert repr(res == [...]) == 'True'`, `assert
        # f(x)` in the module's own code) and a bare `return` as the function's last line, or
        # in a function whose other returns give values, which no one writes on purpose: it
        # lost its expression (pydash's pull_all_with, actions-17; aima3's is_definite_clause,
        # actions-36, where the module's import failed on `assert is_definite_clause(s)`).
        span = range(block.start, block.end)
        last = next((i for i in range(block.end - 1, block.start, -1) if block_lines[i].strip()), None)
        if last is not None and block_lines[last].strip() == "return":
            bare = [last]
        elif any(_VALUE_RETURN.match(block_lines[i]) for i in span):
            bare = [i for i in span if block_lines[i].strip() == "return"]
    lines = tuple(dict.fromkeys([*lines, *bare]))
    exc = _EXCEPTION.search(failures)
    exception = exc.group(1) if exc and exc.group(1) != "AssertionError" else None
    wrong_value = exception is None and ("assert " in failures or "AssertionError" in failures)
    return Evidence(lines, wrong_value, exception, tuple(bare), _callers(failures, rel_path, block))


def _callers(failures: str, rel_path: str, block: Block | None) -> tuple[str, ...]:
    """Where an exception other than a failed assertion was raised on a line that calls the
    function (by name), the traceback going no deeper into it: its wrong result was used there."""
    if block is None or not block.name:
        return ()
    call = re.compile(rf"(?<!\w){re.escape(block.name)}\s*\(")
    out: list[str] = []
    start = 0
    # Each traceback ends at its "E" lines; its last frame is where it failed.
    for end in re.finditer(r"(?m)^E\s+(\w+)", failures):
        frames = list(_FRAME.finditer(failures, start, end.start()))
        start = end.end()
        if not frames or end.group(1) in ("assert", "AssertionError"):
            continue
        last = frames[-1]
        inside = last["path"] == rel_path and block.start <= int(last["line"]) - 1 < block.end
        if not inside and call.search(last["source"]):
            out.append(f"{last['path']}:{last['line']}")
    return tuple(dict.fromkeys(out))


def boundary_candidates(
    text: str,
    order: list[int],
    limit: int = MAX_BOUNDARY_CANDIDATES,
    skip: Collection[str] = (),
) -> list[tuple[str, str]]:
    """(origin, text) of one-operator/one-constant changes of the given lines (0-based), in order,
    at most MAX_BOUNDARY_PER_LINE per line, not counting the texts in `skip` (tried already)."""
    out: list[tuple[str, str]] = []
    lines = text.splitlines()
    for line in order:
        counts = _operator_counts(lines[line]) if line < len(lines) else Counter()
        ranked = sorted(
            mutants(text, line + 1, line + 1, repair=True),
            key=lambda m: not (_evens_out(m, counts) or _written_fraction(m)),
        )
        for m in [m for m in ranked if m.text not in skip][:MAX_BOUNDARY_PER_LINE]:
            out.append((f"line {m.line} {m.description}", m.text))
            if len(out) >= limit:
                return out
    return out


_REPLACED = re.compile(r"^`([^`]+)` -> `([^`]+)`")


def _operator_counts(line: str) -> Counter[str]:
    """The operators of one line of Python, counted (`//` apart from `/`); empty where the line
    does not tokenize alone (a bracket it does not close)."""
    try:
        return Counter(
            t.string
            for t in tokenize.generate_tokens(io.StringIO(line.strip()).readline)
            if t.type == tokenize.OP
        )
    except (tokenize.TokenError, SyntaxError):
        return Counter()


def _evens_out(mutant: Mutant, counts: Counter[str]) -> bool:
    """Whether the change turns a line's odd operator out into the one it otherwise uses:
    `days * 60 // 60 * 24` -> `*` (python-utils' timedelta_to_seconds, bench actions-21, whose
    repair came after six constant changes and was cut at MAX_BOUNDARY_PER_LINE)."""
    m = _REPLACED.match(mutant.description)
    if m is None:
        return False
    old, new = m.groups()
    return counts[old] == 1 and counts[new] >= 2


def _written_fraction(mutant: Mutant) -> bool:
    """Whether the change turns a product of two number literals into their quotient: `2 * 3 * X`
    is nobody's way to write `6 * X`, while `2 / 3 * X` is how formulas write a fraction
    (colour's XYZ_to_UCS, bench actions-40: the repair was the 15th candidate of its line)."""
    if not mutant.description.startswith("`*` -> `/`"):
        return False
    try:
        node = ast.parse(mutant.segment, mode="eval").body
    except SyntaxError:
        return False
    return isinstance(node, ast.BinOp) and all(
        isinstance(side, ast.Constant) and type(side.value) in (int, float)
        for side in (node.left, node.right)
    )


# ---------------------------------------------------------------------------------------------
# Understanding the problem


def classify(problem: Problem, text: str, language: str) -> tuple[Kind, str | None]:
    name = undefined_name_in(problem.message)
    if name:
        return Kind.UNDEFINED_NAME, name
    if problem.message and looks_like_syntax_error(problem.message, problem.source):
        return Kind.SYNTAX, None
    if not parses_cleanly(language, text):
        return Kind.SYNTAX, None
    return Kind.OTHER, None


@dataclass(frozen=True)
class Block:
    """Lines [start, end) of the enclosing definition (decorators included)."""

    start: int
    end: int
    name: str | None
    indent: str


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def enclosing_block(lines: list[str], line: int) -> Block | None:
    """The innermost def/class around `line`, found by indentation so broken syntax still works."""
    if not lines:
        return None
    line = min(line, len(lines) - 1)
    probe = line
    while probe > 0 and not lines[probe].strip():
        probe -= 1
    level = _indent(lines[probe]) + (1 if _DEF.match(lines[probe]) else 0)
    for start in range(probe, -1, -1):
        m = _DEF.match(lines[start])
        if not m or len(m.group("indent")) >= level:
            continue
        if m.group(0).lstrip().startswith("class") and start != probe:
            return None  # directly in a class body, not in a method: no function to rewrite
        def_indent = len(m.group("indent"))
        end = start + 1
        for i in range(start + 1, len(lines)):
            text = lines[i]
            if not text.strip() or text.lstrip().startswith((")", "]", "}")):
                continue
            if _indent(text) <= def_indent:
                break
            end = i + 1
        else:
            end = len(lines)
        first = start
        while (
            first > 0 and lines[first - 1].strip().startswith("@") and _indent(lines[first - 1]) == def_indent
        ):
            first -= 1
        if end <= line and line != start:
            continue  # the problem is after this block (e.g. a module-level statement below it)
        return Block(first, end, m.group("name"), m.group("indent"))
    return None


def related_test_files(root: Path, path: Path, names: set[str]) -> list[str]:
    """Workspace-relative test files that mention one of `names` (the function under repair)."""
    if not names:
        return []
    found: list[str] = []
    pattern = re.compile(r"\b(" + "|".join(re.escape(n) for n in sorted(names)) + r")\b")
    skip = {".git", ".venv", "venv", "node_modules", "__pycache__", "build", "dist", ".tox"}
    for glob in TEST_GLOBS:
        for test in sorted(root.rglob(glob)):
            if any(part in skip for part in test.relative_to(root).parts) or test.resolve() == path.resolve():
                continue
            try:
                if pattern.search(test.read_text(encoding="utf-8", errors="replace")):
                    rel = test.relative_to(root).as_posix()
                    if rel not in found:
                        found.append(rel)
            except OSError:
                continue
            if len(found) >= MAX_RELATED_TEST_FILES:
                return found
    return found


# ---------------------------------------------------------------------------------------------
# Candidate generators


def _hint(problem: Problem) -> str | None:
    message = " ".join(problem.message.split())
    return f"FIXME: {message}" if message else None


# A defined name this similar to an undefined one is taken for what the author meant.
TYPO_CUTOFF = 0.75
TYPO_CANDIDATES = 2


def _bound_names(text: str) -> set[str]:
    try:
        top = symtable.symtable(text, "<buffer>", "exec")
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    stack = [top]
    while stack:
        table = stack.pop()
        stack.extend(table.get_children())
        names.update(
            s.get_name()
            for s in table.get_symbols()
            if s.is_assigned() or s.is_imported() or s.is_parameter() or s.is_namespace()
        )
    return names


def name_candidates(text: str, name: str, first: int, last: int) -> list[tuple[str, str]]:
    """(origin, new text) fixes of an undefined name that need no model: the closest defined name
    on the diagnostic's lines (a typo), or an import of the standard-library module so named."""
    out: list[tuple[str, str]] = []
    lines = split_lines(text)
    pattern = re.compile(rf"(?<![\w.]){re.escape(name)}\b")
    for match in difflib.get_close_matches(
        name, sorted(_bound_names(text) - {name}), TYPO_CANDIDATES, TYPO_CUTOFF
    ):
        new = [pattern.sub(match, ln) if first <= i <= last else ln for i, ln in enumerate(lines)]
        out.append((f"rename to `{match}`", "".join(new)))
    if name in sys.stdlib_module_names:
        at = _import_insert_line(lines)
        out.append((f"import {name}", "".join([*lines[:at], f"import {name}\n", *lines[at:]])))
    return out


def _assertion_hint(failures: str) -> str | None:
    """`FIXME: make this pass: assert f(x) == y` from the first failing assertion of a report."""
    for line in failures.splitlines():
        text = line.strip()
        if text.startswith("assert "):
            return f"FIXME: make this pass: {text}"
    for line in failures.splitlines():
        if line.startswith("E "):
            return f"FIXME: {line[1:].strip()}"
    return None


_COMPARISON = re.compile(r"<=|>=|==|!=|<|>|\bnot\b|\bin\b|\bis\b")
_ARITHMETIC = re.compile(r"[-+*/%]|\[-?\d+\]|\brange\(|\blen\(")
# A docstring's opening line may carry a string prefix (`r` in w3lib's read_bom, bench actions-20).
_DOCSTRING_OPENING = re.compile(r"^[rRuUbB]?(\"\"\"|''')")


def suspicious_lines(lines: list[str], block: Block) -> list[int]:
    """Body lines of a function most likely to hold a logic bug, most suspicious first."""
    scored: list[tuple[int, int]] = []
    in_doc = ""  # the quotes of the docstring the scan is in
    for i in range(block.start, block.end):
        text = lines[i].strip()
        opening = None if in_doc else _DOCSTRING_OPENING.match(text)
        if opening:
            quotes = opening.group(1)
            # Open, unless it closes on its own line.
            in_doc = "" if text[opening.end() :].endswith(quotes) else quotes
            continue
        if in_doc and text.endswith(in_doc):  # not at other quotes (toolz' doctests hold ''')
            in_doc = ""
            continue
        if in_doc or not text or text.startswith(("#", "@")) or _DEF.match(lines[i]):
            continue
        score = 3 * len(_COMPARISON.findall(text)) + len(_ARITHMETIC.findall(text))
        score += 2 if text.startswith(("if ", "elif ", "while ", "for ")) else 0
        score += 1 if text.startswith("return ") else 0
        scored.append((-score, i))
    return [i for _, i in sorted(scored)]


def suspects(lines: list[str], block: Block, evidence: Evidence) -> list[int]:
    """Lines of the function to change first (0-based): the lines the failing tests' tracebacks
    pass through (innermost first), then the lines that assign what those lines read (latest
    first), then the rest by suspicion (`suspicious_lines`). Where the tests hang, the loops'
    exits and what moves them come first (`loop_exits`)."""
    ranked = loop_exits(lines, block, evidence.lines) if evidence.hang else []
    ranked += [i for i in evidence.lines if i not in ranked]
    ranked += [i for i in _feeders(lines, block, evidence.lines) if i not in ranked]
    ranked += [i for i in suspicious_lines(lines, block) if i not in ranked]
    return ranked


def loop_exits(lines: list[str], block: Block, implicated: Sequence[int]) -> list[int]:
    """For tests that never end: the conditions that end the loops around the implicated lines
    (a `while`'s test, an `if` whose body breaks or returns), innermost loop first, then the lines
    in those loops that assign what the conditions read, latest first (0-based). A loop that
    never ends has an exit that never holds or a bound that never moves (algorithms'
    `binary_search_first_true`, actions-29: `mid = low + (high + low) // 2`, two steps back from
    `while low <= high`; primefac's `williams_pp1`, actions-31: `if g != n: break`). Without an
    implicated line inside a loop, every loop of the function counts."""
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError:
        return []

    def span(node: ast.stmt) -> range:
        return range(node.lineno - 1, (node.end_lineno or node.lineno))

    loops = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.While | ast.For | ast.AsyncFor) and block.start <= n.lineno - 1 < block.end
    ]
    around = [n for n in loops if any(i in span(n) for i in implicated)] or loops
    around.sort(key=lambda n: n.lineno, reverse=True)  # of nested loops, the inner starts later
    exits: list[int] = []
    for loop in around:
        if isinstance(loop, ast.While):
            exits.append(loop.test.lineno - 1)
        guards = (
            n.test.lineno - 1
            for n in ast.walk(loop)
            if isinstance(n, ast.If) and any(isinstance(b, ast.Break | ast.Return) for b in n.body)
        )
        exits += sorted(guards)
    exits = list(dict.fromkeys(exits))
    inside = set().union(*(span(n) for n in around)) if around else set()
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.lineno - 1 in inside]
    ranked = list(exits)
    # What the exits read is assigned on some lines, what those read on others: two steps back.
    for _ in range(2):
        read = {n.id for n in names if isinstance(n.ctx, ast.Load) and n.lineno - 1 in ranked}
        moves = {n.lineno - 1 for n in names if isinstance(n.ctx, ast.Store) and n.id in read}
        ranked += sorted(moves - set(ranked), reverse=True)
    return ranked


def _value_exits(tree: ast.Module, block: Block) -> list[ast.Return | ast.Yield | ast.YieldFrom]:
    """The block's returns and yields that carry a value (a generator's values leave through its
    yields as a function's through its returns)."""
    return [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Return | ast.Yield | ast.YieldFrom)
        and n.value is not None
        and block.start <= n.lineno - 1 < block.end
    ]


def value_suspects(lines: list[str], block: Block, evidence: Evidence) -> list[int]:
    """Lines to re-infill first (0-based): where the tracebacks point, as `suspects`; for a wrong
    value returned without a traceback into the function, the return (or yield) lines and then the lines
    that mention what they return, nearest first: the value is computed there, whatever the
    operators (a re-infill, unlike a one-token change, can rewrite a line that has none)."""
    ranked = suspects(lines, block, evidence)
    if evidence.lines or not evidence.wrong_value:
        return ranked
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError:
        return ranked
    returns = _value_exits(tree, block)
    names = {x.id for r in returns for x in ast.walk(r) if isinstance(x, ast.Name)}
    mentions = {
        n.lineno - 1
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and n.id in names and block.start <= n.lineno - 1 < block.end
    }
    flow = [r.lineno - 1 for r in returns]
    last = max(flow, default=block.end)
    flow += sorted((i for i in mentions if i < last and not _DEF.match(lines[i])), reverse=True)
    flow = list(dict.fromkeys(flow))
    return [*flow, *(i for i in ranked if i not in flow)]


def value_flow(lines: list[str], block: Block) -> list[int]:
    """The function's return (and yield) lines, then the lines that assign what they read, then
    the lines that assign what those read, and so on (0-based; breadth first, latest first)."""
    try:
        tree = ast.parse("".join(lines))
    except SyntaxError:
        return []
    flow = sorted({r.lineno - 1 for r in _value_exits(tree, block)}, reverse=True)
    frontier = flow
    while frontier:
        frontier = [i for i in _feeders(lines, block, frontier, tree) if i not in flow]
        flow += frontier
    return flow


def _feeders(
    lines: list[str], block: Block, implicated: Sequence[int], tree: ast.Module | None = None
) -> list[int]:
    """Lines of the block before each implicated line that assign a name it reads."""
    if tree is None:
        try:
            tree = ast.parse("".join(lines))
        except SyntaxError:
            return []
    stores: dict[str, list[int]] = {}
    loads: dict[int, set[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Name) or not block.start <= node.lineno - 1 < block.end:
            continue
        if isinstance(node.ctx, ast.Store):
            stores.setdefault(node.id, []).append(node.lineno - 1)
        else:
            loads.setdefault(node.lineno - 1, set()).add(node.id)
    out: list[int] = []
    for line in implicated:
        for name in sorted(loads.get(line, ())):
            out += sorted((i for i in stores.get(name, []) if i < line and i not in out), reverse=True)
    return out


def _fim_holes(
    round_no: int,
    kind: Kind,
    lines: list[str],
    block: Block | None,
    first: int,
    last: int,
    problem: Problem,
    failures: str,
    ranked: Sequence[int] = (),
) -> list[tuple[str, tuple[int, int], str | None]]:
    """(origin, hole, hint) of the FIM proposals of a round."""
    message_hint = _hint(problem)
    if kind is not Kind.OTHER:
        if round_no > 1:
            return []
        holes: list[tuple[str, tuple[int, int], str | None]] = [
            ("re-infill", (first, last + 1), message_hint)
        ]
        wide = (max(0, first - 1), min(len(lines), last + 2))
        if block is not None:
            wide = (max(wide[0], block.start + 1), min(wide[1], block.end))
        if wide != (first, last + 1) and wide[0] < wide[1]:
            holes.append(("re-infill (wider)", wide, None))
        return holes
    # A logic error: the message does not say where. A small span is re-infilled whole; in a
    # function with failing tests, its suspects (`suspects`: the lines the tracebacks implicate
    # first), one by one, with the failing assertion as the hint; the tests decide.
    hint = _assertion_hint(failures) or message_hint
    if last - first + 1 <= MAX_FIM_SPAN_LINES:
        return [("re-infill", (first, last + 1), hint)] if round_no == 1 else []
    if block is None or not failures:
        return []
    ranked = list(ranked) or suspicious_lines(lines, block)
    chosen = ranked[(round_no - 1) * LINE_REINFILLS_PER_ROUND : round_no * LINE_REINFILLS_PER_ROUND]
    return [(f"re-infill line {i + 1}", (i, i + 1), hint) for i in chosen]


def fim_candidate(
    lines: list[str],
    start: int,
    end: int,
    template: FimTemplate,
    generate: Generate,
    *,
    hint: str | None,
    lead: str = "",
    suffix_stop: int | None = None,
    context: str = "",
    window_start: int | None = None,
    first_tokens: FirstTokens | None = None,
    branch: int = 0,
) -> str | None:
    """Re-infill lines [start, end) with FIM; returns the new whole text, or None.

    `lead`: the start of the hole's first line, kept after its indentation (`return `: the
    model must write the expression a bare return lost, not the bare return again).
    `suffix_stop`: the line (0-based) where the suffix the model sees ends (the function's end).
    `context`: code from elsewhere in the file, shown between the module header and the window.
    `window_start`: the line (0-based) where the window above the hole starts (the function's
    start: nothing between the context and the function).
    `branch` > 0: the answer that starts with the model's `branch`+1-th likeliest first token
    (`first_tokens`); None when there is none that likely."""
    hole = [ln for ln in lines[start:end] if ln.strip()]
    indent = min((_indent(ln) for ln in hole), default=0)
    pad = hole[0][: _indent(hole[0])] if hole else ""
    head = pad + lead if lead else ""
    window = max(0, start - FIM_PREFIX_LINES) if window_start is None else window_start
    prefix = module_header(lines, window) + context + "".join(lines[window:start])
    if hint:
        prefix += f"{pad}{hint}\n"
    prefix += head
    last = end + FIM_SUFFIX_LINES if suffix_stop is None else min(end + FIM_SUFFIX_LINES, suffix_stop)
    suffix = "".join(lines[end:last])
    max_lines = max(1, end - start) + FIM_EXTRA_LINES
    budget = min(FIM_MAX_TOKENS, FIM_TOKENS_PER_LINE * max(1, end - start) + FIM_EXTRA_TOKENS)

    def enough(text: str) -> bool:
        return _trim_middle(head + text, suffix, max_lines, hint, indent)[1]

    prompt, start_with = template.render_fim(prefix, suffix), ""
    if branch:
        likeliest = first_tokens(prompt, branch + 1) if first_tokens is not None else []
        if len(likeliest) <= branch or likeliest[branch][1] < MIN_BRANCH_PROBABILITY:
            return None
        start_with = likeliest[branch][0]
    middle = start_with + generate(
        prompt + start_with, max_tokens=budget, stop_when=lambda text: enough(start_with + text)
    )
    for stop in template.stop:
        middle = middle.split(stop, 1)[0]
    if head and not middle.strip():
        return None  # nothing after `return `: the bare return again
    kept, _ = _trim_middle(head + middle, suffix, max_lines, hint, indent)
    if kept is None:
        return None
    before, after = "".join(lines[:start]), "".join(lines[end:])
    return before + meant_names(before, kept, after) + after


def meant_names(before: str, hole: str, after: str) -> str:
    """`hole` with each function it calls that the file defines nowhere replaced by the closest
    function or class the file defines at its top level, when one is close enough (TYPO_CUTOFF).

    The model misremembers helpers it cannot see: toolz' `merge_sorted` lost `return
    _merge_sorted_binary_key(seqs, key)`, defined 46 lines below the FIM window, and the re-infill
    wrote `_merge_sorted_key(seqs, key)` (bench actions-8). Only calls, and only top-level
    definitions: a variable read as another (`totl` as `total`) would change what the code means
    where no test may say so. Python only; other text is returned as it is."""
    # The file around the hole, which may be a block's only statement (`else: return ...`).
    pad = hole[: len(hole) - len(hole.lstrip(" \t"))]
    scaffold = before + pad + "pass\n" + after
    missing = {u.name for u in undefined_names(before + hole + after)}
    missing -= {u.name for u in undefined_names(scaffold)}
    missing = {n for n in missing if _calls(hole, n)}
    if not missing:
        return hole
    try:
        tree = ast.parse(scaffold)
    except (SyntaxError, ValueError):
        return hole
    defs = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
    defined = sorted(node.name for node in tree.body if isinstance(node, defs))
    for name in sorted(missing):
        match = difflib.get_close_matches(name, defined, 1, TYPO_CUTOFF)
        if match:
            log.info("re-infill: `%s` read as `%s`", name, match[0])
            hole = re.sub(rf"(?<![\w.]){re.escape(name)}\b", match[0], hole)
    return hole


def _calls(text: str, name: str) -> bool:
    """Whether `text` calls `name` itself (not an attribute of that name: `pyd.name(` does not count)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}\s*\(", text) is not None


def module_header(lines: list[str], before: int) -> str:
    """Imports and short module-level assignments ending above line `before` (0-based), in file
    order, capped at FIM_HEADER_LINES, followed by a blank line; "" when there are none or the
    file does not parse."""
    if before <= 0:
        return ""
    try:
        tree = ast.parse("".join(lines))
    except (SyntaxError, ValueError):
        return ""
    kept: list[str] = []
    for node in tree.body:
        end = node.end_lineno or node.lineno
        if end > before:
            break
        short = isinstance(node, ast.Assign | ast.AnnAssign) and end - node.lineno < FIM_HEADER_ASSIGN_LINES
        if not (isinstance(node, ast.Import | ast.ImportFrom) or short):
            continue
        span = lines[node.lineno - 1 : end]
        if len(kept) + len(span) > FIM_HEADER_LINES:
            break
        kept += span
    return "".join(kept) + "\n\n" if kept else ""


_WORD_RE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def sibling_functions(lines: list[str], block: Block, hole: int) -> tuple[list[str], str]:
    """The file's functions most like the one at `block` (its line `hole` left out), for a
    re-infill to read: their names, most alike first, and their code without docstrings, most
    alike last (nearest the function), ending in a blank line. `typing.overload` stubs, the
    function's own other definitions and its wrappers are left out; ([], "") when none scores
    SIBLING_MIN_SCORE or the file does not parse."""
    try:
        tree = ast.parse("".join(lines))
    except (SyntaxError, ValueError):
        return [], ""
    functions = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and not _is_overload(n)
    ]
    own = next(
        (n for n in functions if n.name == block.name and block.start <= n.lineno - 1 < block.end), None
    )
    if own is None:
        return [], ""

    def words(node: ast.FunctionDef | ast.AsyncFunctionDef, skip: int = -1) -> set[str]:
        text = "".join(
            ln for i, ln in enumerate(lines[node.lineno - 1 : node.end_lineno], node.lineno - 1) if i != skip
        )
        return {w.lower() for w in _WORD_RE.findall(text)}

    bags = {id(n): words(n, hole if n is own else -1) for n in functions}
    seen_in: dict[str, int] = {}
    for bag in bags.values():
        for w in bag:
            seen_in[w] = seen_in.get(w, 0) + 1
    weight = {w: math.log((len(functions) + 1) / (k + 0.5)) for w, k in seen_in.items()}
    mine, my_parts = bags[id(own)], set(own.name.lower().split("_")) - {""}
    scored: list[tuple[float, ast.FunctionDef | ast.AsyncFunctionDef]] = []
    for node in functions:
        if node.name == own.name or block.start <= node.lineno - 1 < block.end:
            continue  # the function itself, its other definitions, functions nested in it
        if _calls("".join(lines[node.lineno : node.end_lineno]), own.name):
            continue  # a wrapper of the function (pydash's max_ calls max_by): read, it invites recursion
        bag, parts = bags[id(node)], set(node.name.lower().split("_")) - {""}
        union = sum(weight[w] for w in mine | bag)
        share = sum(weight[w] for w in mine & bag) / union if union else 0.0
        score = share + SIBLING_NAME_WEIGHT * len(my_parts & parts) / max(1, len(my_parts | parts))
        if score >= SIBLING_MIN_SCORE:
            scored.append((score, node))
    best = [node for _, node in sorted(scored, key=lambda item: -item[0])[:SIBLING_KEEP]]
    shown = [_without_docstring(lines, node) for node in reversed(best)]
    return [n.name for n in best], "".join(text + "\n\n" for text in shown)


def _is_overload(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(
        (isinstance(d, ast.Name) and d.id == "overload")
        or (isinstance(d, ast.Attribute) and d.attr == "overload")
        for d in node.decorator_list
    )


def _without_docstring(lines: list[str], node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The function's code, dedented, without its docstring, capped at SIBLING_MAX_LINES."""
    keep = list(range(node.lineno - 1, node.end_lineno or node.lineno))
    doc = node.body[0] if ast.get_docstring(node) else None
    if doc is not None:
        drop = range(doc.lineno - 1, doc.end_lineno or doc.lineno)
        keep = [i for i in keep if i not in drop]
    return textwrap.dedent("".join(lines[i] for i in keep[:SIBLING_MAX_LINES])).rstrip("\n")


def _trim_middle(
    middle: str, suffix: str, max_lines: int, hint: str | None, indent: int
) -> tuple[str | None, bool]:
    """The usable part of a FIM middle, and whether generation could have stopped already.

    Small models run on past the hole: into a copy of the suffix, or out of the enclosing block
    (a line indented less than the hole), or on and on; all of that is cut.
    """
    out: list[str] = []
    anchor = next((ln.strip() for ln in suffix.splitlines() if ln.strip()), None)
    complete = middle.split("\n")
    finished = False
    for i, ln in enumerate(complete):
        is_last = i == len(complete) - 1
        if is_last and ln.strip() and not middle.endswith("\n"):
            out.append(ln)  # a final line without newline (the end token came right after it)
            break
        if ln.strip() and ((anchor is not None and ln.strip() == anchor) or _indent(ln) < indent):
            finished = True  # into the suffix, or out of the block
            break
        if hint and ln.strip() == hint.strip():
            continue  # never keep our own hint
        if is_last:
            break
        out.append(ln)
        if len(out) >= max_lines:
            finished = True
            break
    while out and not out[-1].strip():
        out.pop()
    if not out:
        return None, finished
    return "\n".join(out) + "\n", finished


CHAT_SYSTEM = (
    "You are an expert {language} developer. You fix bugs with the smallest correct change and "
    "answer with code only."
)


def chat_prompt(
    request: FixRequest,
    block_text: str,
    name: str | None,
    context: str,
    failures: str,
    previous: tuple[str, str] | None,
) -> tuple[str, str]:
    """(prompt text, assistant prefill) for a rewrite of the enclosing function."""
    lang = request.language
    fence = lang if lang != "tsx" else "tsx"
    what = f"the function `{name}`" if name else "this code"
    parts = []
    if context:
        parts.append(f"File `{request.path.name}` starts with:\n```{fence}\n{context.rstrip()}\n```")
    parts.append(f"Here is {what}:\n```{fence}\n{block_text.rstrip()}\n```")
    problem = request.problem
    if problem.message:
        parts.append(f"Problem reported at line {problem.start_line + 1}: {problem.message}")
    if failures:
        parts.append(f"Failing tests:\n```\n{failures.strip()}\n```")
    if previous is not None:
        parts.append(
            f"This attempt was wrong:\n```{fence}\n{previous[0].rstrip()}\n```\nbecause: {previous[1]}"
        )
    parts.append(
        f"Rewrite {what} with the problem fixed, changing as little as possible. "
        f"Answer with the complete corrected code in one ```{fence} code block."
    )
    system = CHAT_SYSTEM.format(language=lang.capitalize())
    prompt = render_chat([Message("system", system), Message("user", "\n\n".join(parts))])
    prefill = f"```{fence}\n"
    return prompt + prefill, prefill


def splice_rewrite(
    lines: list[str], block: Block, answer: str, name: str | None, language: str
) -> str | None:
    """Put the rewritten function from a chat answer in place of `block`; new imports go on top."""
    code = extract_code(answer, language)
    new_imports: list[str] = []
    if language == "python":
        try:
            tree = ast.parse(textwrap.dedent(code))
            code = textwrap.dedent(code)
        except SyntaxError:
            tree = None
        if tree is not None:
            code_lines = code.splitlines(keepends=True)
            bound = _imported_names("".join(lines))
            imports = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
            for node in imports:
                if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                    continue  # legal only at the module's top, where the module's own stand
                # Only what the module does not import yet (a model echoes the imports it was
                # shown, often in another layout).
                fresh = [a for a in node.names if (a.asname or a.name).split(".")[0] not in bound]
                if fresh:
                    node.names = fresh
                    new_imports.append(ast.unparse(node) + "\n")
            chosen = next(
                (
                    node
                    for node in tree.body
                    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
                    and (name is None or node.name == name)
                ),
                None,
            )
            if chosen is not None:
                first = min([chosen.lineno, *(d.lineno for d in chosen.decorator_list)]) - 1
                code = "".join(code_lines[first : chosen.end_lineno])
            else:
                # No definition of that name: the answer is the block, its imports go on top
                # (colour's XYZ_to_UCS, bench actions-40: an echoed `from __future__` line
                # spliced in mid-module failed both rewrites).
                inside = {
                    i for node in imports for i in range(node.lineno - 1, node.end_lineno or node.lineno)
                }
                code = "".join(line for i, line in enumerate(code_lines) if i not in inside)
    body = textwrap.indent(textwrap.dedent(code).strip("\n") + "\n", block.indent)
    if not body.strip():
        return None
    head = lines[: block.start]
    if new_imports:
        at = _import_insert_line(lines)
        head = lines[:at] + new_imports + lines[at : block.start]
    return "".join(head) + body + "".join(lines[block.end :])


def _imported_names(text: str) -> set[str]:
    """Names the module's top-level imports bind (empty when it does not parse)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return set()
    return {
        (a.asname or a.name).split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import | ast.ImportFrom)
        for a in node.names
    }


def _import_insert_line(lines: list[str]) -> int:
    """The line after the module's leading imports (a parenthesised import ends at its `)`)."""
    try:
        tree = ast.parse("".join(lines))
    except (SyntaxError, ValueError):
        tree = None
    if tree is not None:
        end = 0
        for node in tree.body:
            if isinstance(node, ast.Import | ast.ImportFrom):
                end = node.end_lineno or node.lineno
            elif end and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
                break
        return end
    last = 0
    for i, ln in enumerate(lines):
        if ln.startswith(("import ", "from ")):
            last = i + 1
        elif ln.strip() and not ln.startswith(("#", '"""', "'''")) and last:
            break
    return last


# ---------------------------------------------------------------------------------------------
# Verification


@dataclass
class TestContext:
    sandbox: Sandbox | None
    rel_path: str
    files: list[str]
    baseline: RunResult | None
    # The tests hang: each stops at an alarm after HANG_TEST_TIMEOUT_S, and a run stops at its
    # first failure (a candidate that still loops costs one alarm, not one per test).
    hang: bool = False

    def run(self, text: str) -> RunResult | None:
        if self.sandbox is None or not self.files:
            return None
        return self.sandbox.run_pytest(
            {self.rel_path: text},
            self.files,
            extra_args=["-x"] if self.hang else [],
            test_timeout_s=HANG_TEST_TIMEOUT_S if self.hang else 0.0,
        )


def _failures_text(run: RunResult | None) -> str:
    if run is None:
        return ""
    if run.collection_error:
        return "\n".join(run.collection_errors)[-MAX_FEEDBACK_CHARS:] or run.output[-MAX_FEEDBACK_CHARS:]
    text = "\n\n".join(f"{o.name}: {o.message}" for o in run.failed())
    return text[-MAX_FEEDBACK_CHARS:]


def verify_candidate(
    request: FixRequest,
    kind: Kind,
    name: str | None,
    text: str,
    tests: TestContext,
) -> Verdict:
    """Decide whether a candidate text is kept, and say what was checked."""
    original = request.text
    if text == original:
        return Verdict(False, "no change")
    lang = request.language
    issues = syntax_issues(lang, text, limit=1)
    if issues:
        issue = issues[0]
        return Verdict(False, f"does not parse: {issue.message} at line {issue.start.line + 1}")
    checks = ["parses"]
    cause = False
    if lang == "python":
        err = python_syntax_error(text)
        if err:
            return Verdict(False, f"does not compile: {err}")
        before = {u.name for u in undefined_names(original)}
        after = {u.name for u in undefined_names(text)}
        introduced = sorted(after - before)
        if introduced:
            return Verdict(False, f"introduces undefined name(s): {', '.join(introduced)}")
        if kind is Kind.UNDEFINED_NAME and name is not None:
            if name in after:
                return Verdict(False, f"'{name}' is still undefined")
            checks.append(f"'{name}' resolved")
            cause = True
    if kind is Kind.SYNTAX:
        checks[0] = "syntax error gone"
        cause = True
    passed = 0
    run = tests.run(text)
    if run is not None:
        base = tests.baseline
        if run.collection_error or run.timed_out:
            return Verdict(False, "tests could not run: " + (_failures_text(run) or "timed out"))
        base_pass = set(base.passed()) if base is not None and not base.collection_error else set()
        now_pass = set(run.passed())
        regressions = sorted(base_pass - now_pass)
        if regressions:
            return Verdict(False, f"breaks {', '.join(regressions)}: {_failures_text(run)}")
        fixed = now_pass - base_pass
        base_failed = base is not None and (bool(base.failed()) or base.collection_error or base.timed_out)
        if kind is Kind.OTHER and base_failed and not fixed:
            return Verdict(False, f"tests still fail: {_failures_text(run)}")
        passed = len(now_pass)
        checks.append(f"{passed}/{len(run.outcomes)} related tests pass")
        if kind is Kind.OTHER and fixed and not run.failed():
            cause = True
    return Verdict(True, "", checks, cause, passed)


# ---------------------------------------------------------------------------------------------
# Strategies (the shared round loop in server/actions/rounds.py runs them)


class FimLines:
    """FIM re-infills of faulty lines: the holes each round names (see `_fim_holes`)."""

    def __init__(
        self,
        holes: Callable[[int], list[tuple[str, tuple[int, int], str | None]]],
        lines: list[str],
        template: FimTemplate,
        generate: Generate,
        comment: str,
        lead: str = "",
        suffix_stop: int | None = None,
        context: str = "",
        window_start: int | None = None,
        first_tokens: FirstTokens | None = None,
        branches: int = 0,
    ) -> None:
        self.holes, self.lines, self.template, self.generate = holes, lines, template, generate
        self.comment, self.lead, self.suffix_stop = comment, lead, suffix_stop
        self.context, self.window_start = context, window_start
        # Each hole's greedy answer, then (with first_tokens) the answers that start otherwise.
        self.branches = branches if first_tokens is not None else 0
        self.first_tokens = _asked_once(first_tokens, branches + 1) if first_tokens and branches else None

    def propose(self, round_no: int) -> list[Proposal]:
        out = []
        for origin, (lo, hi), hint in self.holes(round_no):
            marked = f"{self.comment} {hint}" if hint else None
            make = functools.partial(
                fim_candidate, self.lines, lo, hi, self.template, self.generate,
                hint=marked, lead=self.lead, suffix_stop=self.suffix_stop, context=self.context,
                window_start=self.window_start, first_tokens=self.first_tokens,
            )  # fmt: skip
            out.append(Proposal(origin, make))
            for branch in range(1, self.branches + 1):
                other = f"{origin}, its {_ordinal(branch + 1)} likeliest start"
                out.append(Proposal(other, functools.partial(make, branch=branch), branch=True))
        return out

    def rejected(self, proposal: Proposal, text: str, verdict: Verdict) -> None:
        return None  # the next round re-infills other lines; a re-infill shows no failure


def _asked_once(first_tokens: FirstTokens, most: int) -> FirstTokens:
    """`first_tokens` asked for `most` tokens once per prompt: a hole's branches read one answer."""
    answers: dict[str, list[tuple[str, float]]] = {}

    def ask(prompt: str, k: int) -> list[tuple[str, float]]:
        if prompt not in answers:
            answers[prompt] = first_tokens(prompt, max(most, k))
        return answers[prompt][:k]

    return ask


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


class Rewrite:
    """A chat rewrite of the enclosing function; each round's prompt shows why the last failed."""

    def __init__(
        self,
        request: FixRequest,
        lines: list[str],
        block: Block | None,
        span: tuple[int, int],
        failures: str,
        generate: Generate,
    ) -> None:
        self.request, self.lines, self.block, self.span = request, lines, block, span
        self.failures, self.generate = failures, generate
        self.previous: tuple[str, str] | None = None

    def propose(self, round_no: int) -> list[Proposal]:
        return [Proposal("rewrite", self.make)]

    def rejected(self, proposal: Proposal, text: str, verdict: Verdict) -> None:
        changed = minimal_line_edit(self.request.text, text)
        shown = changed.new_text if changed is not None else "(the code, unchanged)"
        reason = verdict.reason or "no change"
        self.previous = (shown[:MAX_FEEDBACK_CHARS], reason[:MAX_FEEDBACK_CHARS])

    def make(self) -> str | None:
        lines, (first, last) = self.lines, self.span
        if self.block is not None and self.block.end - self.block.start <= MAX_REWRITE_LINES:
            target = self.block
        else:
            start = max(0, first - FALLBACK_CONTEXT_LINES)
            end = min(len(lines), last + 1 + FALLBACK_CONTEXT_LINES)
            indent = lines[first][: _indent(lines[first])] if first < len(lines) else ""
            # Keep a common indentation so the re-indent in splice_rewrite is right.
            while start < first and _indent(lines[start]) < len(indent) and lines[start].strip():
                start += 1
            target = Block(start, end, None, indent)
        block_text = "".join(lines[target.start : target.end])
        context = module_header(lines, target.start)
        prompt, prefill = chat_prompt(
            self.request, block_text, target.name, context, self.failures, self.previous
        )
        answer = prefill + self.generate(prompt, max_tokens=CHAT_MAX_TOKENS, stop_when=closing_fence)
        return splice_rewrite(lines, target, answer, target.name, self.request.language)


# ---------------------------------------------------------------------------------------------
# The pipeline


def fix(
    request: FixRequest,
    generate: Generate,
    *,
    fim_template: FimTemplate | None = None,
    cancel: CancelToken | None = None,
    progress: ProgressFn = no_progress,
    sandbox_factory: Callable[[Path], Sandbox] = Sandbox,
    max_rounds: int = MAX_ROUNDS,
    boundary: bool = True,
    budget: Budget | None = None,
    first_tokens: FirstTokens | None = None,
) -> FixResult:
    """The whole Fix-this action, without LSP. Raises Cancelled when cancelled.

    `boundary`: try one-token changes of the implicated lines (no model) before generating;
    `budget`: the caps on rounds, candidates, generations and time (FIX_BUDGET by default);
    `first_tokens`: the model's likeliest first tokens of an answer, for a lost expression's
    other likely answers (BRANCHES); without it only greedy answers are tried."""
    cancel = cancel or CancelToken()
    budget = budget or replace(FIX_BUDGET, rounds=max_rounds)
    started = time.perf_counter()
    timings = {"model_s": 0.0, "verify_s": 0.0}
    kind, name = classify(request.problem, request.text, request.language)
    lines = split_lines(request.text)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    problem = request.problem
    first = min(problem.start_line, max(0, len(lines) - 1))
    last = min(max(problem.end_line, first), max(0, len(lines) - 1))
    if problem.end_line > problem.start_line and problem.end_column == 0:
        last -= 1  # a selection ending at column 0 does not include that line
    block = enclosing_block(lines, first) if request.language == "python" else None
    comment = "#" if request.language == "python" else "//"

    sandbox: Sandbox | None = None
    test_files: list[str] = []
    if request.root is not None and request.language == "python" and block is not None and block.name:
        test_files = related_test_files(request.root, request.path, {block.name})
    rel_path = ""
    if test_files and request.root is not None:
        progress("running the related tests", 5)
        sandbox = sandbox_factory(request.root)
        rel_path = request.path.resolve().relative_to(request.root.resolve()).as_posix()
    try:
        tests = TestContext(sandbox, rel_path, test_files, None)
        t0 = time.perf_counter()
        tests.baseline = tests.run(request.text)
        timings["verify_s"] += time.perf_counter() - t0
        if sandbox is not None and tests.baseline is not None:
            sandbox.timeout_s = candidate_timeout(tests.baseline.duration_s, sandbox.timeout_s)
        failures = _failures_text(tests.baseline)
        evidence = Evidence()
        if kind is Kind.OTHER and tests.baseline is not None:
            base = tests.baseline
            hang = base.timed_out
            if hang:
                # Killed as a whole, the run says nothing of where: run again to the first test
                # an alarm stops (its traceback shows the line the loop was on), as every
                # candidate's tests will run, so that one that still loops fails in seconds.
                progress("the tests hang: finding where", 8)
                tests.hang = True
                t0 = time.perf_counter()
                base = tests.run(request.text) or base
                timings["verify_s"] += time.perf_counter() - t0
                failures = _failures_text(base) or failures
            # A test module that cannot even be imported says where through its collection error.
            full = failures if base.collection_error else "\n".join(o.message for o in base.failed())
            evidence = read_evidence(full, rel_path, block, lines)
            if hang:
                # The stopped test's assert line is in its traceback; no value was compared.
                stopped = "TestTimedOut" in full
                evidence = replace(evidence, hang=True, wrong_value=evidence.wrong_value and not stopped)
        notes = list(sandbox.notes) if sandbox is not None else []
        plan = _plan(
            request, kind, name, lines, block, (first, last), evidence, tests, failures,
            generate, fim_template, comment, boundary, first_tokens,
        )  # fmt: skip
        verified: dict[str, Candidate] = {}
        # Without tests that fail now, nothing can prove a logic fix: the first candidate that
        # passes the other checks is as good as the search gets.
        provable = kind is not Kind.OTHER or _tests_fail(tests, evidence)
        found = run_rounds(
            plan,
            lambda text: verify_candidate(request, kind, name, text, tests),
            budget=budget,
            final=lambda verdict: verdict.cause_verified or not provable,
            cancel=cancel,
            progress=progress,
            skip=lambda text: text in verified,
        )
        for accepted in found.accepted:
            edit = minimal_line_edit(request.text, accepted.text)
            if edit is None:
                continue
            v = accepted.verdict
            verified[accepted.text] = Candidate(
                accepted.origin, accepted.text, edit, v.checks, v.cause_verified, v.tests_passed, request.text
            )
        ranked = sorted(verified.values(), key=Candidate.sort_key)
    finally:
        if sandbox is not None:
            sandbox.close()
    timings["model_s"] += found.model_s
    timings["verify_s"] += found.verify_s
    timings["total_s"] = time.perf_counter() - started
    if found.stopped and not any(c.cause_verified for c in ranked):
        notes.append(f"stopped: {found.stopped}")
    progress("done", 100)
    return FixResult(
        kind,
        ranked,
        found.rejected,
        found.rounds,
        test_files,
        timings,
        found.tried,
        evidence.describe(),
        notes,
        found.generations,
        found.candidates,
    )


def _plan(
    request: FixRequest,
    kind: Kind,
    name: str | None,
    lines: list[str],
    block: Block | None,
    span: tuple[int, int],
    evidence: Evidence,
    tests: TestContext,
    failures: str,
    generate: Generate,
    fim_template: FimTemplate | None,
    comment: str,
    boundary: bool,
    first_tokens: FirstTokens | None,
) -> Callable[[int], list[Strategy]]:
    """The strategies in the order the evidence chooses, per round.

    Exact and cheap first (no model: a typo, a missing import, one operator or constant of an
    implicated line, the tests decide); then the model: re-infills of the implicated lines, and
    a rewrite of the function, first when an exception says the bug is not one token. In round
    2 the rewrite, which sees why round 1 failed, goes before further re-infills."""
    first, last = span
    cheap: list[Strategy] = []
    if kind is Kind.UNDEFINED_NAME and name and request.language == "python":
        cheap.append(Constant(name_candidates(request.text, name, first, last)))
    order = suspects(lines, block, evidence) if block is not None else []
    fim_order = value_suspects(lines, block, evidence) if block is not None else []
    none_first: list[Strategy] = []
    deeper: list[tuple[str, str]] = []
    if boundary and block is not None and kind is Kind.OTHER and _tests_fail(tests, evidence):
        cands = boundary_candidates(request.text, order)
        lost: list[tuple[str, str]] = []
        if evidence.none_returned:
            # None came back: the names a bare return may have lost first (no model), then
            # the return line re-infilled (a lost expression), then the other lines.
            lost = boundary_candidates(request.text, list(evidence.none_returned))
            lost += lost_call_candidates(request, lines, evidence.none_returned)
            none_first.append(Constant(lost))
            cands = [c for c in cands if c not in lost]
        cheap.append(Constant(cands))
        tried = {text for _, text in [*cands, *lost]}
        flow = list(dict.fromkeys([*value_flow(lines, block), *order]))
        # A line's candidates past the first pass's cap come too (mercantile's `ul`, actions-35:
        # the repair was the 9th change of a line with three `*`; geometer's `posify_index`,
        # actions-36: `or` -> `and` the 7th of its line).
        deeper = boundary_candidates(request.text, flow, limit=MAX_DEEPER_CANDIDATES, skip=tried)
    fims: list[Strategy] = []
    if fim_template is not None:
        if none_first and block is not None:
            line = evidence.none_returned[0]
            hint = _assertion_hint(failures)
            # With the code below the function as the suffix, then with none, then right after
            # the function's twins in the module. The model reads the next function as what
            # follows and often calls it, or the function itself (pydash's min_by: `return
            # pyd.min_by(...)`); seen to the function's end only, it restored 3 of the 10 lost
            # expressions the first way missed (bench actions-1..13). A twin (min_by for
            # max_by) often holds the very expression, in a shape the model copies when it
            # reads the twin just above the function, not 80 lines of overloads away.
            twins, shown = sibling_functions(lines, block, line)
            variants: list[tuple[str, int | None, str, int | None]] = [
                ("", None, "", None),
                (", the function alone", block.end, "", None),
            ]
            if twins:
                beside = f", beside {', '.join(f'`{t}`' for t in twins)}"
                variants.append((beside, block.end, shown, block.start))
            for n, (origin, stop, context, window_start) in enumerate(variants):
                holes = _first_round(
                    [(f"re-infill line {line + 1} after `return`{origin}", (line, line + 1), hint)]
                )
                # The first prompt's other likely answers come next, while it is in the KV cache.
                none_first.append(
                    FimLines(
                        holes, lines, fim_template, generate, comment,
                        lead="return ", suffix_stop=stop, context=context, window_start=window_start,
                        first_tokens=first_tokens, branches=BRANCHES if n == 0 else 0,
                    )
                )  # fmt: skip
            fim_order = [i for i in fim_order if i != line]
        fims.append(
            FimLines(
                lambda round_no: _fim_holes(
                    round_no, kind, lines, block, first, last, request.problem, failures, fim_order
                ),
                lines, fim_template, generate, comment,
            )
        )  # fmt: skip
    rewrite = Rewrite(request, lines, block, span, failures, generate)
    rewrite_first = bool(evidence.exception) and evidence.exception not in BOUNDARY_EXCEPTIONS

    # The deeper one-token candidates follow the first re-infills (a wrong value: round 1's
    # time budget is often spent by the rewrite of a long function), or open round 2 where the
    # rewrite comes first (a lost expression, an exception no one token explains).
    model_first = rewrite_first or bool(none_first)
    further = Constant(deeper, in_round=1 if not model_first else 2)

    def plan(round_no: int) -> list[Strategy]:
        if round_no > 1:
            return [further, rewrite, *fims]
        # A lost expression is rarely restored by re-infilling other lines; the rewrite, which
        # sees the whole function, goes first after the return's own re-infills.
        model: list[Strategy] = [rewrite, *fims] if model_first else [*fims, further, rewrite]
        return [*none_first, *cheap, *model]

    return plan


def lost_call_candidates(
    request: FixRequest, lines: list[str], returns: Sequence[int]
) -> list[tuple[str, str]]:
    """(origin, text) of each bare return given the calls of helpers its names would fill."""
    out: list[tuple[str, str]] = []
    for line in returns:
        indent = lines[line][: _indent(lines[line])]
        for call in lost_calls(request.text, line, request.root, request.path):
            text = "".join([*lines[:line], f"{indent}return {call}\n", *lines[line + 1 :]])
            out.append((f"line {line + 1} returns `{call}`", text))
    return out


def _first_round(
    holes: list[tuple[str, tuple[int, int], str | None]],
) -> Callable[[int], list[tuple[str, tuple[int, int], str | None]]]:
    return lambda round_no: holes if round_no == 1 else []


# A candidate's test run may take this many times the baseline's (at least the minimum) before
# it counts as hanging: a changed loop bound often loops forever, and 30 s per such candidate
# would cost more than the whole search.
CANDIDATE_TIMEOUT_FACTOR = 4
MIN_CANDIDATE_TIMEOUT_S = 15.0


# One test's limit where the tests hang: the alarm stops a test that loops and its traceback says
# where; unit tests of a small function take milliseconds, so a repaired one passes well within.
HANG_TEST_TIMEOUT_S = 2.0


def candidate_timeout(baseline_s: float, default_s: float) -> float:
    return min(default_s, max(MIN_CANDIDATE_TIMEOUT_S, CANDIDATE_TIMEOUT_FACTOR * baseline_s))


# Exceptions whose cause is often a boundary (an index, a key, a divisor one off); others (a
# TypeError, an AttributeError) are rarely one token, so the rewrite goes before re-infills.
BOUNDARY_EXCEPTIONS = frozenset(
    {"IndexError", "KeyError", "ZeroDivisionError", "ValueError", "RecursionError", "StopIteration"}
)


def _tests_fail(tests: TestContext, evidence: Evidence) -> bool:
    """Failing related tests: the only judge of a logic fix (and of boundary candidates). Tests
    that cannot be imported count when the import failed inside the function or on a line that
    calls it (a decorator or module-level call of it), not when the test module itself is broken."""
    base = tests.baseline
    if base is None:
        return False
    if base.timed_out:
        return True  # a test that never ends fails
    if base.collection_error:
        return bool(evidence.lines or evidence.callers)
    return bool(base.failed())


__all__ = [
    "Block",
    "Candidate",
    "FixRequest",
    "FixResult",
    "Kind",
    "Problem",
    "classify",
    "enclosing_block",
    "fix",
    "related_test_files",
    "verify_candidate",
]


def apply(text: str, candidate: Candidate) -> str:
    """The document after applying a candidate's minimal edit (equals candidate.text)."""
    return apply_line_edit(text, candidate.edit)
