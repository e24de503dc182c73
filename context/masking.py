"""Evaluation cases from a repository's own code: grammar-based masks at several levels.

ExecRepoBench's idea (mask a span chosen by the syntax tree, ask the model to fill it) at six
levels: an `expression` inside a statement, the `line` from a token to its end, a whole simple
`statement`, the `block` under an if/for/while/with/try header, a `function` body, and the
`crossfile` level (the rest of a line starting at a name imported from another module of the
repository, CrossCodeEval style). Python only for now: the levels are defined on its grammar.

Sampling is seeded and reproducible, spread over files (round robin over shuffled files, at most
`per_file` cases per file). Nothing here runs a model: server/eval/ does.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import tree_sitter as ts

from context.syntax import ParseTimeout, parse

LEVELS: tuple[str, ...] = ("expression", "line", "statement", "block", "function", "crossfile")

# Single-line targets shorter than this are trivially guessable (`)`, `x`); longer than the max are
# mostly unguessable from a small model and cost generated tokens.
MIN_LINE_TARGET_CHARS = 6
MAX_LINE_TARGET_CHARS = 100
# Multi-line targets (block, function body): the completion's block mode writes at most 128
# tokens (CompletionSettings.max_tokens_block), roughly 400 characters of Python.
MIN_BLOCK_LINES = 2
MAX_BLOCK_LINES = 8
MAX_BLOCK_TARGET_CHARS = 400
# Parsing a pathological file is bounded (context/syntax.py explains why it can be slow).
PARSE_TIMEOUT_S = 5.0
# Cases per file at most, over all levels: keeps a sample spread over many modules.
DEFAULT_PER_FILE = 3

# Expressions worth masking: they compute something (a call, an operator, an index), unlike a
# lone identifier or literal that is either trivial or unguessable.
EXPRESSION_TYPES = frozenset(
    {
        "call",
        "attribute",
        "subscript",
        "binary_operator",
        "boolean_operator",
        "comparison_operator",
        "not_operator",
        "conditional_expression",
        "list_comprehension",
        "dictionary_comprehension",
        "set_comprehension",
        "generator_expression",
        "list",
        "tuple",
        "dictionary",
    }
)
# Simple statements that make a `statement` or `line` case (whole, on one line).
STATEMENT_TYPES = frozenset(
    {
        "expression_statement",
        "return_statement",
        "raise_statement",
        "assert_statement",
        "delete_statement",
        "global_statement",
        "nonlocal_statement",
    }
)
# Compound statements whose body makes a `block` case (the clauses own their bodies too).
BLOCK_PARENTS = frozenset(
    {
        "if_statement",
        "elif_clause",
        "else_clause",
        "for_statement",
        "while_statement",
        "with_statement",
        "try_statement",
        "except_clause",
        "finally_clause",
    }
)
# Bodies that hold nothing to predict.
TRIVIAL_BODIES = frozenset({"pass", "...", "raise NotImplementedError", "raise NotImplementedError()"})

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Mask:
    """One case: `text[start:end]` (code-point offsets) is hidden; the cursor is at `start`."""

    level: str
    path: str  # relative to the repository root, POSIX
    start: int
    end: int
    line: int  # 0-based cursor line
    column: int  # 0-based cursor column, code points
    target: str
    name: str = ""  # crossfile: the imported name the target starts with

    def buffer(self, text: str) -> str:
        """What the editor would hold: the file without the target (prefix + suffix)."""
        return text[: self.start] + text[self.end :]

    @property
    def key(self) -> str:
        """Stable identity across runs (for resuming and pairing)."""
        return f"{self.path}:{self.line + 1}:{self.column + 1}:{self.level}"


class _Source:
    """A file's text with byte -> code-point offset conversion (tree-sitter counts bytes)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.data = text.encode("utf-8")
        self.lines = text.split("\n")

    def offset(self, byte: int) -> int:
        return len(self.data[:byte].decode("utf-8", errors="replace"))

    def point(self, offset: int) -> tuple[int, int]:
        before = self.text[:offset]
        line = before.count("\n")
        return line, offset - (before.rfind("\n") + 1)


def _inside_string_or_comment(node: ts.Node) -> bool:
    parent: ts.Node | None = node
    while parent is not None:
        if parent.type in ("string", "comment", "concatenated_string"):
            return True
        parent = parent.parent
    return False


def _inside(node: ts.Node, types: frozenset[str] | set[str]) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.type in types:
            return True
        parent = parent.parent
    return False


def _ends_its_line(src: _Source, node: ts.Node) -> bool:
    row, col = node.end_point
    return src.data.split(b"\n")[row][col:].strip() in (b"", b";") if row < len(src.lines) else True


def _mask(src: _Source, level: str, path: str, start: int, end: int, name: str = "") -> Mask:
    line, column = src.point(start)
    return Mask(level, path, start, end, line, column, src.text[start:end], name)


