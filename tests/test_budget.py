"""Exact budget filling: never over, greedy by priority, truncation at line boundaries."""

from __future__ import annotations

import pytest

from context.budget import (
    CHUNK_OVERHEAD_TOKENS,
    MAX_CHUNK_SHARE,
    MIN_TRUNCATED_TOKENS,
    Candidate,
    fill,
    header_tokens,
)
from tests.context_helpers import count_tokens


def cand(path: str, words: int, priority: float, start: int = 0, lines: int = 1) -> Candidate:
    per_line = max(words // lines, 1)
    text = "".join(" ".join(["w"] * per_line) + "\n" for _ in range(lines))
    return Candidate(
        (path, start, start + lines - 1),
        path,
        text,
        "definitions",
        priority,
        priority,
        start,
        start + lines - 1,
    )


@pytest.mark.parametrize("budget", [0, 5, 17, 40, 64, 100, 257, 1000])
def test_total_never_exceeds_budget(budget: int) -> None:
    candidates = [cand(f"f{i}.py", 7 * (i + 1), 1.0 / (i + 1), lines=i + 1) for i in range(10)]
    filled = fill(candidates, budget, count_tokens)
    assert sum(f.tokens + f.overhead for f in filled) <= budget
    for f in filled:
        assert f.tokens == count_tokens(f.text)
        assert f.overhead >= CHUNK_OVERHEAD_TOKENS
        assert f.overhead == header_tokens(f.candidate.path, count_tokens)


def test_greedy_skips_a_big_chunk_to_fit_smaller_ones() -> None:
    big = cand("big.py", 80, 0.9)
    small = cand("small.py", 10, 0.5)
    filled = fill([big, small], 40, count_tokens, truncate=False)
    assert [f.candidate.path for f in filled] == ["small.py"]


def test_highest_priority_first() -> None:
    a, b = cand("a.py", 10, 0.2), cand("b.py", 10, 0.8)
    budget = 10 + header_tokens("b.py", count_tokens) + 3
    assert [f.candidate.path for f in fill([a, b], budget, count_tokens, max_share=1.0)] == ["b.py"]


def test_truncation_keeps_whole_lines_and_fills_the_remaining_budget() -> None:
    long = cand("long.py", 200, 1.0, lines=20)  # 20 lines of 10 tokens
    budget = 75
    (filled,) = fill([long], budget, count_tokens, max_share=1.0)
    assert filled.truncated
    assert filled.text.endswith("\n") and filled.text in long.text
    assert filled.tokens + filled.overhead <= budget
    # One more line would not have fitted.
    assert filled.tokens + 10 + filled.overhead > budget


def test_no_truncated_scraps() -> None:
    long = cand("long.py", 200, 1.0, lines=2)  # two lines of 100 tokens: any cut is too coarse
    assert fill([long], header_tokens("long.py", count_tokens) + MIN_TRUNCATED_TOKENS + 5, count_tokens) == []


def test_no_chunk_takes_more_than_its_share_of_the_budget() -> None:
    huge = cand("huge.py", 300, 1.0, lines=30)  # a class summary far larger than the budget
    small = [cand(f"s{i}.py", 10, 0.5 - i / 100) for i in range(5)]
    budget = 200
    filled = fill([huge, *small], budget, count_tokens)
    assert filled[0].candidate.path == "huge.py" and filled[0].truncated
    assert filled[0].tokens + filled[0].overhead <= budget * MAX_CHUNK_SHARE
    assert len(filled) > 3, "the rest of the budget goes to other definitions"
