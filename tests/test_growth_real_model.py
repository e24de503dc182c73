"""A prompt that grows in place, with the real model: llama.cpp's cache takes the insertions.

The KV cache of the small prompt is extended by reading older prefix lines in place (a second
sequence, then a shift; server/model/llamacpp.py), and the model still completes sensibly from
the grown cache. Runs in its own model process, like the editor's.
"""

from __future__ import annotations

from pathlib import Path

from server.completion import Completer, CompletionSettings
from server.model.loader import load_runtime
from server.request import CompletionContext
from tests.conftest import TEST_MODEL

ABOVE = "".join(f"def scale_{i}(values):\n    return [v * {i} for v in values]\n\n\n" for i in range(40))
BODY = "def fib(n):\n    if n < 2:\n        return n\n    return "


def test_growing_a_prompt_reads_only_the_new_lines_and_still_completes(tmp_path: Path) -> None:
    runtime = load_runtime(TEST_MODEL, n_threads=1)
    try:
        completer = Completer(runtime, settings=CompletionSettings(prefix_tokens=512, suffix_tokens=64))
        ctx = CompletionContext(
            "file:///m.py", ABOVE + BODY, "\n\n\nprint(fib(10))\n", path=tmp_path / "m.py"
        )
        cold = completer.complete(ctx, grow=True)
        assert cold.text and "fib(n - 1)" in cold.text, cold.text
        small = cold.tokens["prompt"]
        steps = 0
        while completer.grow(ctx):
            steps += 1
            assert steps < 40
        full = completer.build_prompt(ctx)
        assert len(full.tokens) > small + 100
        grown = completer.complete(ctx, grow=True)
        # The grown cache holds the full prompt: only the last token is read again.
        assert grown.tokens["prompt"] == len(full.tokens)
        assert grown.tokens["reused"] >= len(full.tokens) - 1
        assert grown.text and "fib(n - 1)" in grown.text, grown.text
    finally:
        close = getattr(runtime, "close", None)
        if callable(close):
            close()