def _node_mask(src: _Source, level: str, path: str, node: ts.Node) -> Mask:
    return _mask(src, level, path, src.offset(node.start_byte), src.offset(node.end_byte))


def _single_line_ok(target: str) -> bool:
    return (
        "\n" not in target
        and MIN_LINE_TARGET_CHARS <= len(target.strip()) <= MAX_LINE_TARGET_CHARS
        and IDENT.search(target) is not None
    )


def _walk(root: ts.Node) -> Iterable[ts.Node]:
    stack = [root]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(node.children))


def _expressions(src: _Source, path: str, tree: ts.Tree) -> list[Mask]:
    found = []
    for node in _walk(tree.root_node):
        if node.type not in EXPRESSION_TYPES or node.start_point[0] != node.end_point[0]:
            continue
        parent = node.parent
        # A whole expression statement is the `statement` level; a part of a larger masked
        # expression of the same kind would duplicate its parent.
        if (
            parent is None
            or parent.type in ("expression_statement", "decorator")
            or _inside_string_or_comment(node)
        ):
            continue
        if _inside(node, {"import_statement", "import_from_statement", "decorator"}):
            continue
        if parent.type in EXPRESSION_TYPES and parent.start_point[0] == parent.end_point[0]:
            continue  # keep the outermost single-line expression only
        mask = _node_mask(src, "expression", path, node)
        if _single_line_ok(mask.target):
            found.append(mask)
    return found


def _statements(src: _Source, path: str, tree: ts.Tree) -> list[ts.Node]:
    nodes = []
    for node in _walk(tree.root_node):
        if node.type not in STATEMENT_TYPES or node.start_point[0] != node.end_point[0]:
            continue
        if (
            node.type == "expression_statement"
            and node.named_children
            and node.named_children[0].type
            in (
                "string",
                "concatenated_string",
            )
        ):
            continue  # a docstring
        if node.parent is None or node.parent.type not in ("block", "module"):
            continue
        if node.parent.type == "block" and node.parent.start_point[0] == node.parent.parent.start_point[0]:  # type: ignore[union-attr]
            continue  # `if x: return y` on one line: the header shares the line
        if _ends_its_line(src, node):
            nodes.append(node)
    return nodes


def _statement_masks(src: _Source, path: str, tree: ts.Tree) -> list[Mask]:
    found = []
    for node in _statements(src, path, tree):
        mask = _node_mask(src, "statement", path, node)
        if _single_line_ok(mask.target):
            found.append(mask)
    return found


def _line_masks(src: _Source, path: str, tree: ts.Tree, seed: str) -> list[Mask]:
    """From a token inside a simple statement to the end of its line (the cursor mid-line)."""
    found = []
    for node in _statements(src, path, tree):
        leaves = [n for n in _walk(node) if n.child_count == 0 and not _inside_string_or_comment(n)]
        # Not the first token (that is the `statement` level) and not the last one or two: the
        # rest of the line must hold something to predict.
        choices = [
            leaf
            for leaf in leaves[1:]
            if _single_line_ok(src.text[src.offset(leaf.start_byte) : src.offset(node.end_byte)])
        ]
        if not choices:
            continue
        leaf = random.Random(f"{seed}:{path}:{node.start_point[0]}").choice(choices)
        found.append(_mask(src, "line", path, src.offset(leaf.start_byte), src.offset(node.end_byte)))
    return found


def _body_mask(src: _Source, level: str, path: str, block: ts.Node, header: ts.Node) -> Mask | None:
    statements = [c for c in block.named_children if c.type != "comment"]
    if not statements:
        return None
    first = statements[0]
    if (
        level == "function"
        and first.type == "expression_statement"
        and first.named_children
        and first.named_children[0].type == "string"
    ):
        statements = statements[1:]  # the docstring stays in the prompt: it says what to write
        if not statements:
            return None
        first = statements[0]
    if first.start_point[0] == header.start_point[0]:
        return None  # the body shares the header's line
    mask = _mask(src, level, path, src.offset(first.start_byte), src.offset(block.end_byte))
    lines = mask.target.count("\n") + 1
    min_lines = MIN_BLOCK_LINES if level == "block" else 1
    if not (min_lines <= lines <= MAX_BLOCK_LINES) or len(mask.target) > MAX_BLOCK_TARGET_CHARS:
        return None
    if mask.target.strip() in TRIVIAL_BODIES or IDENT.search(mask.target) is None:
        return None
    return mask


def _block_masks(src: _Source, path: str, tree: ts.Tree) -> list[Mask]:
    found = []
    for node in _walk(tree.root_node):
        if node.type not in BLOCK_PARENTS:
            continue
        body = node.child_by_field_name("body") or next(
            (c for c in node.named_children if c.type == "block"), None
        )
        if body is not None and body.type == "block":
            mask = _body_mask(src, "block", path, body, node)
            if mask is not None:
                found.append(mask)
    return found


