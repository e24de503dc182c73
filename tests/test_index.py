"""The workspace index: build, warm restart, incremental updates, buffers, watching, rebuilds."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from context.extract import MEMBER_MAX_CHARS, extract
from context.index import SCHEMA_VERSION, SYNC_BUFFER_CHARS, Index
from context.walk import WalkOptions
from tests.context_helpers import copy_shop, open_shop


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Path, Index]]:
    root, index = open_shop(tmp_path)
    yield root, index
    index.close()


def names(index: Index, path: str) -> set[str]:
    return {s.name for s in index.symbols(path)}


def test_build_indexes_every_language_and_definition(shop: tuple[Path, Index]) -> None:
    _, index = shop
    files = index.files()
    assert "shop/models.py" in files and "web/util.js" in files and "native/geometry.c" in files
    assert {"Cart", "Item", "TAX_RATE", "add", "total", "__init__"} <= names(index, "shop/models.py")
    assert {"formatPrice", "PriceTag"} <= names(index, "web/util.js")
    assert "distance" in names(index, "native/geometry.h")
    (add,) = index.symbols("shop/models.py", name="add")
    assert add.kind == "method" and add.parent == "Cart" and not add.top_level
    assert add.snippet.startswith("class Cart:\n    def add(self, item: Item, quantity: int = 1) -> None:")


def test_restart_reparses_nothing_and_touch_without_change_reparses_nothing(
    tmp_path: Path, shop: tuple[Path, Index]
) -> None:
    root, index = shop
    index.close()
    again = Index.open(root, tmp_path / "index.sqlite", WalkOptions(use_git=False))
    assert again.refresh().parsed == 0
    os.utime(root / "shop" / "models.py", ns=(1, 1))  # mtime changes, content does not
    stats = again.refresh()
    assert stats.parsed == 0 and stats.files == len(again.files())
    again.close()


def test_refresh_reparses_only_the_edited_file_and_drops_deleted_ones(shop: tuple[Path, Index]) -> None:
    root, index = shop
    with (root / "shop" / "pricing.py").open("a") as f:
        f.write("\n\ndef add_vat(amount: float) -> float:\n    return amount * 1.2\n")
    (root / "web" / "app.js").unlink()
    stats = index.refresh()
    assert stats.parsed == 1 and stats.removed == 1
    assert "add_vat" in names(index, "shop/pricing.py")
    assert "web/app.js" not in index.files()


def test_buffer_overrides_disk_until_dropped(shop: tuple[Path, Index]) -> None:
    root, index = shop
    path = root / "shop" / "pricing.py"
    index.set_buffer(path, path.read_text() + "\ndef refund(amount: float) -> float:\n    return -amount\n")
    assert "refund" in names(index, "shop/pricing.py")
    assert index.read_text("shop/pricing.py").endswith("return -amount\n")
    index.refresh()  # a refresh must not clobber the open buffer with disk content
    assert "refund" in names(index, "shop/pricing.py")
    index.drop_buffer(path)
    assert "refund" not in names(index, "shop/pricing.py")


def test_saving_a_buffer_refreshes_similarity_windows(shop: tuple[Path, Index]) -> None:
    root, index = shop
    path = root / "shop" / "pricing.py"
    text = path.read_text() + "\n\ndef zebra_quux(amount):\n    return zebra_total(amount) + quux_fee\n"
    index.set_buffer(path, text)  # keystrokes: definitions now, windows at save
    assert "zebra_quux" in names(index, "shop/pricing.py")
    path.write_text(text)  # the editor saves, then closes the buffer
    index.drop_buffer(path)
    windows = index.search_windows({"zebra_quux", "quux_fee"}, limit=3)
    assert windows and windows[0].path == "shop/pricing.py"


def test_windows_using_a_name_rank_those_sharing_the_context_first(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text(
        "def helper_thing(first, second):\n    return first\n\nvalue = helper_thing(alpha_one, omega)\n"
    )
    (root / "pkg" / "b.py").write_text("import os\n\nresult = helper_thing(beta_two, gamma_three)\n")
    (root / "pkg" / "c.py").write_text("unrelated_name = beta_two + gamma_three + delta_four\n")
    index = Index.open(root, tmp_path / "index.sqlite", WalkOptions(use_git=False))
    try:
        index.refresh()
        found = index.windows_using(["helper_thing"], {"gamma_three", "beta_two"}, limit=5)["helper_thing"]
        assert [w.path for w in found] == ["pkg/b.py", "pkg/a.py"], "the name filters, the context ranks"
        alone = index.windows_using(["helper_thing", "no_such_name"], set(), 5, exclude="pkg/a.py")
        assert {name: [w.path for w in ws] for name, ws in alone.items()} == {
            "helper_thing": ["pkg/b.py"],
            "no_such_name": [],
        }
    finally:
        index.close()


def test_large_buffer_is_indexed_once_typing_pauses(shop: tuple[Path, Index]) -> None:
    root, index = shop
    path = root / "shop" / "pricing.py"
    filler = "\n".join(f"PADDING_{i} = {i}" for i in range(SYNC_BUFFER_CHARS // 10))
    index.set_buffer(path, path.read_text() + filler + "\ndef late(): pass\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "late" not in names(index, "shop/pricing.py"):
        time.sleep(0.02)
    assert "late" in names(index, "shop/pricing.py")


def test_pathological_parse_is_abandoned_not_hung(shop: tuple[Path, Index]) -> None:
    root, index = shop
    # tree-sitter-python is quadratic on long runs of indented comments: minutes at this size.
    comments = "\n".join(f"    # note {i}" for i in range(12_000))
    (root / "shop" / "notes.py").write_text(f"def notes():\n{comments}\n    pass\n")
    start = time.monotonic()
    index.refresh()
    assert time.monotonic() - start < 30
    assert "shop/notes.py" in index.files()
    assert "Cart" in names(index, "shop/models.py")


def test_new_file_in_buffer_gets_a_module_name(shop: tuple[Path, Index]) -> None:
    root, index = shop
    index.set_buffer(root / "shop" / "shipping.py", "def ship(cart):\n    return cart\n")
    assert index.file_for_module("shop.shipping") == "shop/shipping.py"
    assert "ship" in names(index, "shop/shipping.py")


def test_watchdog_picks_up_changes_made_outside_the_editor(shop: tuple[Path, Index]) -> None:
    root, index = shop
    index.start_watching()
    try:
        (root / "shop" / "util" / "numbers.py").write_text(
            "def clamp(x, lo, hi):\n    return max(lo, min(x, hi))\n"
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "clamp" not in names(index, "shop/util/numbers.py"):
            time.sleep(0.05)
        assert "clamp" in names(index, "shop/util/numbers.py")
    finally:
        index.stop_watching()


def test_corrupt_database_is_rebuilt(tmp_path: Path) -> None:
    root = copy_shop(tmp_path)
    db = tmp_path / "broken.sqlite"
    db.write_bytes(b"this is not a database" * 100)
    index = Index.open(root, db, WalkOptions(use_git=False))
    assert index.refresh().files > 0
    assert "Cart" in names(index, "shop/models.py")
    index.close()


def test_old_schema_is_rebuilt(tmp_path: Path, shop: tuple[Path, Index]) -> None:
    root, index = shop
    index.close()
    with sqlite3.connect(tmp_path / "index.sqlite") as conn:
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION - 1),))
    reopened = Index.open(root, tmp_path / "index.sqlite", WalkOptions(use_git=False))
    assert reopened.files() == []  # nothing kept from the old layout
    assert reopened.refresh().parsed > 0
    reopened.close()


def test_ignored_and_vendored_files_are_skipped(tmp_path: Path) -> None:
    root = copy_shop(tmp_path)
    (root / "node_modules" / "lib").mkdir(parents=True)
    (root / "node_modules" / "lib" / "index.js").write_text("function vendored() {}\n")
    (root / "generated").mkdir()
    (root / "generated" / "api.py").write_text("def generated(): pass\n")
    (root / ".gitignore").write_text("generated/\n")
    (root / "shop" / "blob.py").write_bytes(b"\x00\x01binary")
    index = Index.open(root, tmp_path / "i.sqlite", WalkOptions(use_git=False))
    index.refresh()
    files = index.files()
    assert not any(f.startswith(("node_modules/", "generated/")) for f in files)
    assert "shop/blob.py" not in files
    index.close()


def test_index_is_usable_from_two_threads(shop: tuple[Path, Index]) -> None:
    root, index = shop
    errors: list[BaseException] = []
    path = root / "shop" / "pricing.py"
    base = path.read_text()

    def writer() -> None:
        try:
            for i in range(30):
                index.set_buffer(path, base + f"\ndef f{i}():\n    pass\n")
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(60):
                index.symbols("shop/models.py")
                index.bindings("app/main.py")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert "f29" in names(index, "shop/pricing.py")


@pytest.mark.parametrize(
    ("language", "source", "expected"),
    [
        ("python", "class A:\n    def m(self): pass\ndef f(): pass\n", {"A", "m", "f"}),
        ("javascript", "class A { m() {} }\nfunction f() {}\nconst g = () => 1;\n", {"A", "m", "f", "g"}),
        (
            "typescript",
            "interface I { x: number }\nclass A { m(): void {} }\nfunction f(): void {}\n",
            {"I", "A", "m", "f"},
        ),
        ("tsx", "function C(): JSX.Element { return <div/>; }\n", {"C"}),
        ("go", "package p\ntype T struct{}\nfunc (t T) M() {}\nfunc F() {}\n", {"T", "M", "F"}),
        ("rust", "struct S;\nimpl S { fn m(&self) {} }\nfn f() {}\n", {"S", "m", "f"}),
        ("java", "class A { void m() {} }\n", {"A", "m"}),
        ("c", "struct P { int x; };\nint f(int a) { return a; }\n#define N 3\n", {"P", "f", "N"}),
        ("cpp", "class A { public: void m(); };\nvoid A::m() {}\nint f() { return 1; }\n", {"A", "m", "f"}),
    ],
)
def test_each_language_yields_definitions(language: str, source: str, expected: set[str]) -> None:
    facts = extract(language, source.encode())
    assert expected <= {d.name for d in facts.definitions}


def test_long_python_function_is_shown_as_signature_and_docstring() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(30))
    source = f'def long(a, b):\n    """Explain long."""\n{body}\n    return a\n'
    (definition,) = extract("python", source.encode()).definitions
    assert definition.snippet == 'def long(a, b):\n    """Explain long."""\n    ...\n'


def test_class_summary_lists_members_on_one_line_cut_between_parameters() -> None:
    params = ",\n".join(f"        option_{i}: int = {i}" for i in range(12))
    methods = "\n".join(f"    def m{i}(self):\n        return {i}\n" for i in range(8))
    init = f"    def __init__(\n        self,\n{params},\n    ) -> None:\n        pass\n"
    source = f'class Big:\n    """Many options."""\n\n{init}\n{methods}'
    (cls,) = [d for d in extract("python", source.encode()).definitions if d.name == "Big"]
    init = next(line for line in cls.snippet.split("\n") if "__init__" in line)
    # Joined onto one line without the formatter's padding, cut after a whole parameter, the
    # return annotation kept: never a name cut in half.
    assert init.startswith("    def __init__(self, option_0: int = 0, option_1: int = 1,")
    assert init.endswith(", ...) -> None: ...")
    assert "( " not in init and len(init) <= 4 + MEMBER_MAX_CHARS + 4
