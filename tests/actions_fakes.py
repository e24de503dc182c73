"""Scripted models for the code-action protocol tests (`--fake-engine tests.actions_fakes:NAME`).

They answer the prompts the actions send about the sample repositories in tests/data/actions:
a FIM re-infill for the unclosed parenthesis in geometry.py, and pytest tests for `slugify`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from server.model.fake import FakeEngine
from server.model.runtime import Runtime
from server.model.templates import QWEN

FIXED_LINE = "    return math.sqrt(dx * dx + dy * dy)\n"
SLUGIFY_TESTS = (
    "slugify_basic():\n"
    '    assert slugify("Hello, World!") == "hello-world"\n\n\n'
    "def test_slugify_separator():\n"
    '    assert slugify("a b", sep="_") == "a_b"\n'
    "```\n"
)
# Seconds per generated token for the slow engine: a generation outlives a cancel sent at once.
SLOW_TOKEN_S = 0.05


def script(prompt: str) -> str:
    if QWEN.middle in prompt:
        prefix = prompt.split(QWEN.prefix, 1)[1].split(QWEN.suffix, 1)[0]
        if prefix.endswith("# FIXME: SyntaxError: '(' was never closed\n"):
            return FIXED_LINE
        return "    pass\n"
    if "Write pytest tests for the function `slugify`" in prompt:
        return SLUGIFY_TESTS
    return "```\n"


class SlowFake(FakeEngine):
    def eval(self, tokens: Sequence[int]) -> None:
        if len(tokens) == 1:
            time.sleep(SLOW_TOKEN_S)
        super().eval(tokens)


def fast(model: str | None) -> Runtime:
    return Runtime(FakeEngine(script))


def slow(model: str | None) -> Runtime:
    return Runtime(SlowFake(script))
