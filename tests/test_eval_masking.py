"""Masking levels of `infiller eval`: golden cases on a small file, and the seeded sampler."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from context.masking import LEVELS, Mask, masks_in_file, sample_masks

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


# One fixture per brace language (TSX shares TypeScript's node types, with JSX), and the names
# each imports from another file of its repository: the caller's mapping for the crossfile level.
BRACE_SAMPLES: dict[str, dict[str, str]] = {
    "sample.ts": {"applyTax": "tax.ts", "RATE": "tax.ts"},
    "sample.tsx": {"applyTax": "tax.ts", "RATE": "tax.ts"},
    "sample.js": {"applyTax": "tax.js", "RATE": "tax.js"},
    "sample.go": {"tax": "tax/tax.go"},
    "sample.rs": {"apply_tax": "src/tax.rs", "RATE": "src/tax.rs"},
    "sample.java": {"TaxTable": "shop/tax/TaxTable.java"},
    "sample.c": {"apply_tax": "tax.h", "TAX_RATE": "tax.h"},
    "sample.cpp": {"TaxTable": "tax.hh"},
}


def brace_masks(name: str, level: str) -> list[Mask]:
    """Every case of `level` in a brace-language fixture, checked like `masks`."""
    text = (DATA / name).read_text("utf-8")
    found = masks_in_file(text, name, level, imported=BRACE_SAMPLES[name], seed=7)
    for mask in found:
        assert text[mask.start : mask.end] == mask.target
        assert text.split("\n")[mask.line][mask.column :].startswith(mask.target.split("\n")[0])
    return found


def cases(name: str, level: str) -> list[tuple[int, str]]:
    """(1-based line, target) of every case of `level` in a brace-language fixture."""
    return [(m.line + 1, m.target) for m in brace_masks(name, level)]


@pytest.mark.parametrize("name", BRACE_SAMPLES)
@pytest.mark.parametrize("level", LEVELS)
def test_brace_languages_match_their_golden_cases(name: str, level: str) -> None:
    golden = json.loads((DATA / "languages.golden.json").read_text("utf-8"))
    found = [
        {"line": mask.line + 1, "column": mask.column + 1, "target": mask.target}
        for mask in brace_masks(name, level)
    ]
    assert found == golden[name][level]


# The if-block every fixture has: its body, without the braces, is the block case.
DISCOUNT_BLOCKS = {
    "sample.ts": "subtotal -= discount;\n      subtotal = Math.max(subtotal, 0);",
    "sample.js": "subtotal -= discount;\n    subtotal = Math.max(subtotal, 0);",
    "sample.go": "subtotal -= discount\n\t\tsubtotal = max(subtotal, 0)",
    "sample.rs": "subtotal -= discount;\n        subtotal = subtotal.max(0.0);",
    "sample.java": "subtotal -= discount;\n            subtotal = Math.max(subtotal, 0);",
    "sample.c": "subtotal -= discount;\n        subtotal = subtotal > 0 ? subtotal : 0;",
    "sample.cpp": "subtotal -= discount;\n    subtotal = std::max(subtotal, 0.0);",
}


@pytest.mark.parametrize("name", DISCOUNT_BLOCKS)
def test_a_block_case_is_the_body_under_an_if_without_its_braces(name: str) -> None:
    blocks = [target for _, target in cases(name, "block")]
    assert DISCOUNT_BLOCKS[name] in blocks


@pytest.mark.parametrize("name", BRACE_SAMPLES)
def test_a_body_case_leaves_the_closing_brace_in_the_suffix(name: str) -> None:
    text = (DATA / name).read_text("utf-8")
    for level in ("block", "function"):
        for mask in masks_in_file(text, name, level, imported=BRACE_SAMPLES[name]):
            # The cursor is on a line of its own and the body's last statement ends its line: what
            # follows is the newline and the `}` the editor already shows.
            assert text[mask.start - mask.column : mask.start].strip() == ""
            assert re.match(r"\n\s*\}", text[mask.end :]), mask.key


def test_the_go_function_body_is_the_statements_inside_the_braces() -> None:
    # Describe's leading comment stays in the prompt; Total is longer than a body case may be.
    assert cases("sample.go", "function") == [
        (
            31,
            "names := make([]string, 0, len(items))\n"
            "\tfor _, item := range items {\n"
            '\t\tnames = append(names, fmt.Sprintf("%d x %.2f", item.Count, item.Price))\n'
            "\t}\n"
            "\treturn fmt.Sprint(names)",
        )
    ]


@pytest.mark.parametrize(
    ("name", "line"),
    [("sample.ts", 27), ("sample.go", 38), ("sample.rs", 33), ("sample.java", 25), ("sample.c", 23)],
)
def test_a_one_line_body_is_not_a_body_or_statement_case(name: str, line: int) -> None:
    # `size() { return items.length; }`: the body shares the header's line, there is no line to fill.
    for level in ("function", "block", "statement", "line"):
        assert all(case_line != line for case_line, _ in cases(name, level)), level


@pytest.mark.parametrize(
    ("name", "stub"),
    [
        ("sample.ts", 'throw new Error("not implemented");'),
        ("sample.js", 'throw new Error("Not implemented");'),
        ("sample.go", 'panic("not implemented")'),
        ("sample.rs", "todo!()"),
        ("sample.java", 'throw new UnsupportedOperationException("refund");'),
    ],
)
def test_a_stub_body_is_not_a_function_case(name: str, stub: str) -> None:
    assert stub in (DATA / name).read_text("utf-8")
    assert all(stub not in target for _, target in cases(name, "function"))


# Each fixture's crossfile cases: the rest of the line from a use of an imported name, never the
# import itself, a declaration, a type annotation, nor the same name in a string, a comment or JSX text.
CROSSFILE = {
    "sample.ts": [(24, "applyTax(subtotal, RATE);")],
    "sample.tsx": [(9, "applyTax(subtotal, RATE)}</strong>;")],
    "sample.js": [(12, "applyTax(subtotal, RATE);")],
    "sample.go": [(26, "tax.Apply(subtotal, tax.Rate)")],
    "sample.rs": [(17, "apply_tax(subtotal, RATE)")],
    "sample.java": [(22, "TaxTable.apply(subtotal, TaxTable.RATE);"), (29, 'TaxTable("TaxTable.apply(x)");')],
    "sample.c": [(21, "apply_tax(subtotal, TAX_RATE);")],
    "sample.cpp": [
        (34, 'TaxTable("TaxTable::apply(x)");'),
        (35, "TaxTable::apply(subtotal, table->rate());"),
    ],
}


@pytest.mark.parametrize("name", CROSSFILE)
def test_a_crossfile_case_starts_at_the_imported_name(name: str) -> None:
    assert cases(name, "crossfile") == CROSSFILE[name]


@pytest.mark.parametrize("name", BRACE_SAMPLES)
def test_nothing_is_masked_inside_a_string_or_a_comment(name: str) -> None:
    text = (DATA / name).read_text("utf-8")
    lines = text.split("\n")
    # Every fixture has a comment line naming an imported call, and most a string holding one.
    comment = next(i for i, line in enumerate(lines) if "is not called here" in line)
    quoted = [(m.start() + 1, m.end() - 1) for m in re.finditer(r'"[^"\n]*\(.*?"', text)]
    for level in LEVELS:
        for mask in brace_masks(name, level):
            assert mask.line != comment, mask.key
            assert not any(start <= mask.start < end for start, end in quoted), mask.key


def test_a_rust_block_value_is_a_statement_case() -> None:
    # The function's last expression (no `;`) is what it returns: a statement to complete, and
    # not an expression case as well.
    assert (17, "apply_tax(subtotal, RATE)") in cases("sample.rs", "statement")
    assert (17, "apply_tax(subtotal, RATE)") not in cases("sample.rs", "expression")


def test_a_file_of_no_supported_language_has_no_cases() -> None:
    assert masks_in_file("print(1)\n", "notes.txt", "statement") == []
