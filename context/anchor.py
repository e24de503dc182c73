"""Where the fill-in-the-middle "middle" starts: the body of the function the cursor is in.

The prompt puts everything from this anchor to the cursor after the FIM middle marker, as if the
model had written it. While the user types in one function body the anchor does not move, so
every token before it (repository context, the lines above the function, the suffix) stays in
the model's KV cache and a keystroke, even a new line, only appends to the prompt. The anchor is
a pure function of the text before the cursor, so an evaluation measures exactly the prompt the
editor gets.

One line is the exception: a class header being typed stays at the end of the prefix, with an
empty middle (the layout FIM models are trained on). There the middle layout guessed bases
badly (the class itself, a name one step off: `Trino.Generator` for `Presto.Generator`), and a
header is one line typed once, so the suffix it re-reads per keystroke costs little.
"""

from __future__ import annotations

import re

# A line that opens a function or method (Python, JS/TS, Go, Rust, Kotlin, Ruby, Lua, shell-ish).
DEF_LINE = re.compile(
    r"^[ \t]*(?:(?:export|default|public|private|protected|static|pub(?:\([^)]*\))?|async|override|"
    r"local|suspend|inline)[ \t]+)*(?:def|function|func|fn|fun|sub)\b"
)
# A function header is at most this many lines long (arguments wrapped one per line): httpx's
# request functions take 20 parameters; with 12, 8% of the body lines of httpx, werkzeug and jinja2
# had no anchor.
MAX_HEADER_LINES = 40
# Lines searched upwards for the enclosing function: beyond this, a body is too long to be one
# middle anyway.
MAX_SCAN_LINES = 400
# Deeper than that in an indented block (a 600-line function, a long literal), the middle starts
# on a grid of absolute line numbers inside the scanned lines, so that it stays put while the user
# types instead of starting at each new line (a new place, its prompt cold, every line); the
# completer then moves it down in steps of its own while it is over its token budget.
LONG_BODY_SNAP_LINES = 24
# A class header typed up to the cursor (no ':' yet ends it): its bases come next.
CLASS_HEADER = re.compile(
    r"[ \t]*(?:(?:export|default|public|private|abstract|data|sealed)[ \t]+)*class\b[^:{]*$"
)
# Python's header ends with ':' (after an optional return annotation); brace languages with '{'.
HEADER_END = re.compile(r"(?::|\{|=>|\bdo)[ \t]*(?:#.*|//.*)?$")
# The last line of a header wrapped black's (or prettier's, gofmt's) way: the parameters one per
# line, deeper, then the closing bracket back at the def's indentation (`    ) -> Auth:`).
WRAPPED_HEADER_END = re.compile(r"^[ \t]*[)\]]")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def function_body_start(lines: list[str]) -> int | None:
    """Index of the first body line of the outermost function enclosing the last line, or None.

    `lines` is the text before the cursor split on new lines; the last one is the cursor line.
    An enclosing function is a line above that opens one with less indentation than every
    non-blank line between it and the cursor; its body starts after its header. The outermost
    one counts (a method's, not a nested helper's): typing a nested function then keeps the
    anchor, the prompt's place and its grown KV cache, where the nested body's own anchor made
    a new place with a cold prompt (re-read from the context on, 3 s for the 1.5B on 2 cores).
    """
    return _scan(lines)[0]


def _scan(lines: list[str]) -> tuple[int | None, bool]:
    """function_body_start's answer, and whether the scan ran out of lines inside an indented
    block (no function found, none ruled out)."""
    cursor = len(lines) - 1
    # The indentation the body has reached: the least among the non-blank lines seen so far.
    # The cursor line's indentation counts even before anything is typed on it (the editor's).
    floor: int | None = _indent(lines[cursor]) if lines[cursor] else None
    found: int | None = None
    for i in range(cursor - 1, max(-1, cursor - 1 - MAX_SCAN_LINES), -1):
        line = lines[i]
        if not line.strip():
            continue
        indent = _indent(line)
        if floor is not None and indent >= floor:
            continue
        header = i if DEF_LINE.match(line) else _wrapped_header_start(lines, i)
        if header is not None:
            body = _body_after_header(lines, header, cursor)
            if body is None:
                # Its header is still being typed (the cursor is in its parameters): the anchor
                # is the enclosing function's, if there is one, as for a finished nested one.
                if indent == 0:
                    return found, False
                floor = indent
                continue
            found, floor = body, indent
            if indent == 0:
                return found, False
            continue
        if floor is not None and indent < floor:
            if indent == 0:
                return found, False  # reached top-level code that is not a function
            floor = indent
        elif floor is None:
            floor = indent + 1  # the first non-blank line above a blank cursor line
    ran_out = found is None and cursor - 1 - MAX_SCAN_LINES >= 0 and bool(floor)
    return found, ran_out


def _wrapped_header_start(lines: list[str], end: int) -> int | None:
    """The def line of a header whose wrapped closing line is `end` (`    ) -> Auth:`, at the def's
    indentation, every line between them deeper), if there is one. Without it, the scan upwards
    met the closing line first, took it for the body's outer block, and passed over the def line
    at the same indentation: in black-formatted code a method with a wrapped signature had no
    anchor, and every new line of its body was a new place with a cold prompt."""
    line = lines[end]
    if not WRAPPED_HEADER_END.match(line) or not HEADER_END.search(line.rstrip()):
        return None
    indent = _indent(line)
    for j in range(end - 1, max(-1, end - MAX_HEADER_LINES), -1):
        above = lines[j]
        if not above.strip():
            continue
        width = _indent(above)
        if width > indent:
            continue  # a parameter
        if width == indent and DEF_LINE.match(above):
            return j
        if width == indent and WRAPPED_HEADER_END.match(above):
            continue  # a return annotation wrapped in turn (`    ) -> Iterator[` ... `    ]:`)
        return None
    return None


def _body_after_header(lines: list[str], start: int, cursor: int) -> int | None:
    """The first body line of the function whose header starts at `start`, if it ends in time."""
    for j in range(start, min(cursor, start + MAX_HEADER_LINES)):
        if HEADER_END.search(lines[j].rstrip()):
            return j + 1 if j + 1 <= cursor else None
    return None


def middle_start(prefix: str) -> int:
    """Offset in `prefix` where the middle starts: the enclosing function body, else the cursor
    line; the prefix's end (an empty middle) on a class header."""
    cut = prefix.rfind("\n") + 1
    if CLASS_HEADER.match(prefix, cut):
        return len(prefix)
    # Only the last MAX_SCAN_LINES lines can matter (function_body_start looks no further up): a
    # keystroke near the end of a 9,000-line file does not split the whole file.
    lines = prefix.rsplit("\n", MAX_SCAN_LINES + 1)
    body, ran_out = _scan(lines)
    if body is None and ran_out:
        # lines[r] is the file's line (cursor_line - cursor + r); the first grid line at or below
        # the top of the scanned lines.
        cursor = len(lines) - 1
        top = prefix.count("\n", 0, cut) - cursor + 1
        body = 1 + (-top) % LONG_BODY_SNAP_LINES
    if body is None:
        return cut
    return len(prefix) - sum(map(len, lines[body:])) - (len(lines) - 1 - body)
