"""Exact token budgets for retrieved context: greedy filling, truncation at line boundaries.

Token counting is passed in (the model's tokenizer in production, a simple counter in tests), so
this module never imports the model runtime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Every chunk is rendered as `<|file_sep|>path\n` + text: the separator and newline cost at least
# this many tokens, and the path's own tokens are counted on top (see `header_tokens`).
CHUNK_OVERHEAD_TOKENS = 2
# No chunk may take more than this share of the budget (it is cut at a line boundary instead):
# one huge class summary must not crowd out every other definition.
MAX_CHUNK_SHARE = 0.5
# A truncated chunk smaller than this tells the model nothing (a signature alone is ~15 tokens).
MIN_TRUNCATED_TOKENS = 24

TokenCounter = Callable[[str], int]


@dataclass(frozen=True)
class Candidate:
    """A chunk that may be included: its priority decides the greedy order."""

    key: tuple[str, int, int]  # (path, start_line, end_line): identity across keystrokes
    path: str
    text: str
    source: str
    score: float  # the source's own score
    priority: float  # fused rank across sources; higher = more important
    start_line: int
    end_line: int


@dataclass(frozen=True)
class Filled:
    candidate: Candidate
    text: str  # possibly truncated
    tokens: int  # count_tokens(text)
    overhead: int  # header tokens charged for this chunk
    truncated: bool


def header_tokens(path: str, count_tokens: TokenCounter) -> int:
    """Tokens charged for a chunk's `<|file_sep|>path\\n` header (never below the constant)."""
    return CHUNK_OVERHEAD_TOKENS + count_tokens(path)


def fill(
    candidates: Sequence[Candidate],
    budget: int,
    count_tokens: TokenCounter,
    *,
    truncate: bool = True,
    max_share: float = MAX_CHUNK_SHARE,
) -> list[Filled]:
    """Greedy by priority: take each candidate that fits; cut one that does not when worth it.

    Guarantees sum(tokens + overhead) <= budget, each overhead >= CHUNK_OVERHEAD_TOKENS, and (with
    truncation on) no chunk above `max_share` of the budget.
    """
    remaining = budget
    cap = int(budget * max_share) if truncate else budget
    out: list[Filled] = []
    for cand in sorted(candidates, key=lambda c: (-c.priority, c.key)):
        overhead = header_tokens(cand.path, count_tokens)
        if overhead >= remaining:
            continue
        tokens = count_tokens(cand.text)
        if tokens + overhead <= min(remaining, cap):
            out.append(Filled(cand, cand.text, tokens, overhead, False))
            remaining -= tokens + overhead
            continue
        limit = min(remaining, cap) - overhead
        if truncate and limit >= MIN_TRUNCATED_TOKENS:
            cut = truncate_lines(cand.text, limit, count_tokens)
            if cut is not None:
                text, tokens = cut
                out.append(Filled(cand, text, tokens, overhead, True))
                remaining -= tokens + overhead
    return out


def truncate_lines(text: str, limit: int, count_tokens: TokenCounter) -> tuple[str, int] | None:
    """The longest line-prefix of `text` within `limit` tokens (binary search), or None."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lo, hi, best = 1, len(lines), None
    while lo <= hi:
        mid = (lo + hi) // 2
        piece = "\n".join(lines[:mid]) + "\n"
        tokens = count_tokens(piece)
        if tokens <= limit:
            best, lo = (piece, tokens), mid + 1
        else:
            hi = mid - 1
    if best is None or best[1] < MIN_TRUNCATED_TOKENS:
        return None
    return best
