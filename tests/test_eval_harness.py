"""The cross-file evaluation harness: scoring and combining runs made in parts."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.eval_crossfile import Case, Outcome, combine, edit_similarity, shows_definition


def write_part(base: Path, skipped: int, exact: list[bool], package: str) -> Path:
    cases = [Case(package, "/src", f"m{i}.py", i, 0, "name", "name()", "") for i in range(len(exact))]
    outcomes = [
        Outcome("full", i, "name()" if hit else "x", hit, 1.0 if hit else 0.0, 10, 1, 1.0, 5.0)
        for i, hit in enumerate(exact)
    ]
    meta = {
        "model": "m",
        "cases": len(cases),
        "skipped": skipped,
        "packages": [package],
        "budget": 384,
        "prefix_tokens": 384,
        "suffix_tokens": 64,
        "elapsed_s": 1.0,
        "command": f"part from {skipped}",
    }
    data = {
        "meta": meta,
        "summaries": [],
        "cases": [{k: v for k, v in asdict(c).items() if k != "text"} for c in cases],
        "outcomes": [asdict(o) for o in outcomes],
    }
    base.with_name(base.name + ".json").write_text(json.dumps(data))
    return base


def test_parts_combine_into_one_sample(tmp_path: Path) -> None:
    first = write_part(tmp_path / "a", 0, [True, False], "p==1")
    second = write_part(tmp_path / "b", 2, [True, True], "p==1")
    (summary,) = combine([first, second], tmp_path / "all")
    assert summary.cases == 4
    assert summary.exact_match == 0.75
    saved = json.loads((tmp_path / "all.json").read_text())
    assert [o["case"] for o in saved["outcomes"]] == [0, 1, 2, 3]
    assert "4 cases" in (tmp_path / "all.md").read_text()


def test_parts_that_do_not_follow_each_other_are_refused(tmp_path: Path) -> None:
    first = write_part(tmp_path / "a", 0, [True, False], "p==1")
    with pytest.raises(SystemExit, match="expected 3"):
        combine([first, first], tmp_path / "all")


def test_scores() -> None:
    assert edit_similarity("abc", "abc") == 1.0
    assert edit_similarity("abc", "abd") == pytest.approx(2 / 3)
    assert shows_definition("Table", ["class Table(JupyterMixin):\n    ..."])
    assert not shows_definition("Table", ["rows = Table()"])


def test_paired_counts_the_cases_that_separate_two_configurations() -> None:
    from bench.eval_crossfile import paired

    def outcome(config: str, case: int, exact: bool) -> Outcome:
        return Outcome(config, case, "", exact, float(exact), 0, 0, 0.0, 0.0)

    a = [True, True, True, True, True, False, True]
    b = [True, False, False, False, False, False, False]
    outcomes = [outcome("a", i, x) for i, x in enumerate(a)] + [outcome("b", i, x) for i, x in enumerate(b)]
    only_a, only_b, p = paired(outcomes, "a", "b")
    assert (only_a, only_b) == (5, 0)
    assert p == pytest.approx(2 / 32)  # five of five one way: 2 * 0.5**5
