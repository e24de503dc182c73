"""The acceptance rule: what part of a visible suggestion the simulated user takes.

The user knows what they are about to type. A suggestion that has been visible long enough to read
is taken whole (Tab) when it is exactly the start of that text; otherwise its first line (accept
line) when that line is; otherwise as many whole words as match (accept word, one key each). Too
little to be worth a key is ignored, and so is anything that merely matches whitespace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A suggestion must have been visible this long before the user can have read it and pressed Tab.
REACTION_S = 0.25
# Fewer non-blank characters than this are not worth a key press.
MIN_ACCEPT_CHARS = 3
# One "accept word" step: optional whitespace, then a run of word characters or of punctuation
# (as VS Code's accept-next-word moves).
WORD = re.compile(r"\s*(?:\w+|[^\w\s]+)")


@dataclass(frozen=True)
class Take:
    kind: str  # "full", "line" or "word"
    text: str
    keys: int  # key presses the user spends (one per word for "word")


def first_line(suggestion: str) -> str:
    """The first line of a suggestion (a suggestion that starts with a newline: that and the next line)."""
    start = len(suggestion) - len(suggestion.lstrip("\n"))
    end = suggestion.find("\n", start)
    return suggestion if end < 0 else suggestion[:end]


def _worth(text: str) -> bool:
    return len(text.strip()) >= MIN_ACCEPT_CHARS


def choose(suggestion: str, remaining: str) -> Take | None:
    """What the user takes of `suggestion` when they were about to type `remaining`, or None."""
    if not suggestion:
        return None
    if remaining.startswith(suggestion):
        return Take("full", suggestion, 1) if _worth(suggestion) else None
    line = first_line(suggestion)
    if line != suggestion and remaining.startswith(line) and _worth(line):
        return Take("line", line, 1)
    end, words = 0, 0
    for m in WORD.finditer(suggestion):
        if not remaining.startswith(suggestion[: m.end()]):
            break
        end, words = m.end(), words + 1
    taken = suggestion[:end]
    return Take("word", taken, words) if words and _worth(taken) else None


def readable(shown_at: float, now: float) -> bool:
    """Whether a suggestion shown at `shown_at` has been visible long enough to be read at `now`."""
    return now - shown_at >= REACTION_S
