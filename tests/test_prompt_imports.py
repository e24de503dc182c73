"""The file's imports above a prefix window that no longer reaches them (server/completion.py)."""

from __future__ import annotations

from pathlib import Path

from context.imports import import_header
from server.completion import Completer, CompletionSettings
from server.model.fake import FakeEngine
from server.model.runtime import Runtime
from server.request import CompletionContext

HEAD = (
    '"""Invoices.\n\nfrom the ledger import rules, read as prose.\n"""\n\n'
    "from __future__ import annotations\n\n"
    "import os\n"
    "from shop.tax import (\n    apply_tax,\n    rate_for,\n)\n"
    "from shop import ledger as lg\n\n"
)
FILLER = "".join(f"def helper_{i}(x):\n    return x + {i}\n\n\n" for i in range(150))


def _prompt(settings: CompletionSettings, above: str, grow: bool = False) -> str:
    completer = Completer(Runtime(FakeEngine(lambda prompt: "\n")), settings=settings)
    ctx = CompletionContext("file:///m.py", above + "def total(x):\n    return ", "\n", path=Path("m.py"))
    return completer.build_prompt(ctx, grow=grow).text


def test_the_header_is_the_module_level_imports_whole_without_future_or_prose() -> None:
    text = HEAD + "def f():\n    import json\n"
    assert import_header(text, 1024) == (
        "import os\nfrom shop.tax import (\n    apply_tax,\n    rate_for,\n)\nfrom shop import ledger as lg"
    )
    assert import_header(text, 20) == "import os"  # whole statements within the cap


def test_a_window_deep_in_a_long_file_gets_the_imports_above_it_within_the_same_budget() -> None:
    on = CompletionSettings(prefix_tokens=512, suffix_tokens=64, context_tokens=0)
    off = CompletionSettings(
        prefix_tokens=512, suffix_tokens=64, context_tokens=0, imports_above_window=False
    )
    deep = _prompt(on, HEAD + FILLER)
    assert (
        "from shop.tax import (\n    apply_tax,\n    rate_for,\n)\nfrom shop import ledger as lg\n\n" in deep
    )
    assert "__future__" not in deep and "def helper_149" in deep
    plain = _prompt(off, HEAD + FILLER)
    assert "apply_tax" not in plain
    # Paid out of the window: what precedes the middle stays within the prefix budget.
    counter = Runtime(FakeEngine(lambda prompt: "\n"))
    above = deep.split("<|fim_prefix|>")[1].split("<|fim_suffix|>")[0]
    assert len(counter.tokenize(above)) <= 512
    # A window that reaches the file's top shows its imports once, where they are.
    short = _prompt(on, HEAD + FILLER[:90])
    assert short.count("apply_tax") == 1 and short == _prompt(off, HEAD + FILLER[:90])
    # A cold (growing) prompt stays small: its window's last lines only.
    assert "apply_tax" not in _prompt(on, HEAD + FILLER, grow=True)
