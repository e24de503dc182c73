"""What the editor does with the keys: VS Code's auto-closing brackets and quotes, or nothing.

With auto-closing on (`--editor vscode`), typing an opener where VS Code would close it (before
whitespace, the line's end or a closer; quotes not after a word) inserts its closer too; typing a
closer the editor put there types over it; Enter between a bracket pair puts the closer on a line
of its own below the cursor; and at the end of a block the user steps over the closer line the
editor wrote (arrow keys) instead of typing it. The server then sees what VS Code's buffer holds:
`foo(|)` mid-line, a `}` on the line below a block's first line. Brackets in strings and comments
are not closed (VS Code's `notIn: string, comment`).

Without it (`--editor plain`, the default and every result before it), each key inserts its
character, as Vim and Neovim do without an auto-pairs plugin.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.replay.keys import auto_indent
from context.syntax import code

OPENERS = {"(": ")", "[": "]", "{": "}"}
QUOTES = frozenset("\"'`")
# VS Code's default `autoCloseBefore`: an opener is closed only when the next character is one of
# these (or the line ends).
AUTO_CLOSE_BEFORE = frozenset(";:.,=}])> \n\t")
# Editors the replay models.
EDITORS = ("plain", "vscode")


@dataclass(frozen=True)
class Key:
    """One key's edit: `insert` at the cursor, then the cursor moves `advance` characters (past
    text already there when `insert` is empty); `consumed` characters of the region are done."""

    insert: str
    advance: int
    consumed: int
    kind: str  # "key", "enter", "overtype", "move"


def closing_positions(text: str, comment: str) -> dict[int, int]:
    """For each bracket or quote of `text` that opens a pair in code, the offset of its closer."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    in_code = set()
    for i, ch in code(text, comment):
        in_code.add(i)
        if ch in OPENERS:
            stack.append(i)
        elif ch in OPENERS.values() and stack and OPENERS[text[stack[-1]]] == ch:
            pairs[stack.pop()] = i
    # A string: a quote in code, up to the first same quote that is not escaped, on its line
    # (a backtick's may be on another).
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in QUOTES and i not in in_code and (i == 0 or i - 1 in in_code or text[i - 1] in "\n"):
            end = i + 1
            while end < len(text) and not (text[end] == ch and text[end - 1] != "\\"):
                if text[end] == "\n" and ch != "`":
                    break
                end += 1
            if end < len(text) and text[end] == ch and not text.startswith(ch * 3, i):
                pairs[i] = end
                i = end + 1
                continue
        i += 1
    return pairs


class Editor:
    """Turns the region's characters into the edits an editor makes of the user's keys."""

    def __init__(self, target: str, comment: str, autoclose: bool) -> None:
        self.target = target
        self.pairs = closing_positions(target, comment) if autoclose else {}
        # What the editor put after the cursor that the region has yet to reach, a character at a
        # time, with the region offset of each closer it put there (None: whitespace it moved).
        self.pending: list[tuple[str, int | None]] = []

    def limit(self, i: int, through: int = 0) -> int:
        """A suggestion taken at offset `i` ends before the next closer the editor has put there
        (taking more would write that closer a second time), past the first `through` characters
        after the cursor when the suggestion replaces them."""
        ends = [at for _, at in self.pending[through:] if at is not None]
        return min(ends) if ends else len(self.target)

    def typed_over(self, n: int) -> None:
        """A taken suggestion replaced the first `n` characters the editor had put after the cursor."""
        del self.pending[:n]

    def key(self, i: int, after: str) -> Key:
        """The edit for the user's next key at region offset `i`; `after`: the document's text after
        the cursor (what the editor put there, then the file's own)."""
        target, ch = self.target, self.target[i]
        step = self._step_over(i)
        if step is not None:
            return step
        if ch == "\n":
            insert = auto_indent(target, i)
            between = self.pending and self.pending[0][1] is not None and i > 0
            closer_at = self.pending[0][1] if between else None
            if (
                closer_at is not None
                and target[i - 1] in OPENERS
                and self.pairs.get(i - 1) == closer_at
                and target.rfind("\n", 0, closer_at) > i
            ):
                # Enter between a bracket pair: the closer goes to a line of its own, indented as
                # the region has it; the cursor stays on the new line between.
                line_start = target.rfind("\n", 0, closer_at) + 1
                outer = target[line_start:closer_at]
                if outer.strip():
                    outer = outer[: len(outer) - len(outer.lstrip())]
                self.pending[:0] = [(c, None) for c in "\n" + outer]
                return Key(insert + "\n" + outer, len(insert), len(insert), "enter")
            return Key(insert, len(insert), len(insert), "enter")
        closer_at = self.pairs.get(i)
        if closer_at is not None and (after[:1] or "\n") in AUTO_CLOSE_BEFORE:
            prev = target[i - 1] if i else ""
            if ch not in QUOTES or not (prev.isalnum() or prev == "_"):
                self.pending.insert(0, (target[closer_at], closer_at))
                return Key(ch + target[closer_at], 1, 1, "key")
        return Key(ch, 1, 1, "key")

    def _step_over(self, i: int) -> Key | None:
        """The region goes on with what the editor already put after the cursor, through its next
        closer: the user types over it (one closer) or steps over it (a closer on the next line)."""
        for n, (ch, at) in enumerate(self.pending):
            if self.target[i + n : i + n + 1] != ch:
                return None
            if at is not None:
                if at != i + n:
                    return None
                del self.pending[: n + 1]
                return Key("", n + 1, n + 1, "overtype" if n == 0 else "move")
        return None

    def leftover(self) -> str:
        """What the editor put that the region never reached (none when the model fits)."""
        return "".join(ch for ch, _ in self.pending)
