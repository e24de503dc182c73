"""Scripted model runtimes for the LSP protocol tests (`infiller serve --fake-engine tests.lsp_fakes:NAME`).

The script answers by the text right before the cursor, so a test sees at once whether the server
put the cursor (UTF-16 positions, incremental edits) where the client meant.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from server.model.fake import FakeEngine, text_before_cursor
from server.model.registry import ModelError
from server.model.runtime import Runtime

# Text before the cursor -> what the fake model writes there (first matching ending wins).
ANSWERS: tuple[tuple[str, str], ...] = (
    ("    if x < 0:\n        ", "return 0\n"),
    ("    if x < 0:\n", "        return 0\n"),  # after a forced new line
    ("    if x < 0", ":\n"),
    ("    x = round", "(x)\n"),
    ("x = round(x)\n", "    if x < 0:\n"),
    ("        return 0\n", "    return x\n"),  # the line below, written back a level
    ("        return 1\n\n", "    def g(self):\n"),  # another method, at a blank line
    ("    def g(self):\n        ", "return 2\n"),
    ("    def g(self):\n", "        return 2\n"),
    ("total = a + b\n    ", "return total\n"),
    ("total = a + b\n", "    return total\n"),  # the prompt leaves a bare indentation out
    ("total = a", " + b\n"),
    ("return a", " + b\n"),
    ("    return max", "(a, b) + 1\n"),
    ("value = form", "at(label)\n"),
    ("value = fo", "rmat(label)\n"),
    ("x = foo", "_baz(2)\n"),
    ("x = fo", "o_bar(1)\n"),
    ("items.ap", "pend(item)\n"),
    ("def twice(n):\n    ", "doubled = n * 2\n    return doubled\n"),
    ("def steps(n):\n    ", "".join(f"n = n + {i}\n    " for i in range(1, 12)) + "return n\n"),
)
FALLBACK = "pass\n"
# Seconds per generated token for the slow engine: long enough to type during a generation.
SLOW_TOKEN_S = 0.08
# Seconds per prompt chunk for the slow reader: long enough to type while the prompt is read.
SLOW_PROMPT_S = 0.6


def script(prompt: str) -> str:
    prefix = text_before_cursor(prompt)
    for ending, answer in ANSWERS:
        if prefix.endswith(ending):
            return answer
    return FALLBACK


class SlowFake(FakeEngine):
    """Reads prompts instantly but generates one token per SLOW_TOKEN_S."""

    def eval(self, tokens: Sequence[int]) -> None:
        if len(tokens) == 1:
            time.sleep(SLOW_TOKEN_S)
        super().eval(tokens)


class SlowReader(FakeEngine):
    """Takes SLOW_PROMPT_S to read any prompt chunk, then generates instantly."""

    def eval(self, tokens: Sequence[int]) -> None:
        if len(tokens) > 1:
            time.sleep(SLOW_PROMPT_S)
        super().eval(tokens)


def fast(model: str | None) -> Runtime:
    return Runtime(FakeEngine(script))


def slow(model: str | None) -> Runtime:
    return Runtime(SlowFake(script))


def slow_reader(model: str | None) -> Runtime:
    return Runtime(SlowReader(script))


def sees_far(prompt: str) -> str:
    """Says whether the prompt reaches the file's top line (a grown prompt does, a cold one not)."""
    return "far()\n" if "FAR_ABOVE = 1" in prompt else "near()\n"


def growing(model: str | None) -> Runtime:
    return Runtime(FakeEngine(sees_far))


def missing(model: str | None) -> Runtime:
    raise ModelError(f"model {model or 'qwen2.5-coder-0.5b'} is not pulled yet: run `infiller models pull`")
