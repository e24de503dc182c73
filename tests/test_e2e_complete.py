"""`infiller complete` with the real 0.5B model on real code: what a user gets in the terminal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_MODEL

pytestmark = pytest.mark.model

DATA = Path(__file__).parent / "data" / "complete"


def write_with_cursor(tmp_path: Path, source: str) -> str:
    """Write source (one █ marks the cursor) to a file; return FILE:LINE:COL (1-based)."""
    before = source[: source.index("█")]
    project = tmp_path / "mathutils"  # a project folder: its name is the prompt's repository name
    project.mkdir(exist_ok=True)
    (project / "pyproject.toml").write_text('[project]\nname = "mathutils"\n')
    path = project / "snippet.py"
    path.write_text(source.replace("█", ""))
    line = before.count("\n") + 1
    col = len(before.rsplit("\n", 1)[-1]) + 1
    return f"{path}:{line}:{col}"


def complete(location: str, *extra: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "server", "complete", "--model", TEST_MODEL, "--json", location, *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_mid_line_cursor_returns_one_sensible_line(tmp_path: Path) -> None:
    source = (DATA / "stats.py").read_text().replace("+ fibonacci(n - 2)", "+ █")
    result = complete(write_with_cursor(tmp_path, source), "--no-context")
    assert result["mode"] == "line"
    assert result["completion"] is not None and "\n" not in result["completion"]
    # The recursion the line needs. Since the 0.5B reads the body after the FIM middle marker (a
    # better layout for it on 48 development cases), it goes on with `/ 2` here without context.
    assert result["completion"].replace(" ", "").startswith("fibonacci(n-2)"), result
    latency = result["latency_ms"]
    assert latency["prompt_ms"] > 0 and latency["generation_ms"] > 0 and latency["total_ms"] > 0
    assert result["tokens"]["prompt"] > 0 and result["tokens"]["generated"] > 0
    assert result["model"] == TEST_MODEL


def test_a_call_the_model_opens_on_the_line_comes_whole_with_its_argument_lines(tmp_path: Path) -> None:
    # Each add_argument above is broken over lines: the model opens the next one the same way.
    # The line completion used to end at the first newline and close the bracket: `()`.
    source = (DATA / "copy_cli.py").read_text().rstrip("\n") + "█\n"
    result = complete(write_with_cursor(tmp_path, source), "--no-context")
    text = result["completion"]
    assert result["mode"] == "line" and text is not None, result
    lines = text.split("\n")
    assert len(lines) >= 3 and lines[0] == "(" and lines[-1] == "    )", text
    assert all(line.startswith("        ") for line in lines[1:-1]), text
    compile("parser.add_argument" + text, "<completion>", "eval")  # a whole call


def test_at_a_block_headers_end_the_answer_is_the_body_on_the_next_line(tmp_path: Path) -> None:
    # Left free, the models answered on the header's line: ` return low` (a one-line `if`), or a
    # comment (`  # Check if the list is empty`) before the body.
    source = (
        "def clamp(value: float, low: float, high: float) -> float:\n"
        '    """`value` limited to [low, high]."""\n'
        "    if value < low:█\n"
        "    return min(value, high)\n"
    )
    result = complete(write_with_cursor(tmp_path, source), "--no-context")
    assert result["mode"] == "block"
    assert result["completion"] == "\n        return low", result


def test_empty_line_in_function_body_returns_a_block_that_ends_with_it(tmp_path: Path) -> None:
    source = (
        "def factorial(n: int) -> int:\n"
        '    """n! computed iteratively."""\n'
        "    result = 1\n"
        "    █\n"
        "\n\n"
        "print(factorial(5))\n"
    )
    result = complete(write_with_cursor(tmp_path, source), "--no-context")
    text = result["completion"]
    assert result["mode"] == "block"
    assert text is not None
    lines = text.split("\n")
    assert len(lines) >= 2, text
    # Every later line stays inside the function body: the module-level print is not repeated.
    assert all(ln.startswith("    ") for ln in lines[1:] if ln.strip()), text
    assert "print(factorial" not in text
    namespace: dict[str, object] = {}
    exec(
        compile(source.replace("█", text).replace("print(factorial(5))", ""), "snippet.py", "exec"), namespace
    )
    assert namespace["factorial"](5) == 120  # type: ignore[operator]


def test_nested_block_ends_at_its_own_end(tmp_path: Path) -> None:
    source = (
        "def mean(values: list[float]) -> float:\n"
        '    """Arithmetic mean; raises ValueError on an empty list."""\n'
        "    if not values:\n"
        "        █\n"
        "    return sum(values) / len(values)\n"
    )
    result = complete(write_with_cursor(tmp_path, source), "--no-context")
    assert result["mode"] == "block"
    assert result["completion"] is not None
    assert result["completion"].startswith("raise ValueError(")
    assert "\n" not in result["completion"]  # the `return` after the if-block is not repeated


def test_bad_location_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "a.py"
    path.write_text("x = 1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "server", "complete", f"{path}:9:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "line 9 is past the end" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "server", "complete", f"{path}:x:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "expected FILE:LINE:COL" in proc.stderr
