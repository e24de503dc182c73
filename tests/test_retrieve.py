"""Retrieval: targeted definitions through imports, budgets, ablation and cache-stable ordering."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from context.budget import CHUNK_OVERHEAD_TOKENS, header_tokens
from context.index import Index
from context.retrieve import DEFAULT_SOURCES, SOURCES, Chunk, Retriever
from tests.context_helpers import count_tokens, open_shop

MAIN = "app/main.py"


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Path, Index]]:
    root, index = open_shop(tmp_path)
    yield root, index
    index.close()


def buffer_with(root: Path, line: int, new_line: str) -> tuple[str, int, int]:
    """app/main.py with one line replaced; the cursor at the end of that line."""
    lines = (root / MAIN).read_text().split("\n")
    lines[line] = new_line
    return "\n".join(lines), line, len(new_line)


def retrieve(
    index: Index, root: Path, text: str, line: int, column: int, budget: int = 400, sources=DEFAULT_SOURCES
) -> list[Chunk]:
    return Retriever(index, sources).retrieve(root / MAIN, text, line, column, budget, count_tokens).chunks


def texts(chunks: list[Chunk]) -> str:
    return "\n".join(c.text for c in chunks)


def test_obj_dot_shows_the_inferred_class_members(shop: tuple[Path, Index]) -> None:
    root, index = shop
    text, line, col = buffer_with(root, 13, "        cart.")
    chunks = retrieve(index, root, text, line, col)
    assert any(c.path == "shop/models.py" and "class Cart" in c.text for c in chunks)
    assert "def add(self, item: Item, quantity: int = 1) -> None" in texts(chunks)


def test_self_attribute_resolves_through_an_imported_base_class(shop: tuple[Path, Index]) -> None:
    root, index = shop
    text, line, col = buffer_with(root, 14, "        self.log_event")
    chunks = retrieve(index, root, text, line, col)
    method = [c for c in chunks if c.path == "shop/base.py" and "def log_event(" in c.text]
    assert method, "the base-class method must be shown"
    assert method[0].text.startswith("class Service:")
    assert "def log_event(self, event: str, **fields: object) -> None:" in method[0].text


def test_cursor_before_a_use_of_an_imported_alias_shows_its_signature(shop: tuple[Path, Index]) -> None:
    root, index = shop
    text, line, col = buffer_with(root, 16, "        return ")
    chunks = retrieve(index, root, text, line, col)
    assert "def apply_discount(amount: float, percent: float) -> float" in texts(chunks)
    assert all(c.path != MAIN for c in chunks), "the current file is the FIM prefix/suffix, never a chunk"


def test_buffer_imports_newer_than_the_index_are_used(shop: tuple[Path, Index]) -> None:
    root, index = shop
    text, line, col = buffer_with(root, 15, "        slug = slugify(owner)")
    text = text.replace('"""\n\n', '"""\n\nfrom shop.util.text import slugify\n', 1)
    line += 1
    chunks = retrieve(index, root, text, line, col)
    assert any(c.path == "shop/util/text.py" and "def slugify(value: str) -> str:" in c.text for c in chunks)


def test_code_point_columns_with_astral_characters(shop: tuple[Path, Index]) -> None:
    root, index = shop
    text, line, col = buffer_with(root, 13, '        cart.add(m.Item("🍵 tea", 3.5)); cart.')
    chunks = retrieve(index, root, text, line, col)
    assert "class Cart" in texts(chunks)


@pytest.mark.parametrize("budget", [0, 10, 25, 40, 60, 90, 150, 250, 400])
@pytest.mark.parametrize("sources", [DEFAULT_SOURCES, SOURCES])
def test_chunks_fit_the_budget_exactly(
    shop: tuple[Path, Index], budget: int, sources: tuple[str, ...]
) -> None:
    root, index = shop
    index.note_edit(root / "shop" / "pricing.py", 6)
    text, line, col = buffer_with(root, 16, "        return disc(cart.")
    result = Retriever(index, sources).retrieve(root / MAIN, text, line, col, budget, count_tokens)
    assert sum(count_tokens(c.text) + header_tokens(c.path, count_tokens) for c in result.chunks) <= budget
    assert sum(c.tokens for c in result.chunks) + CHUNK_OVERHEAD_TOKENS * len(result.chunks) <= budget
    assert result.used_tokens <= budget
    assert all(c.tokens == count_tokens(c.text) for c in result.chunks)
    if budget >= 150:
        assert result.chunks, "a reasonable budget must carry some context"


def test_same_input_same_chunks_from_fresh_retrievers(shop: tuple[Path, Index]) -> None:
    root, index = shop
    text, line, col = buffer_with(root, 16, "        return disc(cart.")
    first = retrieve(index, root, text, line, col, sources=SOURCES)
    second = retrieve(index, root, text, line, col, sources=SOURCES)
    assert first == second and first


def test_unchanged_inputs_return_the_previous_result(shop: tuple[Path, Index]) -> None:
    root, index = shop
    retriever = Retriever(index)
    text, line, col = buffer_with(root, 13, "        cart.")
    first = retriever.retrieve(root / MAIN, text, line, col, 400, count_tokens)
    again = retriever.retrieve(root / MAIN, text, line, col, 400, count_tokens)
    assert again.reused and again.chunks == first.chunks


def test_typing_keeps_the_chunk_order_and_new_chunks_go_last(shop: tuple[Path, Index]) -> None:
    root, index = shop
    retriever = Retriever(index, ("definitions", "recent"))
    text, line, col = buffer_with(root, 13, "        cart.a")
    first = retriever.retrieve(root / MAIN, text, line, col, 1000, count_tokens).chunks
    text, line, col = buffer_with(root, 13, "        cart.ad")
    second = retriever.retrieve(root / MAIN, text, line, col, 1000, count_tokens).chunks
    assert [c.path for c in second] == [c.path for c in first]
    index.note_edit(root / "web" / "util.js", 2)  # a region no definition chunk overlaps
    third = retriever.retrieve(root / MAIN, text, line, col, 1000, count_tokens).chunks
    assert third[: len(second)] == second, "kept chunks stay first: the model's prefix cache survives"
    assert len(third) == len(second) + 1
    assert third[-1].source == "recent" and third[-1].path == "web/util.js"


def test_sources_can_be_ablated(shop: tuple[Path, Index]) -> None:
    root, index = shop
    text, line, col = buffer_with(root, 16, "        return disc(cart.total(), 10) + len(t.slugify(slug))")
    similar = retrieve(index, root, text, line, col, sources=("similar",))
    assert similar and {c.source for c in similar} == {"similar"}
    assert retrieve(index, root, text, line, col, sources=("recent",)) == []  # nothing edited yet
    repomap = retrieve(index, root, text, line, col, sources=("repomap",))
    assert repomap and {c.source for c in repomap} == {"repomap"}
    with pytest.raises(ValueError, match="unknown retrieval sources"):
        Retriever(index, ("definitions", "telepathy"))


def test_recent_regions_of_other_files_are_shown(shop: tuple[Path, Index]) -> None:
    root, index = shop
    index.note_view(root / "shop" / "models.py", 27)
    index.note_edit(root / MAIN, 3)  # the current file: never a chunk
    text, line, col = buffer_with(root, 16, "        return ")
    chunks = retrieve(index, root, text, line, col, sources=("recent",))
    assert [c.path for c in chunks] == ["shop/models.py"]
    assert "def total" in chunks[0].text


def test_javascript_uses_reach_definitions_in_imported_files(shop: tuple[Path, Index]) -> None:
    root, index = shop
    text = (root / "web" / "app.js").read_text()
    lines = text.split("\n")
    line = next(i for i, s in enumerate(lines) if "return formatPrice" in s)
    chunks = (
        Retriever(index)
        .retrieve(root / "web" / "app.js", text, line, len(lines[line]), 300, count_tokens)
        .chunks
    )
    assert any(c.path == "web/util.js" and "function formatPrice(amount)" in c.text for c in chunks)


def test_jedi_infers_what_static_resolution_cannot(shop: tuple[Path, Index]) -> None:
    root, index = shop
    factory = 'from .models import Cart\n\n\ndef carts():\n    return [Cart("ann"), Cart("bob")]\n'
    (root / "shop" / "factory.py").write_text(factory)
    index.refresh()
    text = "from shop.factory import carts\n\n\ndef run():\n    for basket in carts():\n        basket."
    line, column = 5, len("        basket.")
    path = root / "app" / "flow.py"
    static = Retriever(index, ("definitions",)).retrieve(path, text, line, column, 300, count_tokens)
    assert "class Cart" not in texts(static.chunks)  # a loop variable: no assignment to read
    inferred = Retriever(index, ("definitions",), use_jedi=True).retrieve(
        path, text, line, column, 300, count_tokens
    )
    assert any(c.path == "shop/models.py" and c.text.startswith("class Cart:") for c in inferred.chunks)


def retrieve_at_end(index: Index, root: Path, function: str) -> list[Chunk]:
    """Retrieval with `function` appended to app/main.py and the cursor at the end of the buffer."""
    text = (root / MAIN).read_text() + "\n\n" + function
    lines = text.split("\n")
    return retrieve(index, root, text, len(lines) - 1, len(lines[-1]))


def test_an_imported_name_used_above_is_not_crowded_out_by_locals(shop: tuple[Path, Index]) -> None:
    """Many local variables near the cursor must not push the imported names out of the lookup."""
    root, index = shop
    locals_ = "\n".join(f"    v{i} = v{i - 1} + {i}" for i in range(1, 30))
    head = "def settle(price):\n    first = disc(price, 5)\n    v0 = first\n"
    chunks = retrieve_at_end(index, root, f"{head}{locals_}\n    # after discount\n    return ")
    assert "def apply_discount(amount: float, percent: float) -> float" in texts(chunks)


def test_members_the_file_uses_from_an_imported_module_are_listed(shop: tuple[Path, Index]) -> None:
    """`t.slugify(...)` far above the cursor: before the next `t.`, slugify's signature is shown."""
    root, index = shop
    filler = "\n".join(f"    step_{i} = {i}" for i in range(60))
    chunks = retrieve_at_end(
        index, root, f"def label(name):\n    first = t.slugify(name)\n{filler}\n    return "
    )
    assert any(c.path == "shop/util/text.py" and "def slugify(" in c.text for c in chunks)


