"""Masking levels of `infiller eval`: golden cases on a small file, and the seeded sampler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from context.masking import LEVELS, masks_in_file, sample_masks

DATA = Path(__file__).parent / "data" / "eval" / "masking"
IMPORTED = {"apply_tax": "shop/tax.py", "RATE": "shop/tax.py"}


def masks(level: str) -> list[dict[str, object]]:
    text = (DATA / "sample.py").read_text("utf-8")
    found = masks_in_file(text, "sample.py", level, imported=IMPORTED, seed=7)
    for mask in found:
        # The hidden span is exactly the target, and the buffer is the file without it.
        assert text[mask.start : mask.end] == mask.target
        assert mask.buffer(text) == text[: mask.start] + text[mask.end :]
        # The cursor's line and column (code points) point at the span's start.
        assert text.split("\n")[mask.line][mask.column :].startswith(mask.target.split("\n")[0])
    return [{"line": m.line + 1, "column": m.column + 1, "target": m.target} for m in found]


@pytest.mark.parametrize("level", LEVELS)
def test_levels_match_their_golden_cases(level: str) -> None:
    golden = json.loads((DATA / "sample.golden.json").read_text("utf-8"))
    assert masks(level) == golden[level]


def test_levels_keep_what_they_promise() -> None:
    assert all("\n" not in m["target"] for lv in ("expression", "line", "statement") for m in masks(lv))  # type: ignore[operator]
    # A block is the body under its header, several lines; the docstring stays in the prompt.
    assert masks("block") == [
        {"line": 12, "column": 9, "target": "subtotal -= discount\n        subtotal = max(subtotal, 0)"}
    ]
    functions = masks("function")
    assert all(not str(m["target"]).startswith('"""') for m in functions)
    assert all(m["target"] != "pass" for m in functions)  # nothing to predict in `noop`
    # The crossfile level starts at a use of an imported name, never at the import itself.
    assert masks("crossfile") == [{"line": 14, "column": 12, "target": "apply_tax(subtotal, RATE)"}]
    # Columns count code points: the emoji line's statement starts at column 1, its rest of line at 7.
    assert {"line": 5, "column": 7, "target": '= "café 😀"'} in masks("line")


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown level"):
        masks_in_file("x = 1\n", "x.py", "paragraph")


def _repo(count: int) -> dict[str, str]:
    body = "\n".join(
        f"    value_{i} = compute(value, {i})\n    check(value_{i}, limit={i})" for i in range(6)
    )
    return {f"pkg/mod{n}.py": f"def run_{n}(value):\n{body}\n    return value_0\n" for n in range(count)}


def test_sampling_is_seeded_spread_over_files_and_capped() -> None:
    files = _repo(5)
    first = sample_masks(list(files), files.get, ["statement", "expression"], 8, seed=3, per_file=2)
    again = sample_masks(list(files), files.get, ["statement", "expression"], 8, seed=3, per_file=2)
    other = sample_masks(list(files), files.get, ["statement", "expression"], 8, seed=4, per_file=2)
    assert [m.key for m in first] == [m.key for m in again]
    assert [m.key for m in first] != [m.key for m in other]
    assert len(first) == 8
    per_file: dict[str, int] = {}
    for m in first:
        per_file[m.path] = per_file.get(m.path, 0) + 1
    assert max(per_file.values()) <= 2 and len(per_file) == 4
    # Levels take turns.
    assert [m.level for m in first[:4]] == ["statement", "expression"] * 2
    # No two chosen cases of a file overlap.
    for a in first:
        for b in first:
            if a is not b and a.path == b.path:
                assert a.end <= b.start or b.end <= a.start


def test_a_second_sample_excludes_the_first() -> None:
    files = _repo(3)
    first = sample_masks(list(files), files.get, ["statement"], 6, seed=1, per_file=3)
    second = sample_masks(
        list(files), files.get, ["statement"], 6, seed=2, per_file=3, exclude={m.key for m in first}
    )
    assert second and not {m.key for m in first} & {m.key for m in second}
