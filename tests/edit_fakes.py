"""Scripted models for the edit-by-instruction tests (`--fake-engine tests.edit_fakes:fast`).

The rewrite answers the prompt the action sends for an instruction it knows (about the sample
projects in tests/data); any other prompt gets an empty code block (a rewrite that changes
nothing, which the action rejects).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from server.model.fake import FakeEngine
from server.model.runtime import Runtime

# An instruction the model answers at a real model's pace, long enough to be cancelled mid-way.
SLOW_INSTRUCTION = "take your time"
PACE_S = 0.05

# Instruction -> the rewritten code after the prefilled opening fence (dedented, as models answer).
REWRITES = {
    "reject a negative radius": (
        "def area(self) -> float:\n"
        "    if self.radius < 0:\n"
        '        raise ValueError("negative radius")\n'
        "    return 3.141592653589793 * self.radius**2\n"
        "```\n"
    ),
    "handle None": (
        "def merge(intervals: list[tuple[int, int]] | None) -> list[tuple[int, int]]:\n"
        '    """Merge overlapping or touching intervals; the result is sorted by start."""\n'
        "    if intervals is None:\n"
        "        return []\n"
        "    result: list[tuple[int, int]] = []\n"
        "    for start, end in sorted(intervals):\n"
        "        if result and start < result[-1][1]:\n"
        "            result[-1] = (result[-1][0], max(result[-1][1], end))\n"
        "        else:\n"
        "            result.append((start, end))\n"
        "    return result\n"
        "```\n"
    ),
}


def script(prompt: str) -> str:
    for instruction, answer in REWRITES.items():
        if f"Instruction: {instruction}" in prompt:
            return answer
    if f"Instruction: {SLOW_INSTRUCTION}" in prompt:
        return "".join(f"x{i} = {i}\n" for i in range(1000)) + "```\n"
    return "```\n"


class _PacedEngine(FakeEngine):
    """Writes its answer to SLOW_INSTRUCTION one token per PACE_S, the others at once."""

    paced = False

    def eval(self, tokens: Sequence[int]) -> None:
        if self.paced and len(tokens) == 1:
            time.sleep(PACE_S)
        super().eval(tokens)


def fast(model: str | None) -> Runtime:
    def paced_script(prompt: str) -> str:
        engine.paced = f"Instruction: {SLOW_INSTRUCTION}" in prompt
        return script(prompt)

    engine = _PacedEngine(paced_script)
    return Runtime(engine)
