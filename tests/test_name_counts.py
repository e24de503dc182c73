"""Name counts carried across edits equal fresh counts (retrieval weighs imports by them)."""

from __future__ import annotations

import random
from pathlib import Path

from context.name_counts import NameCounts, whole_name_count
from context.retrieve import Retriever, _pending_imports
from tests.context_helpers import count_tokens, open_shop

NAMES = ("Table", "Cart", "util", "aa", "Item", "slugify", "x")
PARAGRAPHS = (
    "from shop import Table, Cart, Item\nimport shop.util as util",
    "rows = [TableRow(), self.Table, Cart()]",
    "def f(aa):\n    return aaa + aa.Cart",
    "class Cartx:\n    util = util.slugify(Item)",
    "x = 1\nx.x = x",
    "# Table in a comment",
    "",
    "\n",
)
# Paragraphs without the names: they keep each name's uses few (so edits make and unmake uses) and
# each edit a small part of the buffer (so counts are carried, not recounted).
PADDING = ("\n".join(f"v{i} = {i}" for i in range(12)),) * 12


def fresh(text: str) -> tuple[dict[str, int], dict[str, int]]:
    return {n: text.count(n) for n in NAMES}, {n: whole_name_count(text, n, 2) for n in NAMES}


def carried(counts: NameCounts) -> tuple[dict[str, int], dict[str, int]]:
    return {n: counts.occurrences(n) for n in NAMES}, {n: counts.whole_uses(n) for n in NAMES}


def test_counts_carried_through_random_edits_equal_fresh_counts() -> None:
    rng = random.Random(7)
    choices = PARAGRAPHS + PADDING
    paragraphs = [rng.choice(choices) for _ in range(40)]
    counts = NameCounts()
    counts.update("\n\n".join(paragraphs))
    carried(counts)  # every name counted once in full; from here on they are carried
    for _ in range(600):
        at = rng.randrange(len(paragraphs))
        action = rng.random()
        if action < 0.4:
            paragraphs[at] = rng.choice(choices)
        elif action < 0.6:
            paragraphs.insert(at, rng.choice(choices))
        elif action < 0.8 and len(paragraphs) > 2:
            del paragraphs[at]
        else:  # a keystroke inside a paragraph, a newline included (splits or joins paragraphs)
            text = paragraphs[at]
            cut = rng.randrange(len(text) + 1)
            paragraphs[at] = text[:cut] + rng.choice(["a", "\n", ".", " ", "Table", "x"]) + text[cut:]
        text = "\n\n".join(paragraphs)
        counts.update(text)
        assert carried(counts) == fresh(text)


def test_a_name_used_twice_becomes_unused_when_a_use_is_deleted() -> None:
    counts = NameCounts()
    text = "from shop import Table\n\nrows = Table()\n\nmore = Table()\n" + "\n\npadding = 1" * 20
    counts.update(text)
    assert counts.whole_uses("Table") == 2
    counts.update(text.replace("more = Table()", "more = None"))
    assert counts.whole_uses("Table") == 2
    counts.update(text.replace("more = Table()", "more = None").replace("rows = Table()", "rows = []"))
    assert counts.whole_uses("Table") == 1


def test_retrieval_after_an_edit_equals_a_fresh_retrieval(tmp_path: Path) -> None:
    root, index = open_shop(tmp_path)
    try:
        path = root / "app" / "main.py"
        # Padded so that the edit below is carried, not recounted from scratch.
        text = path.read_text() + "\n\n\ndef pad():\n    pass" * 100
        retriever = Retriever(index)
        retriever.retrieve(path, text, 15, 0, 400, count_tokens)
        bindings = retriever._buffer_bindings(text, "python")
        assert "Cart" not in _pending_imports("app/main.py", text, bindings)
        # The only use of `Cart` deleted (its import stays): the import is pending now.
        edited = text.replace("cart = Cart(owner)", "cart = None")
        retriever.reset()  # the chunk order from scratch, as a fresh retriever's; the counts stay
        after = retriever.retrieve(path, edited, 15, 0, 400, count_tokens)
        assert "Cart" in _pending_imports(
            "app/main.py", edited, bindings, retriever._counts_of("app/main.py", edited)
        )
        assert after.chunks == Retriever(index).retrieve(path, edited, 15, 0, 400, count_tokens).chunks
        assert any("class Cart" in c.text for c in after.chunks), "a pending import is listed"
    finally:
        index.close()
