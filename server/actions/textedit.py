"""Line-based edits between two versions of a text: what a verified candidate changes, minimally.

Positions are 0-based lines; the LSP layer turns them into ranges (whole lines need no UTF-16
arithmetic, since line starts are column 0 in every encoding).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LineEdit:
    """Replace lines [start, end) of the old text with `new_text` (whole lines, each ending in \\n)."""

    start: int
    end: int
    new_text: str

    @property
    def size(self) -> int:
        """Lines touched: removed plus inserted (ranks minimal fixes first)."""
        return (self.end - self.start) + self.new_text.count("\n")


def split_lines(text: str) -> list[str]:
    """Lines with their newline kept; a final line without newline is kept as is."""
    return text.splitlines(keepends=True)


def minimal_line_edit(old: str, new: str) -> LineEdit | None:
    """The smallest single line-range replacement turning old into new; None when equal."""
    if old == new:
        return None
    a, b = split_lines(old), split_lines(new)
    # A last line without newline compares unequal to the same line with one: normalise.
    if a and not a[-1].endswith("\n"):
        a[-1] += "\n"
    if b and not b[-1].endswith("\n"):
        b[-1] += "\n"
    head = 0
    while head < len(a) and head < len(b) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < len(a) - head and tail < len(b) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    if head == len(a) == len(b):
        # Only the missing final newline differs: replace the last line.
        head -= 1
    return LineEdit(head, len(a) - tail, "".join(b[head : len(b) - tail]))


def apply_line_edit(old: str, edit: LineEdit) -> str:
    lines = split_lines(old)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    return "".join(lines[: edit.start]) + edit.new_text + "".join(lines[edit.end :])


__all__ = ["LineEdit", "apply_line_edit", "minimal_line_edit", "split_lines"]
