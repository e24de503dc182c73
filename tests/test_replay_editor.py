"""The replay's editor model: VS Code's auto-closing brackets and quotes, the user typing over them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from bench.replay.corpus import Region, RegionSpec
from bench.replay.editor import Editor, closing_positions
from bench.replay.engine import User

TS = "if (index < 0) {\n    throw new RangeError('é');\n  }\n  // it's (done\n  return f(a);"


def play(target: str, autoclose: bool = True, suffix: str = "\n}\n") -> tuple[str, list[str], list[str]]:
    """Type `target` before `suffix` key by key: the document at the end, each key's kind, and the
    document after each key with the cursor as `|`."""
    editor = Editor(target, "//", autoclose)
    text, cursor, i = suffix, 0, 0
    kinds, seen = [], []
    while i < len(target):
        key = editor.key(i, text[cursor:])
        text = text[:cursor] + key.insert + text[cursor:]
        cursor += key.advance
        i += key.consumed
        kinds.append(key.kind)
        seen.append(text[:cursor] + "|" + text[cursor:])
    assert not editor.leftover()
    return text, kinds, seen


def test_pairs_are_found_in_code_only() -> None:
    pairs = closing_positions(TS, "//")
    assert TS[3] == "(" and pairs[3] == TS.index(")")
    assert TS[pairs[TS.index("'")]] == "'"  # the string's own quotes
    assert TS.index("(done") not in pairs  # in a comment: not code
    assert TS.index("'s") not in pairs  # an apostrophe in a comment is no string


def test_the_document_is_the_region_in_the_end_whatever_the_editor_put_there() -> None:
    for autoclose in (True, False):
        text, _, _ = play(TS, autoclose)
        assert text == TS + "\n}\n"


def test_an_opener_brings_its_closer_and_the_user_types_over_it() -> None:
    _, kinds, seen = play(TS)
    assert "if (|)\n}\n" in seen
    assert "if (index < 0|)\n}\n" in seen
    assert kinds.count("overtype") == 4  # `)` twice, `'` once, `)` of f(a)


def test_enter_between_braces_puts_the_closer_on_a_line_below() -> None:
    _, kinds, seen = play(TS)
    assert "if (index < 0) {\n    |\n  }\n}\n" in seen
    # At the block's end the user steps over the closer line (arrow keys), not types it.
    assert kinds.count("move") == 1
    assert any(s.startswith("if (index < 0) {\n    throw new RangeError('é');\n  }|") for s in seen)


def test_no_closer_in_a_comment_or_after_a_word() -> None:
    _, _, seen = play(TS)
    assert any(s.endswith("// it's (|\n}\n") for s in seen)
    assert any(s.endswith("it'|\n}\n") for s in seen)


def test_plain_typing_inserts_each_character() -> None:
    _, kinds, seen = play(TS, autoclose=False)
    assert set(kinds) == {"key", "enter"}
    assert "if (|\n}\n" in seen


def test_a_suggestion_is_taken_only_up_to_the_closer_the_editor_put() -> None:
    editor = Editor("f(a, b);", "//", True)
    editor.key(0, "")
    editor.key(1, "")  # `(` and its `)`
    assert editor.limit(2) == len("f(a, b")
    assert Editor("f(a, b);", "//", False).limit(2) == len("f(a, b);")


def test_a_suggestion_that_replaces_the_closer_is_taken_through_it() -> None:
    editor = Editor("f(a).g();", "//", True)
    editor.key(0, "")
    editor.key(1, "")  # `(` and its `)`: the cursor before the `)`
    assert editor.limit(2) == len("f(a")  # the region offset of the `)` the editor put
    assert editor.limit(2, through=1) == len("f(a).g();")  # a suggestion that writes the `)` itself
    editor.typed_over(1)
    assert not editor.leftover()


class _ReplacingDriver:
    """Shows `a).g();` in place of the `)` once the editor has closed `f(`."""

    label = "fake"

    def __init__(self) -> None:
        self.user: Any = None
        self.changes: list[tuple[int, str, int]] = []

    async def start(self, workspace: Path) -> None: ...

    async def open(self, path: Path, text: str, version: int, cursor: int) -> None:
        self.user.show(version, "nothing to take", None)

    def change(self, version: int, text: str, cursor: int, at: int, insert: str, removed: int = 0) -> None:
        self.changes.append((at, insert, removed))
        if text[:cursor].endswith("f(") and text[cursor:].startswith(")"):
            self.user.show(version, "a).g();", None, 1)

    async def accepted(self, token: Any, take: Any) -> None: ...

    async def close(self, path: Path) -> None: ...


def test_the_replayed_user_takes_a_suggestion_through_the_closer_it_replaces(tmp_path: Path) -> None:
    source = "function h() {\n  f(a).g();\n}\n"
    start = source.index("f(")
    path = tmp_path / "m.ts"
    spec = RegionSpec("npm:x@1.0.0", ".", "m.ts", "h")
    region = Region(spec, path, source, start, "f(a).g();")
    driver = _ReplacingDriver()
    user = User(driver, autoclose=True)  # type: ignore[arg-type]
    driver.user = user
    asyncio.run(user.type_region(region, source[:start] + source[start + len(region.text) :]))
    assert user.text == source  # one `)`, not two
    assert [(a.kind, a.chars) for a in user.log.accepts] == [("full", len("a).g();"))]
    assert (start + 2, "a).g();", 1) in driver.changes  # the `)` is in the replaced range
