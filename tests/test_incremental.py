"""Editor buffers re-extract only the statements an edit touched, with the same facts as a full pass."""

from __future__ import annotations

from pathlib import Path

from context.extract import FileFacts, extract
from context.incremental import BufferFacts, IncrementalTree
from context.syntax import parse

DATA = Path(__file__).parent / "data" / "context" / "shop"


def facts_key(facts: FileFacts) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    definitions = sorted(
        (d.name, d.kind, d.parent, d.start_line, d.end_line, d.signature, d.doc, d.snippet)
        for d in facts.definitions
    )
    imports = sorted((b.local or "", b.module or "", b.name or "", b.level, b.line) for b in facts.imports)
    return definitions, imports


def module_source(functions: int) -> str:
    body = "\n".join(
        f"def step_{i}(value):\n    '''Step {i}.'''\n    total = value + {i}\n    return total\n"
        for i in range(functions)
    )
    head = "import os\nfrom shop.models import Cart\n\nLIMIT = 3\n"
    return f"{head}\n{body}\n\nclass Runner:\n    def go(self):\n        return 1\n"


def test_an_edit_in_one_function_re_extracts_only_that_function() -> None:
    buffer = BufferFacts("python")
    source = module_source(40)
    buffer.update(source.encode())
    lines = source.split("\n")
    at = lines.index("def step_20(value):") + 2
    lines.insert(at, "    total = total * 2")
    lines.insert(2, "import sys")  # above everything: every later line moves down
    edited = "\n".join(lines)
    facts = buffer.update(edited.encode())
    assert buffer.extracted == 2  # the new import and the edited function
    assert buffer.reused >= 40
    assert facts_key(facts) == facts_key(extract("python", edited.encode(), windows=False, references=False))
    step_21 = next(d for d in facts.definitions if d.name == "step_21")
    assert edited.split("\n")[step_21.start_line] == "def step_21(value):"


def test_deleting_and_restoring_text_gives_the_full_pass_facts() -> None:
    buffer = BufferFacts("python")
    source = module_source(10)
    for text in (source, source.replace("LIMIT = 3\n", ""), source[: len(source) // 2], source):
        facts = buffer.update(text.encode())
        assert facts_key(facts) == facts_key(
            extract("python", text.encode(), windows=False, references=False)
        )


def test_a_changed_doc_comment_updates_the_function_it_documents() -> None:
    buffer = BufferFacts("javascript")
    before = "// Adds tax.\nfunction gross(net) {\n  return net * 1.2;\n}\n\nfunction other() {}\n"
    buffer.update(before.encode())
    after = before.replace("Adds tax.", "Adds VAT.")
    facts = buffer.update(after.encode())
    gross = next(d for d in facts.definitions if d.name == "gross")
    assert "Adds VAT." in gross.doc
    assert buffer.extracted == 1


def test_first_update_of_a_long_module_is_one_pass() -> None:
    """Many top-level statements: a per-statement query would be quadratic (minutes here)."""
    source = "\n".join(f"PADDING_{i} = {i}" for i in range(5000)) + "\ndef late():\n    pass\n"
    facts = BufferFacts("python").update(source.encode())
    assert len(facts.definitions) == 5001
    assert facts.definitions[-1].name == "late"


def test_a_real_file_edited_line_by_line_matches_a_full_pass() -> None:
    text = (DATA / "shop" / "models.py").read_text()
    buffer = BufferFacts("python")
    buffer.update(text.encode())
    lines = text.split("\n")
    for number in range(len(lines) - 1, 0, -3):
        if lines[number].startswith("    ") and lines[number].strip():
            lines.insert(
                number + 1, lines[number][: len(lines[number]) - len(lines[number].lstrip())] + "pass"
            )
            edited = "\n".join(lines)
            facts = buffer.update(edited.encode())
            full = extract("python", edited.encode(), windows=False, references=False)
            assert facts_key(facts) == facts_key(full)


def test_an_incremental_tree_equals_a_fresh_parse_and_never_changes_a_tree_it_returned() -> None:
    trees = IncrementalTree("python")
    before = module_source(200).encode()
    first = trees.parse(before)
    shape = str(first.root_node)
    assert trees.parse(before) is first  # the same text: no parse at all
    # A keystroke in the middle: `x` typed at the end of some line, then the line finished.
    at = before.index(b"\n", len(before) // 2)
    for typed in (b" x", b" x = (", b" x = (1,"):
        after = before[:at] + typed + before[at:]
        assert str(trees.parse(after).root_node) == str(parse("python", after).root_node)
    assert str(first.root_node) == shape
