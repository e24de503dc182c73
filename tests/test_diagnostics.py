"""Server-published syntax diagnostics: what is reported, and where (UTF-16 positions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lsprotocol import types

from server.features.diagnostics import SOURCE, syntax_diagnostics, syntax_spans

DATA = Path(__file__).parent / "data" / "actions"


def test_python_uses_the_compilers_precise_message() -> None:
    text = (DATA / "fixsyntax" / "geometry.py").read_text()
    [diag] = syntax_diagnostics("python", text)
    assert diag.message == "SyntaxError: '(' was never closed"
    assert diag.source == SOURCE and diag.severity == types.DiagnosticSeverity.Error
    line = text.splitlines()[diag.range.start.line]
    assert line.strip() == "return math.sqrt(dx * dx + dy * dy"
    assert line[diag.range.start.character] == "("


def test_positions_count_utf16_units_after_emoji_and_accents() -> None:
    text = 'label = "héé😀" + (1,\n'
    [diag] = syntax_diagnostics("python", text)
    # h é é 😀 count 1+1+1+2 units: the paren is at code point 17, UTF-16 column 18.
    assert text.index("(") == 17
    assert diag.range.start == types.Position(line=0, character=18)
    assert diag.range.end == types.Position(line=0, character=19)


def test_valid_files_have_no_diagnostics() -> None:
    for name in ("textkit/textkit/slug.py", "fixbug/intervals.py", "fixname/prices.py"):
        assert syntax_diagnostics("python", (DATA / name).read_text()) == []
    assert syntax_diagnostics(None, "def (:") == []


@pytest.mark.parametrize(
    ("language", "text", "line"),
    [
        ("javascript", "function f(a {\n  return a;\n}\n", 0),
        ("go", "package main\n\nfunc main() {\n\tx := (1 + \n}\n", 3),
        ("rust", "fn main() {\n    let x = ;\n}\n", 1),
    ],
)
def test_tree_sitter_errors_for_other_languages(language: str, text: str, line: int) -> None:
    spans = syntax_spans(language, text)
    assert spans, f"no syntax error found in {language}"
    assert spans[0].start_line <= line
    assert all(s.start_line == s.end_line for s in spans)  # one line each, never a whole function
    assert all(s.message.startswith("syntax error: ") for s in spans)


def test_missing_node_names_what_is_absent() -> None:
    spans = syntax_spans("javascript", "const x = [1, 2;\n")
    assert any("missing" in s.message or "unexpected" in s.message for s in spans)
