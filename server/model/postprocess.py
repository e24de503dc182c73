"""Post-processing: decide what of the model's output the user sees.

The instruct models keep writing past the answer (asserts, the repeated suffix, markdown prose),
so the shape of a completion is decided here, from the cursor position and the tree-sitter node:
mid-line -> one line; an empty line in a block or after a block opener -> a block that ends
where the block ends. `StreamFilter.feed` is called with each generated piece and says when to
stop generating, so the model never spends time on text nobody will see. Every suppressed
completion carries a reason.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import partial
from itertools import islice

from context.incremental import IncrementalTree
from context.syntax import LANGUAGES, code, code_before_comment

log = logging.getLogger(__name__)

# A block completion longer than this is cut: beyond it, review cost outweighs typing saved.
BLOCK_MAX_LINES = 24
FENCE = "```"
# A short pattern with a letter (rulers like "# =====" and zero lists are fine) looping five
# times or more, over 30+ characters of one line, means the model is stuck, not writing code.
REPEAT_PATTERN = re.compile(r"([^\n]{2,24}?)\1{4,}")
REPEAT_MIN_CHARS = 30
# The same non-blank line this many times in a row is a loop.
REPEAT_LINES = 3
# A completion that starts by re-typing this much of what the cursor line already holds
# (`head = ` -> `head = []`) would show it twice.
REPEAT_TYPED_MIN_CHARS = 3
# Line endings after which a statement is not finished: a block cut off by the token limit is
# trimmed back past them (brackets left open are checked separately).
UNFINISHED_ENDINGS = (
    ":",
    ",",
    "\\",
    "=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "|",
    "&",
    "^",
    "<",
    ">",
    ".",
    " and",
    " or",
    " not",
)
# Non-blank lines after the cursor line that a plan remembers (the next line decides block ends).
FOLLOWING_LINES = 3
# Lines after the cursor looked at for the closer of a call continued on the next lines (black's
# `raise Error(` / arguments indented / `)` back at the statement's indent). A callback's body runs
# on inside the call it is passed to (`operate((source, subscriber) => {` ... `});`, rxjs) for
# hundreds of lines: with 40, two of rxjs's five cross-file cases had their call closed empty.
CONTINUATION_LINES = 400
# A line made of these only (`}`, `});`, `]`) closes brackets: where the file's next line is the
# same text, it repeats that line only at its indentation (else it closes a block the answer opened).
CLOSER_LINE_CHARS = frozenset(")]};,")
# A line completion whose own line leaves a bracket open (`frame = pd.concat(`, a long call in
# black's layout, or `f(a,` with a hanging indent) goes on to the line that closes it, within this
# many lines; closing it at once offered `concat()`, a call without its arguments. Longer, it is cut
# to its first line.
OPEN_CALL_LINES = 12
OPENERS = {"(": ")", "[": "]", "{": "}"}
CLOSERS = {v: k for k, v in OPENERS.items()}
# Just inside these the code has no space (PEP 8, black, prettier); a model's ` rect` after `sum(` is
# its tokenizer's habit (a word with its leading space is one token), not the code's style. Braces
# are left alone: `{ a: 1 }` is common style in JavaScript.
NO_SPACE_AFTER = ("(", "[")
# The last text planned per language, parsed again only where it changed: a keystroke in a
# 9,000-line file then costs a re-parse of the statement around it, not of the whole file.
_TREES: dict[str, IncrementalTree] = {}
_TREES_LOCK = threading.Lock()
# Node types inside which a completion must stay on its line (strings, comments).
LINE_ONLY_NODES = frozenset({"comment", "string_content", "string_fragment", "line_comment", "block_comment"})
# Python node types of bracketed expressions: a colon at a line end inside one opens no block.
PYTHON_BRACKET_NODES = frozenset(
    {
        "dictionary",
        "list",
        "set",
        "tuple",
        "argument_list",
        "parameters",
        "subscript",
        "parenthesized_expression",
        "dictionary_comprehension",
        "list_comprehension",
        "set_comprehension",
        "generator_expression",
    }
)
# A lambda's parameters and colon at the end of a line: its body is one expression.
LAMBDA_COLON = re.compile(r"\blambda\b[^:]*:$")
# A line that is one (dotted) name and a colon: a variable's annotation (`    cookies:` in a class
# body, `self.size:`), whose type comes on the same line, unless the name is a keyword that opens
# a block on its own.
ANNOTATION_COLON = re.compile(r"^\s*([^\W\d][\w.]*)\s*:$")
BARE_BLOCK_KEYWORDS = frozenset({"else", "try", "finally", "except"})
# Python node types whose children form an indented block.
BLOCK_NODES = frozenset({"block", "statement_block", "compound_statement", "declaration_list", "class_body"})


class Mode(StrEnum):
    LINE = "line"
    BLOCK = "block"


class Reason(StrEnum):
    """Why a completion ended (stop) or was not shown (suppress)."""

    LINE_END = "line-end"
    DEDENT = "dedent"
    REPEATS_NEXT_LINE = "repeats-next-line"
    CODE_FENCE = "code-fence"
    BLANK_LINE = "blank-line"
    MAX_LINES = "max-lines"
    REPETITION = "repetition"
    # Suppressions: nothing is shown.
    EMPTY = "empty"
    REPEATS_SUFFIX = "repeats-suffix"
    REPEATS_LINE_SUFFIX = "repeats-line-suffix"
    REPEATS_TYPED = "repeats-typed"
    CUT_OFF = "cut-off"


SUPPRESSIONS = frozenset({Reason.EMPTY, Reason.REPEATS_SUFFIX, Reason.REPEATS_LINE_SUFFIX})


@dataclass(frozen=True)
class Plan:
    """The expected shape of the completion at a cursor."""

    mode: Mode
    # Block mode: a non-blank line indented less than this (in columns) ends the completion.
    min_indent: int
    line_prefix: str
    line_suffix: str
    # The next non-blank line of the file after the cursor's line, stripped ("" when none).
    next_line: str
    # The first lines of the suffix after the cursor's line, stripped, for repeat detection.
    following: tuple[str, ...]
    # Module level: a blank line ends the completion (the model would go on with new definitions).
    top_level: bool = False
    # The lines after the cursor are the indented inside of a bracket that a line back at the
    # cursor line's indent closes (`)`): what the completion leaves open there is closed by them.
    closed_below: bool = False
    # The bracket the cursor line ends with ("" when none), when the lines below hold no arguments
    # for it (nothing deeper, no closer next): the answer may put them on the next lines.
    open_at_end: str = ""
    # The language's line-comment marker ("" when unknown): brackets after it are not code.
    comment: str = ""
    # The cursor ends a block's header (`if x:|`, `{|`): the answer starts on the next line.
    opens_block: bool = False
    # The indentation (columns) of `next_line` in the file; -1 when there is none.
    next_indent: int = -1


@dataclass(frozen=True)
class Outcome:
    text: str | None
    reason: str

    @property
    def suppressed(self) -> bool:
        return self.text is None


def indent_width(line: str) -> int:
    """Columns of leading whitespace (tabs count as 4: only comparisons matter)."""
    width = 0
    for ch in line:
        if ch == " ":
            width += 1
        elif ch == "\t":
            width += 4
        else:
            break
    return width


def plan_completion(prefix: str, suffix: str, language: str | None = None) -> Plan:
    """Decide single-line vs block from the text around the cursor (and the syntax tree when known)."""
    line_prefix = prefix.rsplit("\n", 1)[-1]
    line_suffix = suffix.split("\n", 1)[0]
    nonblank = list(islice((ln for ln in _lines_below(suffix, None) if ln.strip()), FOLLOWING_LINES))
    following = tuple(ln.strip() for ln in nonblank)
    next_line = following[0] if following else ""
    next_indent = indent_width(nonblank[0]) if nonblank else -1
    info = LANGUAGES.get(language or "")
    openers = info.block_openers if info else (":", "{")
    comment = info.comment if info else ""
    # Every plan shares the cursor's surroundings; they differ in mode, indent and flags.
    plan = partial(
        Plan,
        line_prefix=line_prefix,
        line_suffix=line_suffix,
        next_line=next_line,
        following=following,
        comment=comment,
        next_indent=next_indent,
    )

    if line_prefix.strip() or line_suffix.strip():
        stripped = line_prefix.rstrip()
        if not line_suffix.strip() and stripped.endswith(openers):
            node = _tree_node_at(prefix, suffix, language)
            if not _line_only(node) and not _colon_of_an_expression(stripped, node, language, comment):
                # `def f(x):|` -> the body comes on the next lines.
                return plan(Mode.BLOCK, indent_width(line_prefix) + 1, opens_block=True)
        closed = not line_suffix.strip() and _closed_below(line_prefix, suffix, comment)
        at_end = ""
        if (
            not line_suffix.strip()
            and stripped.endswith(tuple(OPENERS))
            and not _arguments_below(line_prefix, suffix)
        ):
            at_end = stripped[-1]
        return plan(Mode.LINE, 0, closed_below=closed, open_at_end=at_end)

    if _in_line_only_node(prefix, suffix, language):
        return plan(Mode.LINE, 0)
    previous = next((ln for ln in reversed(prefix.split("\n")[:-1]) if ln.strip()), "")
    if previous.rstrip().endswith(openers):
        min_indent = indent_width(previous) + 1
    else:
        min_indent = max(indent_width(line_prefix), _block_indent(prefix, suffix, language))
    return plan(Mode.BLOCK, min_indent, top_level=min_indent == 0)


def _lines_below(suffix: str, limit: int | None = CONTINUATION_LINES) -> Iterator[str]:
    """The lines after the cursor line, one at a time, at most `limit` (None: all), without
    splitting the rest of the file: the suffix of a cursor early in a big file is most of it, and
    most callers stop at the first non-blank line."""
    start = suffix.find("\n") + 1
    count = 0
    while start and (limit is None or count < limit):
        end = suffix.find("\n", start)
        yield suffix[start:] if end < 0 else suffix[start:end]
        count += 1
        start = end + 1


def _arguments_below(line_prefix: str, suffix: str) -> bool:
    """The first non-blank line after the cursor line is indented deeper than it or starts with a
    closer: a call being edited, whose arguments (or closing bracket) are already there."""
    for line in _lines_below(suffix):
        if line.strip():
            return indent_width(line) > indent_width(line_prefix) or line.lstrip()[:1] in CLOSERS
    return False


def _closed_below(line_prefix: str, suffix: str, comment: str) -> bool:
    """The cursor line's brackets balance, the next lines are indented deeper, and the first line
    back at its indent starts with a closer: the bracket that line closes is one the rest of the
    cursor line opens (a call whose arguments already follow)."""
    if _bracket_excess(line_prefix, comment)[0]:
        return False  # the closer below may close the cursor line's own bracket
    indent = indent_width(line_prefix)
    deeper = False
    for line in _lines_below(suffix):
        if not line.strip():
            continue
        if indent_width(line) > indent:
            deeper = True
            continue
        return deeper and line.lstrip()[:1] in CLOSERS
    return False


def _tree_node_at(prefix: str, suffix: str, language: str | None):  # type: ignore[no-untyped-def]
    if not language or language not in LANGUAGES:
        return None
    source = (prefix + suffix).encode("utf-8")
    point = (prefix.count("\n"), len(prefix.rsplit("\n", 1)[-1].encode("utf-8")))
    with _TREES_LOCK:
        trees = _TREES.get(language)
        if trees is None:
            trees = _TREES[language] = IncrementalTree(language)
    return trees.parse(source).root_node.descendant_for_point_range(point, point)


def _colon_of_an_expression(  # type: ignore[no-untyped-def]
    stripped: str, node, language: str | None, comment: str
) -> bool:
    """A Python line ending with a colon that opens no block: a dict value (`exp.Day: `, its
    `{` lines above), a slice, an annotation or a lambda inside brackets, or a lambda's body. Its
    completion is the rest of the line, as mid-line, not an indented body."""
    if language != "python":
        return False
    if _bracket_excess(stripped, comment)[0] or LAMBDA_COLON.search(stripped):
        return True
    annotated = ANNOTATION_COLON.match(stripped)
    if annotated and annotated.group(1) not in BARE_BLOCK_KEYWORDS:
        return True
    while node is not None and node.type not in BLOCK_NODES:
        if node.type in PYTHON_BRACKET_NODES:
            return True
        node = node.parent
    return False


def _in_line_only_node(prefix: str, suffix: str, language: str | None) -> bool:
    return _line_only(_tree_node_at(prefix, suffix, language))


def _line_only(node) -> bool:  # type: ignore[no-untyped-def]
    """`node` (the cursor's) is in a comment or a one-line string: the completion stays on its line."""
    while node is not None:
        if node.type in LINE_ONLY_NODES:
            return True
        if node.type == "string" and node.start_point[0] == node.end_point[0]:
            return True
        node = node.parent
    return False


def _block_indent(prefix: str, suffix: str, language: str | None) -> int:
    """Indentation of the innermost enclosing block's statements (0 at module level)."""
    node = _tree_node_at(prefix, suffix, language)
    row = prefix.count("\n")
    while node is not None:
        if node.type in BLOCK_NODES and node.start_point[0] < row:
            lines = (prefix + suffix).split("\n")
            first = lines[node.start_point[0]]
            return indent_width(first) if first.strip() else node.start_point[1]
        node = node.parent
    return 0


def _loops(line: str) -> bool:
    """The line repeats a short pattern over and over (degenerate generation)."""
    match = REPEAT_PATTERN.search(line)
    return (
        match is not None
        and len(match.group(0)) >= REPEAT_MIN_CHARS
        and any(ch.isalpha() for ch in match.group(1))
    )


def closers_only(line: str) -> bool:
    """The line only closes brackets (`}`, `});`, `)`): no code a reader would wait for."""
    stripped = line.strip()
    return bool(stripped) and set(stripped) <= CLOSER_LINE_CHARS


def _closes_another(line: str, plan: Plan) -> bool:
    """A line of closers only at another indentation than the file's next line, the same text:
    the `}` of an `if` the answer opened, not the file's next `}`."""
    return closers_only(line) and indent_width(line) != plan.next_indent


def _cut_block(raw: str, plan: Plan, *, final: bool) -> tuple[str, Reason | None]:
    """The block part of raw output and, when found, the reason it ends there."""
    lines = raw.split("\n")
    complete = len(lines) - 1  # the last element is a partial line unless final
    kept: list[str] = []
    blank_seen = False
    for i, line in enumerate(lines):
        is_complete = i < complete or final
        stripped = line.strip()
        if stripped.startswith(FENCE) or (is_complete and FENCE in stripped):
            return "\n".join(kept), Reason.CODE_FENCE
        if stripped and i > 0:
            if indent_width(line) < plan.min_indent:
                return "\n".join(kept), Reason.DEDENT
            if plan.top_level and blank_seen and not line[:1].isspace():
                return "\n".join(kept), Reason.BLANK_LINE
        if (
            is_complete
            and i > 0
            and plan.next_line
            and stripped == plan.next_line
            and not _closes_another(line, plan)
        ):
            return "\n".join(kept), Reason.REPEATS_NEXT_LINE
        if i > 0 and not stripped and kept and kept[-1].strip() == "" and is_complete:
            # Two blank lines in a row: the block is over.
            return "\n".join(kept), Reason.BLANK_LINE
        blank_seen = blank_seen or (i > 0 and not stripped and is_complete)
        if len(kept) >= BLOCK_MAX_LINES:
            return "\n".join(kept), Reason.MAX_LINES
        repeated = (
            stripped
            and len(kept) >= REPEAT_LINES - 1
            and all(k.strip() == stripped for k in kept[-(REPEAT_LINES - 1) :])
        )
        if _loops(line) or (is_complete and repeated):
            # Keep only what came before the loop began.
            while repeated and kept and kept[-1].strip() == stripped:
                kept.pop()
            return "\n".join(kept), Reason.REPETITION
        kept.append(line)
    return "\n".join(kept), None


def _cut_line(
    raw: str, plan: Plan, *, ended: bool = False, cut_off: bool = False
) -> tuple[str, Reason | None]:
    """The line completion in `raw` and why it ends there (None: more output is needed).
    `ended`: no more output comes; `cut_off`: it ended at the token limit, mid-line."""
    first = raw.split("\n", 1)[0]
    if _loops(first):
        return "", Reason.REPETITION
    seed = _open_call_seed(first, plan) if "\n" in raw else None
    if seed is not None:
        return _cut_open_call(raw, seed, plan.comment, ended=ended, cut_off=cut_off)
    if "\n" in raw:
        return first, Reason.LINE_END
    if FENCE in raw:
        return raw.split(FENCE, 1)[0], Reason.CODE_FENCE
    return raw, None


def _open_call_seed(first: str, plan: Plan) -> str | None:
    """The brackets a line completion must close before it ends, when its first line leaves one
    open that nothing after the cursor closes: "" for a bracket the completion opened itself, the
    user's bracket at the end of the cursor line (`foo(` typed, the arguments on the next lines or
    after a hanging indent). None: the completion ends at its first newline."""
    if plan.line_suffix.strip() or plan.closed_below:
        return None
    if _bracket_excess(first, plan.comment)[0]:
        return ""
    if plan.open_at_end and _bracket_excess(plan.open_at_end + first, plan.comment)[0]:
        return plan.open_at_end
    return None


def _cut_open_call(
    raw: str, seed: str, comment: str, *, ended: bool, cut_off: bool
) -> tuple[str, Reason | None]:
    """`raw` through the first whole line that closes `seed` and the brackets it opened; its first
    line when none does within OPEN_CALL_LINES or before the output ended (as a line completion
    always was)."""
    lines = raw.split("\n")
    # The last line is whole only once the output has ended, and not at the token limit.
    whole = lines if ended and not cut_off else lines[:-1]
    for end in range(1, min(len(whole), OPEN_CALL_LINES + 1)):
        if not _bracket_excess(seed + "\n".join(whole[: end + 1]), comment)[0]:
            return "\n".join(whole[: end + 1]), Reason.LINE_END
    if ended or len(whole) > OPEN_CALL_LINES:
        return lines[0], Reason.LINE_END
    return raw, None


def _bracket_excess(text: str, comment: str = "") -> tuple[list[str], int]:
    """Openers the text leaves open (in order) and the index where unmatched closers begin (len if
    none). Brackets in strings and, when the language's line-comment marker is given, in comments
    do not count (context.syntax.code)."""
    stack: list[str] = []
    tail_start = len(text)
    for i, ch in code(text, comment):
        if ch in OPENERS:
            stack.append(ch)
            tail_start = len(text)
        elif ch in CLOSERS:
            if stack and stack[-1] == CLOSERS[ch]:
                stack.pop()
            elif tail_start == len(text):
                tail_start = i
    return stack, tail_start


def _fix_line_end(text: str, plan: Plan) -> tuple[str | None, Reason | None]:
    """Drop what duplicates the rest of the line; close brackets the completion itself opened,
    unless the lines below close them."""
    rest = plan.line_suffix.strip()
    if rest:
        if text.strip() == rest or rest.startswith(text.strip()):
            return None, Reason.REPEATS_LINE_SUFFIX
        body = text.rstrip()
        if body.endswith(rest):
            text = body[: -len(rest)]
        else:
            # Unmatched closers at the end that the line already has after the cursor.
            _, tail = _bracket_excess(text, plan.comment)
            trailing = text[tail:].rstrip()
            if tail < len(text) and trailing and rest.startswith(trailing.replace(" ", "")):
                text = text[:tail]
    if not rest and plan.mode is Mode.LINE and not plan.closed_below:
        text = close_brackets(text, plan.comment)
    return text, None


def close_brackets(text: str, comment: str = "") -> str:
    """`text` with the brackets it leaves open closed at its end (unchanged when none are);
    `comment`: the language's line-comment marker, after which brackets are not code."""
    opened, _ = _bracket_excess(text, comment)
    return text.rstrip() + "".join(OPENERS[o] for o in reversed(opened)) if opened else text


def _repeats_suffix(text: str, plan: Plan) -> bool:
    """The completion only re-types the lines that already follow the cursor."""
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    if not lines or not plan.following:
        return False
    head = lines[: len(plan.following)]
    return head == list(plan.following[: len(head)]) and len(head) >= min(2, len(plan.following))


class StreamFilter:
    """Consumes generated text piece by piece; decides when to stop and what to show."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.raw = ""
        self.stop_reason: Reason | None = None

    def feed(self, piece: str) -> bool:
        """Add a piece; False means the completion is decided and generation should stop."""
        self.raw += piece
        if self.plan.mode is Mode.LINE:
            _, reason = _cut_line(self.raw, self.plan)
        else:
            _, reason = _cut_block(self.raw, self.plan, final=False)
        if reason is not None:
            self.stop_reason = reason
            return False
        return True

    def finish(self, *, cut_off: bool = False) -> Outcome:
        """The outcome; `cut_off`: generation ended at the token limit, not where the answer did."""
        return finalize(self.raw, self.plan, cut_off=cut_off and self.stop_reason is None)


def no_space_inside_bracket(text: str, line_prefix: str) -> str:
    """`text` without the one space a model put right after an opening bracket the line ends with."""
    if line_prefix.endswith(NO_SPACE_AFTER) and text.startswith(" ") and text[1:2] not in (" ", "\t", ""):
        return text[1:]
    return text


def _repeats_typed(text: str, plan: Plan) -> bool:
    """The completion begins by re-typing the cursor line's own text (`x = ` + `x = 1`)."""
    typed = plan.line_prefix.strip()
    return len(typed) >= REPEAT_TYPED_MIN_CHARS and text.lstrip().startswith(typed)


def _unfinished(line: str, comment: str) -> bool:
    """The line's code (its comment left out) is empty or stops mid-statement."""
    code = code_before_comment(line, comment).rstrip()
    return not code or code.endswith(UNFINISHED_ENDINGS) or code.endswith(tuple(OPENERS))


def _trim_cut_off(text: str, plan: Plan) -> str:
    """What is complete in a completion cut off by the token limit ("" when nothing is).

    A line completion is kept only when its brackets balance and it does not end mid-expression;
    a block loses its partial last line, then trailing lines until it ends on a finished
    statement with every bracket closed.
    """
    if plan.mode is Mode.LINE:
        opened, _ = _bracket_excess(text, plan.comment)
        return "" if opened or _unfinished(plan.line_prefix + text, plan.comment) else text
    lines = text.split("\n")[:-1]  # the last line is the one the limit cut
    while lines and (
        _unfinished(lines[-1], plan.comment) or _bracket_excess("\n".join(lines), plan.comment)[0]
    ):
        lines.pop()
    return "\n".join(lines)


def finalize(raw: str, plan: Plan, *, cut_off: bool = False) -> Outcome:
    """What the user sees for the whole raw output, or why nothing is shown."""
    if plan.mode is Mode.LINE:
        text, reason = _cut_line(raw, plan, ended=True, cut_off=cut_off)
    else:
        text, reason = _cut_block(raw, plan, final=True)
    if cut_off and reason is None:
        text = _trim_cut_off(text, plan)
        if not text.strip():
            return Outcome(None, Reason.CUT_OFF)
    text = "\n".join(line.rstrip() for line in text.split("\n")).rstrip()
    if not text.strip():
        return Outcome(None, Reason.EMPTY)
    if _repeats_typed(text, plan):
        return Outcome(None, Reason.REPEATS_TYPED)
    if plan.mode is Mode.BLOCK and _repeats_suffix(text, plan):
        return Outcome(None, Reason.REPEATS_SUFFIX)
    text = no_space_inside_bracket(text, plan.line_prefix)
    last_start = text.rfind("\n") + 1
    fixed, suppress = (
        _fix_line_end(text[last_start:], plan)
        if plan.mode is Mode.LINE
        else (
            text[last_start:],
            None,
        )
    )
    if suppress is not None or fixed is None:
        return Outcome(None, suppress or Reason.EMPTY)
    text = text[:last_start] + fixed
    if not text.strip():
        return Outcome(None, Reason.EMPTY)
    return Outcome(text, str(reason or "end"))


class SuppressionCounter(Counter[str]):
    """Counts outcomes by reason: every request that showed nothing is accounted for."""

    def record(self, outcome: Outcome) -> None:
        self[outcome.reason if outcome.suppressed else "shown"] += 1
