"""The key model: when a simulated user presses each key of a region, deterministically.

Delays are drawn per character from a generator seeded by (seed, region), so the same character of
the same region gets the same delay in every run and for every engine, whatever was accepted before
it. Ordinary keys are log-normal and capped below the pause threshold, so every pause comes from a
named rule: after Enter, after an opening `(`, a `:` or an `=` now and then, and a rare think pause at
a space.
"""

from __future__ import annotations

import math
import random

# Median inter-key delay of ~140 ms (~85 words/min in bursts); sigma gives realistic variance.
KEY_MEDIAN_S = 0.14
KEY_SIGMA = 0.45
# Ordinary keys stay inside these bounds: no inhumanly fast key, and no accidental "pause".
KEY_MIN_S = 0.04
KEY_MAX_S = 0.35
# Letters inside a word come faster than the first letter (a burst).
IN_WORD_FACTOR = 0.8
# A gap at least this long is a pause: the moment a user looks up and wants a suggestion.
PAUSE_S = 0.4
# After Enter the user always pauses (reads the line, thinks about the next one).
ENTER_PAUSE_S = (0.5, 1.2)
# After these characters the user pauses now and then (deciding the arguments, the value, the body).
PAUSE_AFTER = "(:="
PAUSE_AFTER_P = 0.4
PAUSE_AFTER_S = (0.4, 0.9)
# A rare longer think pause at a space.
THINK_P = 0.03
THINK_S = (1.0, 2.5)
SEED = 7


def key_delays(text: str, region_id: str, seed: int = SEED) -> list[float]:
    """delays[i]: seconds between the previous action and typing text[i] (delays[0]: after the look)."""
    rng = random.Random(f"{seed}:{region_id}")
    delays: list[float] = []
    for i, ch in enumerate(text):
        base = rng.lognormvariate(math.log(KEY_MEDIAN_S), KEY_SIGMA)
        prev = text[i - 1] if i else ""
        if prev.isalnum() and ch.isalnum():
            base *= IN_WORD_FACTOR
        delay = min(max(base, KEY_MIN_S), KEY_MAX_S)
        # Draw every variate for every character so one rule never shifts another's draws.
        pause_roll, think_roll = rng.random(), rng.random()
        enter_s, after_s, think_s = (
            rng.uniform(*ENTER_PAUSE_S),
            rng.uniform(*PAUSE_AFTER_S),
            rng.uniform(*THINK_S),
        )
        if _starts_line(text, i):
            delay = enter_s
        elif prev and prev in PAUSE_AFTER and pause_roll < PAUSE_AFTER_P:
            delay = after_s
        elif prev == " " and think_roll < THINK_P:
            delay = think_s
        delays.append(delay)
    return delays


def _starts_line(text: str, i: int) -> bool:
    """text[i] is the first key typed on a new line: right after the newline, or after the indentation
    the editor inserted (the pause after Enter belongs to the first key the user presses)."""
    nl = text.rfind("\n", 0, i)
    if nl < 0:
        return False
    indent = text[nl + 1 : i]
    return not indent.strip() and (not indent or text[i] not in " \t")


def auto_indent(text: str, i: int) -> str:
    """What the editor inserts when Enter is pressed at text[i] == "\\n": the newline and the indentation
    the next line has (a language-aware editor gets it right; dedents are not modelled as backspaces)."""
    rest = text[i + 1 :]
    line = rest.split("\n", 1)[0]
    if not line.strip():
        return "\n"
    return "\n" + line[: len(line) - len(line.lstrip(" \t"))]
