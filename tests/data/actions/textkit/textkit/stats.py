"""Counting words."""

from collections import Counter


def word_count(text: str) -> int:
    return len(text.split())


def top_words(text: str, n: int = 3) -> list[tuple[str, int]]:
    """The n most common lowercase words, ties broken alphabetically."""
    counts = Counter(w.lower() for w in text.split())
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
