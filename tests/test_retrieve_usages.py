"""The usages source: how the rest of the repository uses the names the current file imports."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from context.index import Index
from context.retrieve import USAGE_NEAR_ABOVE, USAGE_REPEAT_BONUS, Chunk, Retriever, _use_of, _UseTally
from context.walk import WalkOptions
from tests.context_helpers import count_tokens

SENTINELS = Path(__file__).parent / "data" / "context" / "sentinels"
CURRENT = "pkg/setutils.py"


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[tuple[Path, Index]]:
    root = tmp_path / "sentinels"
    shutil.copytree(SENTINELS, root)
    index = Index.open(root, tmp_path / "index.sqlite", WalkOptions(use_git=False))
    index.refresh()
    yield root, index
    index.close()


def usages(root: Path, index: Index, text: str, line: int, column: int) -> list[Chunk]:
    result = Retriever(index, ("usages",)).retrieve(root / CURRENT, text, line, column, 400, count_tokens)
    assert {c.source for c in result.chunks} <= {"usages"}
    return result.chunks


def typed(text: str, line: int, new_line: str) -> tuple[str, int, int]:
    lines = text.split("\n")
    lines[line] = new_line
    return "\n".join(lines), line, len(new_line)


def test_uses_of_an_imported_name_elsewhere_are_shown_the_most_alike_nearest_the_cursor(
    repo: tuple[Path, Index],
) -> None:
    root, index = repo
    text, line, column = typed((root / CURRENT).read_text(), 4, "_MISSING = ")
    chunks = usages(root, index, text, line, column)
    shown = {c.path: c.text for c in chunks}
    assert shown == {
        "pkg/queueutils.py": '_REMOVED = make_sentinel(var_name="_REMOVED")\n',
        "pkg/cacheutils.py": '_MISSING = make_sentinel(var_name="_MISSING")\n',
    }, "imports, the definition, `__all__` and `registry.make_sentinel(...)` are not uses of the name"
    # The line that starts like the cursor's (`_MISSING = `) ranks first and sits last, next to it.
    assert chunks[-1].path == "pkg/cacheutils.py"
    assert chunks[-1].score > chunks[0].score


def test_the_current_files_own_uses_count_only_beyond_the_in_file_window(repo: tuple[Path, Index]) -> None:
    root, index = repo
    original = (root / CURRENT).read_text()
    text, line, column = typed(original, 4, "_MISSING = ")
    assert all(c.path != CURRENT for c in usages(root, index, text, line, column))
    # The same file grown by more than the window's reach: its first use is now far above.
    far = original + "\n" * (USAGE_NEAR_ABOVE + 10) + "_OTHER = \n"
    lines = far.split("\n")
    cursor = len(lines) - 2
    chunks = usages(root, index, far, cursor, len(lines[cursor]))
    own = [c for c in chunks if c.path == CURRENT]
    assert own and own[0].text == '_MISSING = make_sentinel(var_name="_MISSING")\n'


def test_a_name_being_typed_does_not_change_which_uses_are_shown(repo: tuple[Path, Index]) -> None:
    root, index = repo
    original = (root / CURRENT).read_text()
    before = usages(root, index, *typed(original, 4, "_MISSING = "))
    assert before
    for partial in ("_MISSING = m", "_MISSING = make_se"):
        assert usages(root, index, *typed(original, 4, partial)) == before, partial


def test_a_use_is_a_name_of_its_own() -> None:
    assert _use_of("x = make_sentinel(var_name='x')", "make_sentinel") == 4
    assert _use_of("m = registry.make_sentinel()", "make_sentinel") == -1
    assert _use_of("y = make_sentinel_factory()", "make_sentinel") == -1
    assert _use_of('__all__ = ["make_sentinel"]', "make_sentinel") == -1
    assert _use_of("x = registry.make_sentinel(make_sentinel)", "make_sentinel") == 27


def test_a_line_seen_again_in_the_same_place_is_not_a_repeat() -> None:
    tally = _UseTally()
    # `x = pair(first)` holds two of the file's imported names: it is considered once for each.
    tally.add("x = pair(first)", 0.5, "a.py", 3)
    tally.add("y = pair(first)", 0.4, "a.py", 9)
    tally.add("y = pair(first)", 0.5, "b.py", 2)  # now the best place: a.py:9 is still seen
    tally.add("x = pair(first)", 0.6, "a.py", 3)
    tally.add("y = pair(first)", 0.4, "a.py", 9)
    assert tally.score("x = pair(first)") == 0.6
    assert tally.score("y = pair(first)") == 0.5 + USAGE_REPEAT_BONUS, "two places, one repeat"
    assert tally.best(1) == [("x = pair(first)", 0.6, ("a.py", 3))]
