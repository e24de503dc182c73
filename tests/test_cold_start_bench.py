"""The cold-start benchmark's pure helpers: percentiles, where its cursors go, its timeline."""

from __future__ import annotations

from bench.cold_start import (
    Cursor,
    first_times,
    percentile,
    progress_name,
    spread_cursors,
    typed_text,
)

SOURCE = '''import os


def load(path):
    """Read a file.

    data = not code, a docstring line
    """
    text = open(path).read()
    size = len(text)
    return text


class Store:
    items = []

    def add(self, item):
        self.items.append(item)
        count = len(self.items)
        return count
'''


def test_percentile_is_the_nearest_rank_of_the_sorted_values() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100, shuffled order must not matter
    assert percentile(values[::-1], 50) == 51.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([], 95) == 0.0


def test_cursors_sit_in_function_bodies_never_in_docstrings_or_class_bodies() -> None:
    lines = SOURCE.split("\n")
    cursors = spread_cursors(lines, 4)
    assert len(cursors) == 4
    assert [c.kind for c in cursors] == ["mid-line", "new-line", "mid-line", "new-line"]
    for c in cursors:
        text = lines[c.line]
        assert text.startswith("    ") and "data = not code" not in text and "items = []" not in text
        assert c.rest == text[c.column :]
    mid = [c for c in cursors if c.kind == "mid-line"]
    # After ` = ` (or the first `(`), with something left to complete.
    assert all(lines[c.line][: c.column].endswith((" = ", "(")) and c.rest.strip() for c in mid)
    new = [c for c in cursors if c.kind == "new-line"]
    assert all(not lines[c.line][: c.column].strip() for c in new)
    assert len({c.line for c in cursors}) == 4


def test_one_cursor_is_the_statement_nearest_the_middle() -> None:
    lines = SOURCE.split("\n")
    (cursor,) = spread_cursors(lines, 1)
    assert lines[cursor.line].strip() in {"size = len(text)", "count = len(self.items)"}


def test_typed_text_ends_the_cursor_line_at_the_cursor() -> None:
    lines = ["def f():", "    x = compute(1)", "    return x"]
    text = typed_text(lines, Cursor(1, 8, "mid-line", "compute(1)"))
    assert text == "def f():\n    x = \n    return x"


def test_progress_bars_map_to_timeline_events() -> None:
    assert progress_name("infiller: indexing", "end") == "index_end"
    assert progress_name("infiller: loading qwen2.5-coder-1.5b", "begin") == "model_begin"
    assert progress_name("infiller: loading qwen2.5-coder-1.5b", "report") is None
    assert progress_name("infiller: generating tests", "end") is None
    assert progress_name(None, "end") is None


def test_first_times_keeps_each_events_first_occurrence() -> None:
    events = [
        (0.5, "spawned", ""),
        (2.0, "stats_model", ""),
        (2.1, "stats_model", ""),
        (1.0, "index_end", "x"),
    ]
    assert first_times(events) == {"spawned": 0.5, "stats_model": 2.0, "index_end": 1.0}
