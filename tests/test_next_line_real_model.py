"""The hot streak's next line with the real model: it writes the line's indentation itself.

The hot streak prepares the line after an accepted answer for the Enter to come. The model answers
from the end of the line above with a forced new line (Completer.complete's `new_line`), so the
line it prepares may go back a level, as code does after a `return`; prepared at the editor's
indentation instead, it never could. Runs in its own model process, like the editor's.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from server.completion import Completer
from server.model.loader import load_runtime
from server.request import CompletionContext
from tests.conftest import TEST_MODEL

pytestmark = pytest.mark.model

ABOVE = (
    "def clamp(value: float, low: float, high: float) -> float:\n"
    '    """`value` limited to [low, high]."""\n'
    "    if value < low:\n"
    "        return low"
)
BELOW = "\n\n\nprint(clamp(5.0, 0.0, 1.0))\n"


def test_the_line_after_a_return_is_written_back_a_level_and_the_line_after_a_header_inside_it(
    tmp_path: Path,
) -> None:
    runtime = load_runtime(TEST_MODEL, n_threads=1)
    try:
        completer = Completer(runtime)
        path = tmp_path / "clamp.py"
        after_return = completer.complete(
            CompletionContext(path.as_uri(), ABOVE, BELOW, path=path), first_line=True, new_line=True
        )
        text = after_return.text or ""
        # The function goes on at its body's level (`if value > high:`, `return ...`).
        assert text.startswith("    ") and not text.startswith("     "), text
        assert "\n" not in text.strip("\n"), text  # one line, for the Enter to come
        header = ABOVE[: ABOVE.index("\n        return low")]
        after_header = completer.complete(
            CompletionContext(path.as_uri(), header, "\n" + BELOW, path=path), first_line=True, new_line=True
        )
        assert after_header.text == "        return low", after_header.text
    finally:
        close = getattr(runtime, "close", None)
        if callable(close):
            close()