def _function_masks(src: _Source, path: str, tree: ts.Tree) -> list[Mask]:
    found = []
    for node in _walk(tree.root_node):
        if node.type != "function_definition":
            continue
        body = node.child_by_field_name("body")
        if body is not None:
            mask = _body_mask(src, "function", path, body, node)
            if mask is not None:
                found.append(mask)
    return found


def _crossfile_masks(src: _Source, path: str, tree: ts.Tree, imported: Mapping[str, str]) -> list[Mask]:
    """The rest of a line that starts with a use of a name imported from another module."""
    found: list[Mask] = []
    for node in _walk(tree.root_node):
        if node.type != "identifier" or node.text is None:
            continue
        name = node.text.decode("utf-8", errors="replace")
        if name not in imported or _inside_string_or_comment(node):
            continue
        if _inside(node, {"import_statement", "import_from_statement", "decorator"}):
            continue
        parent = node.parent
        if (
            parent is not None
            and parent.type == "attribute"
            and parent.child_by_field_name("attribute") == node
        ):
            continue  # `x.name` is not the imported name
        if parent is not None and parent.type in ("function_definition", "class_definition", "parameters"):
            continue
        row = node.start_point[0]
        start = src.offset(node.start_byte)
        line_end = src.text.find("\n", start)
        end = len(src.text) if line_end < 0 else line_end
        mask = _mask(src, "crossfile", path, start, end, name)
        target = mask.target.rstrip()
        if len(target) <= len(name) + 1 or not _single_line_ok(target):
            continue
        mask = _mask(src, "crossfile", path, start, start + len(target), name)
        if found and found[-1].line == row:
            continue  # one case per line: the first use
        found.append(mask)
    return found


def masks_in_file(
    text: str,
    path: str,
    level: str,
    *,
    imported: Mapping[str, str] | None = None,
    seed: int | str = 0,
) -> list[Mask]:
    """Every candidate case of one level in one Python file, in file order.

    `imported` maps the file's local names bound by imports to the repository file that defines
    them (only names from other files count): the crossfile level needs it.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r} (known: {', '.join(LEVELS)})")
    src = _Source(text)
    try:
        tree = parse("python", src.data, timeout_s=PARSE_TIMEOUT_S)
    except ParseTimeout:
        return []
    if level == "expression":
        return _expressions(src, path, tree)
    if level == "line":
        return _line_masks(src, path, tree, str(seed))
    if level == "statement":
        return _statement_masks(src, path, tree)
    if level == "block":
        return _block_masks(src, path, tree)
    if level == "function":
        return _function_masks(src, path, tree)
    return _crossfile_masks(src, path, tree, imported or {})


def sample_masks(
    files: Sequence[str],
    read: Callable[[str], str | None],
    levels: Sequence[str],
    n: int,
    *,
    seed: int,
    per_file: int = DEFAULT_PER_FILE,
    imported: Callable[[str], Mapping[str, str]] | None = None,
    exclude: Iterable[str] = (),
) -> list[Mask]:
    """`n` cases spread evenly over `levels` and over files, the same for the same seed.

    Levels take turns; within a level, files take turns in a seeded order, each giving a seeded
    choice among its candidates; a file gives at most `per_file` cases in all. Masks whose `key`
    is in `exclude` are never chosen (a second, disjoint sample of the same repository).
    """
    excluded = set(exclude)
    rng = random.Random(seed)
    order = sorted(files)
    rng.shuffle(order)
    texts: dict[str, str | None] = {}
    used: dict[str, int] = {}
    chosen: list[Mask] = []
    chosen_spans: set[tuple[str, int, int]] = set()
    pools: dict[str, list[list[Mask]]] = {}

    def pool(level: str) -> list[list[Mask]]:
        if level not in pools:
            per_file_masks = []
            for rel in order:
                if rel not in texts:
                    texts[rel] = read(rel)
                text = texts[rel]
                if text is None:
                    continue
                names = imported(rel) if imported is not None and level == "crossfile" else None
                masks = [
                    m
                    for m in masks_in_file(text, rel, level, imported=names, seed=seed)
                    if m.key not in excluded
                ]
                random.Random(f"{seed}:{level}:{rel}").shuffle(masks)
                if masks:
                    per_file_masks.append(masks)
            pools[level] = per_file_masks
        return pools[level]

    active = list(levels)
    while len(chosen) < n and active:
        for level in list(active):
            if len(chosen) >= n:
                break
            taken = False
            for masks in pool(level):
                if not masks or used.get(masks[0].path, 0) >= per_file:
                    continue
                # Files take turns: rotate so the next pick of this level starts at the next file.
                mask = masks.pop()
                if any(p == mask.path and s < mask.end and mask.start < e for p, s, e in chosen_spans):
                    continue  # overlapping an already chosen case of the same file
                chosen.append(mask)
                chosen_spans.add((mask.path, mask.start, mask.end))
                used[mask.path] = used.get(mask.path, 0) + 1
                pools[level].append(pools[level].pop(pools[level].index(masks)))
                taken = True
                break
            if not taken:
                active.remove(level)
    return chosen
