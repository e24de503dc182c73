"""Edit by instruction: the selection rewritten as the user asked, offered only once verified.

The model rewrites the selected lines following a free-text instruction ("handle None", "add
type hints", "make it iterative"); the result is spliced back at the selection's indentation and
checked as Fix-this checks a candidate (`fix.verify_candidate` with Kind.EDIT): the file parses
and compiles, no new undefined name, and the related tests (test files that mention a function
in or around the selection) pass in the sandbox as they did before (no regression). A rejected
rewrite goes back to the model once with the reason (2 rounds, in the round loop Fix this
uses: server/actions/rounds.py). Nothing is applied here: the caller offers the minimal line
edit as a diff the user accepts.
"""

from __future__ import annotations

import ast
import difflib
import logging
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from server.actions.fix import (
    FixRequest,
    Kind,
    Problem,
    TestContext,
    candidate_timeout,
    enclosing_block,
    related_test_files,
    verify_candidate,
)
from server.actions.rounds import Budget, Proposal, Verdict, run_rounds
from server.actions.sandbox import Sandbox
from server.actions.textedit import LineEdit, minimal_line_edit, split_lines
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

log = logging.getLogger(__name__)

# Rounds of rewrite -> verify; the second sees why the first was rejected (later rounds decay).
MAX_ROUNDS = 2
# Tokens of a rewrite: room for twice the selection (a token is at least one character, so its
# length in characters bounds that), for type hints or a guard; generation stops at the fence.
TOKENS_PER_SELECTED_CHAR = 2
MIN_TOKENS = 160
MAX_TOKENS = 1_200
# A selection longer than this is not rewritten (the model cannot echo it intact).
MAX_SELECTION_LINES = 150
# Lines of the file above the selection shown for context (imports, the enclosing def).
CONTEXT_LINES = 30
MAX_INSTRUCTION_CHARS = 500

SYSTEM = (
    "You are an expert {language} developer. You rewrite the given code exactly as instructed, "
    "keep its behaviour otherwise unchanged, and answer with code only."
)


@dataclass
class EditRequest:
    path: Path
    text: str
    language: str
    start_line: int  # 0-based, first selected line
    end_line: int  # 0-based, exclusive
    instruction: str
    root: Path | None = None


@dataclass
class EditResult:
    text: str | None  # the whole new document, None when nothing verified
    edit: LineEdit | None
    checks: list[str]
    tried: list[str]  # one readable line per rewrite tried
    related_tests: list[str]
    rounds: int
    timings: dict[str, float]
    notes: list[str] = field(default_factory=list)
    diff: str = ""

    @property
    def summary(self) -> str:
        if self.edit is None:
            return f"no rewrite passed verification ({len(self.tried)} tried)"
        return f"rewrite verified: {', '.join(self.checks)}"


def _base_indent(lines: list[str]) -> str:
    for line in lines:
        if line.strip():
            return line[: len(line) - len(line.lstrip())]
    return ""


def edit_prompt(request: EditRequest, lines: list[str], previous: tuple[str, str] | None) -> tuple[str, str]:
    """(prompt, prefill) asking for the selection rewritten per the instruction."""
    lang = request.language
    selection = textwrap.dedent("".join(lines[request.start_line : request.end_line]))
    above = "".join(lines[max(0, request.start_line - CONTEXT_LINES) : request.start_line])
    parts = []
    if above.strip():
        parts.append(f"Code just above, for context (do not repeat it):\n```{lang}\n{above.rstrip()}\n```")
    parts.append(f"Code to rewrite:\n```{lang}\n{selection.rstrip()}\n```")
    parts.append(f"Instruction: {request.instruction.strip()[:MAX_INSTRUCTION_CHARS]}")
    if previous is not None:
        parts.append(
            f"This attempt was rejected:\n```{lang}\n{previous[0].rstrip()}\n```\nbecause: {previous[1]}"
        )
    parts.append(
        f"Answer with the complete rewritten code (only the code to rewrite) in one ```{lang} block."
    )
    system = SYSTEM.format(language=lang.capitalize())
    prefill = f"```{lang}\n"
    prompt = render_chat([Message("system", system), Message("user", "\n\n".join(parts))])
    return prompt + prefill, prefill


def splice(lines: list[str], start: int, end: int, answer: str, language: str) -> str:
    """The document with lines start..end replaced by the answer's code at their indentation."""
    code = textwrap.dedent(extract_code(answer, language)).strip("\n")
    indent = _base_indent(lines[start:end])
    body = "".join(f"{indent}{ln}\n" if ln.strip() else "\n" for ln in code.split("\n"))
    return "".join([*lines[:start], body, *lines[end:]])


def _names_around(text: str, lines: list[str], start: int, end: int) -> set[str]:
    """Functions and classes defined in the selection or enclosing it: what related tests mention."""
    names: set[str] = set()
    try:
        tree = ast.parse(text)
    except SyntaxError:
        tree = None
    if tree is not None:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                lo, hi = node.lineno - 1, node.end_lineno or node.lineno
                if lo < end and start < hi:
                    names.add(node.name)
    block = enclosing_block(lines, start)
    if block is not None and block.name:
        names.add(block.name)
    return names


