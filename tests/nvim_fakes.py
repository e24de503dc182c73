"""Scripted model runtimes for the Neovim client tests (`--fake-engine tests.nvim_fakes:NAME`).

The script answers by the text right before the cursor; anywhere else it writes nothing, so every
suggestion a test sees belongs to exactly one line of tests/data/nvim/shapes/shapes/greetings.py.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from server.model.fake import FakeEngine, text_before_cursor
from server.model.runtime import Runtime

# Text before the cursor -> what the fake model writes there (first matching ending wins).
ANSWERS: tuple[tuple[str, str], ...] = (
    ("greeting = gr", "eet(name)\n"),
    ("greeting = fa", "rewell(name)\n"),
    # Asked inside `str(|)` (the `)` an editor closed, which the request leaves out): the answer
    # writes the `)` itself and goes on. Nothing matches on the way there (`s`, `st`, `str`).
    ("greeting = str(", "name).upper()\n"),
    # A block: the prompt ends at the cursor, after the new line's indentation.
    ("def farewell(name: str) -> str:\n    ", 'message = f"Bye, {name}!"\n    return message\n'),
)
# Seconds per generated token for the slow engine: a generation outlasts a few keystrokes.
SLOW_TOKEN_S = 0.15


def script(prompt: str) -> str:
    prefix = text_before_cursor(prompt)
    for ending, answer in ANSWERS:
        if prefix.endswith(ending):
            return answer
    return ""


class SlowFake(FakeEngine):
    """Reads prompts instantly but generates one token per SLOW_TOKEN_S."""

    def eval(self, tokens: Sequence[int]) -> None:
        if len(tokens) == 1:
            time.sleep(SLOW_TOKEN_S)
        super().eval(tokens)


def fast(model: str | None) -> Runtime:
    return Runtime(FakeEngine(script))


def slow(model: str | None) -> Runtime:
    return Runtime(SlowFake(script))