def test_a_pending_import_outranks_names_used_above_under_a_tight_budget(shop: tuple[Path, Index]) -> None:
    """`disc` is imported and no longer used anywhere: it is what the cursor is about to use."""
    root, index = shop
    text, line, col = buffer_with(root, 16, "        return ")
    budget = 150  # ranked by its few other uses, it was left out here (Cart, Item and slugify fit)
    chunks = retrieve(index, root, text, line, col, budget=budget)
    assert sum(c.tokens + header_tokens(c.path, count_tokens) for c in chunks) <= budget
    assert "def apply_discount(amount: float, percent: float) -> float" in texts(chunks)


def test_a_pending_module_import_lists_the_module_members(shop: tuple[Path, Index]) -> None:
    root, index = shop
    lines = (root / MAIN).read_text().split("\n")
    del lines[15]  # the line using `shop.util.text.slugify`: only the unused `t` can reach text.py
    lines[15] = "        return "
    chunks = retrieve(index, root, "\n".join(lines), 15, len(lines[15]))
    assert any(c.path == "shop/util/text.py" and "def slugify(value: str) -> str" in c.text for c in chunks)


def test_pending_imports_are_the_imported_names_used_nowhere_else() -> None:
    from context.imports import ImportBinding
    from context.retrieve import _pending_imports

    text = (
        "from shop import Table, Cart, Item\n"
        "import shop.util as util\n"
        "rows = [TableRow(), self.Table, Cart()]\n"
        "# Item is mentioned in a comment, which counts as a use\n"
    )
    bindings = [ImportBinding(local, "shop", local, 0, 0) for local in ("Table", "Cart", "Item")]
    bindings.append(ImportBinding("util", "shop.util", None, 0, 1))
    assert _pending_imports("shop/view.py", text, bindings) == {"Table", "util"}
    assert _pending_imports("shop/__init__.py", text, bindings) == set(), "re-exports are not pending"


def test_class_fields_stand_in_for_a_missing_constructor() -> None:
    from context.retrieve import _class_fields

    enum_like = 'class Source(enum.Enum):\n    """Where a value came from. ..."""\n    CLI = 1\n    ENV = 2\n'
    assert _class_fields(enum_like) == ["    CLI = 1", "    ENV = 2"]
    record = (
        "class Point(NamedTuple):\n    x: float\n    y: float = 0.0\n"
        "    def norm(self) -> float:\n        n = 1\n"
    )
    assert _class_fields(record) == ["    x: float", "    y: float = 0.0"]
    methods_only = "class Tool:\n    def run(self) -> None:\n        done = True\n"
    assert _class_fields(methods_only) == [], "a method's locals are not fields"