def unified_diff(path: Path, old: str, new: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True), new.splitlines(keepends=True), f"a/{path.name}", f"b/{path.name}"
        )
    )


class Instructed:
    """The rewrite strategy: the selection as the instruction asks; each round's prompt shows
    why the previous rewrite was rejected."""

    def __init__(self, request: EditRequest, lines: list[str], max_tokens: int, generate: Generate) -> None:
        self.request, self.lines, self.max_tokens, self.generate = request, lines, max_tokens, generate
        self.previous: tuple[str, str] | None = None

    def propose(self, round_no: int) -> list[Proposal]:
        return [Proposal(f"rewrite {round_no}", self.make)]

    def rejected(self, proposal: Proposal, text: str, verdict: Verdict) -> None:
        changed = minimal_line_edit(self.request.text, text)
        self.previous = (
            changed.new_text if changed is not None else "(the code, unchanged)",
            verdict.reason or "no change",
        )

    def make(self) -> str:
        request = self.request
        prompt, prefill = edit_prompt(request, self.lines, self.previous)
        answer = prefill + self.generate(prompt, max_tokens=self.max_tokens, stop_when=closing_fence)
        if not extract_code(answer, request.language).strip():
            return request.text  # an empty answer is no rewrite, not a deletion
        return splice(self.lines, request.start_line, request.end_line, answer, request.language)


def edit_selection(
    request: EditRequest,
    generate: Generate,
    *,
    cancel: CancelToken | None = None,
    progress: ProgressFn = no_progress,
    sandbox_factory: Callable[[Path], Sandbox] = Sandbox,
    max_rounds: int = MAX_ROUNDS,
) -> EditResult:
    """The whole edit-by-instruction action, without LSP. Raises Cancelled when cancelled."""
    cancel = cancel or CancelToken()
    started = time.perf_counter()
    timings = {"model_s": 0.0, "verify_s": 0.0}
    if not request.instruction.strip():
        raise ValueError("no instruction given")
    lines = split_lines(request.text)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start, end = request.start_line, min(max(request.end_line, request.start_line + 1), len(lines))
    if start >= len(lines) or not "".join(lines[start:end]).strip():
        raise ValueError("the selection is empty")
    if end - start > MAX_SELECTION_LINES:
        raise ValueError(f"the selection is longer than {MAX_SELECTION_LINES} lines")
    request.start_line, request.end_line = start, end
    fix_request = FixRequest(
        request.path, request.text, request.language, Problem(start, 0, end - 1, 0, ""), request.root
    )
    sandbox: Sandbox | None = None
    test_files: list[str] = []
    rel_path = ""
    notes: list[str] = []
    if request.root is not None and request.language == "python":
        test_files = related_test_files(
            request.root, request.path, _names_around(request.text, lines, start, end)
        )
    if test_files and request.root is not None:
        progress("running the related tests", 5)
        sandbox = sandbox_factory(request.root)
        notes = sandbox.notes
        rel_path = request.path.resolve().relative_to(request.root.resolve()).as_posix()
    best: tuple[str, LineEdit, list[str]] | None = None
    try:
        tests = TestContext(sandbox, rel_path, test_files, None)
        t0 = time.perf_counter()
        tests.baseline = tests.run(request.text)
        timings["verify_s"] += time.perf_counter() - t0
        if sandbox is not None and tests.baseline is not None:
            sandbox.timeout_s = candidate_timeout(tests.baseline.duration_s, sandbox.timeout_s)
        selected = len("".join(lines[start:end]))
        budget = min(MAX_TOKENS, max(MIN_TOKENS, TOKENS_PER_SELECTED_CHAR * selected))
        rewrite = Instructed(request, lines, budget, generate)

        def verify(text: str) -> Verdict:
            verdict = verify_candidate(fix_request, Kind.EDIT, None, text, tests)
            if verdict.ok and minimal_line_edit(request.text, text) is None:
                return Verdict(False, "no change")
            if verdict.ok and not test_files:
                verdict.checks.append("no related tests to run")
            return verdict

        found = run_rounds(
            lambda round_no: [rewrite],
            verify,
            budget=Budget(max_rounds, max_rounds, max_rounds),
            final=lambda verdict: verdict.ok,
            cancel=cancel,
            progress=progress,
        )
        if found.accepted:
            accepted = found.accepted[0]
            edit = minimal_line_edit(request.text, accepted.text)
            assert edit is not None  # verify() rejected the unchanged text
            best = (accepted.text, edit, accepted.verdict.checks)
    finally:
        if sandbox is not None:
            sandbox.close()
    timings["model_s"] += found.model_s
    timings["verify_s"] += found.verify_s
    tried, rounds = found.tried, found.rounds
    timings["total_s"] = time.perf_counter() - started
    progress("done", 100)
    if best is None:
        return EditResult(None, None, [], tried, test_files, rounds, timings, notes)
    text, edit, checks = best
    return EditResult(
        text,
        edit,
        checks,
        tried,
        test_files,
        rounds,
        timings,
        notes,
        unified_diff(request.path, request.text, text),
    )


__all__ = ["EditRequest", "EditResult", "edit_prompt", "edit_selection", "splice", "unified_diff"]
