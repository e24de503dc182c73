"""End to end with the real 0.5B model: the server process over stdio, an editor stand-in that
applies the edits, and the sample repositories in tests/data/actions.

- "Generate tests" on a real small function creates a test file whose tests pass when run.
- "Fix this" on the server's own syntax diagnostic returns a verified edit that compiles.
- "Fix this" on a function whose test fails returns an edit after which the tests pass.
- "Fix this" on an undefined-name diagnostic from another tool resolves the name.

Each test prints its timings (run with -s to see them). Skipped when the model is not pulled.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types

from tests.actions_client import Editor, plain
from tests.conftest import TEST_MODEL

pytestmark = pytest.mark.model

DATA = Path(__file__).parent / "data" / "actions"
# The 0.5B on two shared cores: a test-generation run with repair rounds takes minutes.
SCENARIO_TIMEOUT_S = 840


def _scenario(tmp_path: Path, repo: str, body: Callable[[Editor], Awaitable[None]]) -> None:
    root = tmp_path / repo
    shutil.copytree(DATA / repo, root)
    editor = Editor(root, tmp_path / "state")

    async def main() -> None:
        await editor.start("--model", TEST_MODEL, options={"infiller": {"model": TEST_MODEL}})
        try:
            await editor.wait_model(timeout=300)
            await body(editor)
        finally:
            await editor.stop()

    asyncio.run(asyncio.wait_for(main(), SCENARIO_TIMEOUT_S))


async def _run(ed: Editor, action: types.CodeAction) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    result = plain(await ed.run(action))
    elapsed = time.perf_counter() - start
    print(f"\n{action.title}: {elapsed:.1f} s -> {result}")
    return result, elapsed


def _pytest(root: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *targets],
        cwd=root,
        capture_output=True,
        text=True,
    )


def _range(line: int, col: int = 0, end_line: int | None = None, end_col: int = 0) -> types.Range:
    return types.Range(
        start=types.Position(line=line, character=col),
        end=types.Position(line=line if end_line is None else end_line, character=end_col),
    )


def test_generate_tests_for_a_real_function_creates_passing_tests(tmp_path: Path) -> None:
    async def body(ed: Editor) -> None:
        uri = ed.open(ed.root / "textkit" / "slug.py")
        line = ed.texts[uri].splitlines().index('def slugify(title: str, sep: str = "-") -> str:')
        actions = await ed.code_actions(uri, _range(line + 2, 4))
        [action] = [a for a in actions if a.title == "infiller: Generate tests for `slugify`"]
        result, _ = await _run(ed, action)
        assert result["applied"] is True, result
        assert len(result["passing"]) >= 1, result
        test_file = ed.root / "tests" / "test_slug.py"
        text = test_file.read_text()
        print(text)
        proc = _pytest(ed.root, "tests/test_slug.py")
        # Every test left uncommented passes; failing ones are comments marked as possible bugs.
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"{len(result['passing'])} passed" in proc.stdout
        assert text.count("# infiller: possible bug") == min(3, len(result["failing"]))
        assert _pytest(ed.root, "tests").returncode == 0  # the project's own tests still pass

    _scenario(tmp_path, "textkit", body)


def test_fix_this_on_a_real_syntax_error(tmp_path: Path) -> None:
    async def body(ed: Editor) -> None:
        path = ed.root / "geometry.py"
        uri = ed.open(path)
        [diag] = await ed.wait_diagnostics(uri)
        actions = await ed.code_actions(uri, diag.range, [diag])
        fix = next(a for a in actions if a.title.startswith("infiller: Fix this"))
        result, _ = await _run(ed, fix)
        assert result["applied"] is True, result
        assert "syntax error gone" in result["candidates"][0]["checks"]
        fixed = path.read_text()
        compile(fixed, "geometry.py", "exec")
        assert fixed.count("\n") >= ed.texts[uri].count("\n") - 1  # a repair, not a deletion
        assert "def perimeter(" in fixed and "def distance(" in fixed

    _scenario(tmp_path, "fixsyntax", body)


def test_fix_this_on_a_function_whose_test_fails(tmp_path: Path) -> None:
    async def body(ed: Editor) -> None:
        assert _pytest(ed.root, "tests").returncode == 1  # the bug is real
        path = ed.root / "intervals.py"
        uri = ed.open(path)
        lines = ed.texts[uri].splitlines()
        start = next(i for i, ln in enumerate(lines) if ln.startswith("def merge("))
        actions = await ed.code_actions(uri, _range(start, 0, len(lines), 0))  # the user selects it
        fix = next(a for a in actions if a.title == "infiller: Fix this")
        result, _ = await _run(ed, fix)
        assert result["applied"] is True, result
        assert result["relatedTests"] == ["tests/test_intervals.py"]
        assert "3/3 related tests pass" in result["candidates"][0]["checks"]
        proc = _pytest(ed.root, "tests")
        assert proc.returncode == 0 and "3 passed" in proc.stdout, proc.stdout

    _scenario(tmp_path, "fixbug", body)


def test_fix_this_on_an_undefined_name_from_another_tool(tmp_path: Path) -> None:
    async def body(ed: Editor) -> None:
        path = ed.root / "prices.py"
        uri = ed.open(path)
        line = next(i for i, ln in enumerate(ed.texts[uri].splitlines()) if "subtotl" in ln)
        col = ed.texts[uri].splitlines()[line].index("subtotl")
        diag = types.Diagnostic(
            range=_range(line, col, line, col + len("subtotl")),
            message="Undefined name `subtotl`",
            source="Ruff",
            code="F821",
        )
        actions = await ed.code_actions(uri, diag.range, [diag])
        fix = next(a for a in actions if a.title.startswith("infiller: Fix this"))
        result, _ = await _run(ed, fix)
        assert result["applied"] is True, result
        assert "'subtotl' resolved" in result["candidates"][0]["checks"]
        namespace: dict[str, Any] = {}
        exec(compile(path.read_text(), "prices.py", "exec"), namespace)
        assert namespace["total"]([10.0, 20.0]) == pytest.approx(36.0)

    _scenario(tmp_path, "fixname", body)
