"""Evaluation cases from a repository's own code: grammar-based masks at several levels.

ExecRepoBench's idea (mask a span chosen by the syntax tree, ask the model to fill it) at six
levels: an `expression` inside a statement, the `line` from a token to its end, a whole simple
`statement`, the `block` under an if/for/while/try header, a `function` body, and the `crossfile`
level (the rest of a line starting at a name imported from another file of the repository,
CrossCodeEval style).

The levels are defined once and read each language's node types from its `Grammar` below: every
language of context/syntax.py (Python, JavaScript, TypeScript/TSX, Go, Rust, Java, C, C++). In the
brace languages a body (block and function levels) is the statements inside `{ ... }`, from the
first one's start to the last one's end: the closing brace stays in the suffix. Python's cases are
the ones this module gave when it knew only Python (same masks, same order): samples of earlier
runs are compared by case key.

Sampling is seeded and reproducible, spread over files (round robin over shuffled files, at most
`per_file` cases per file). Nothing here runs a model: server/eval/ does.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import tree_sitter as ts

from context.syntax import ParseTimeout, language_for_path, parse

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

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Grammar:
    """What the masking levels need to know of one tree-sitter grammar: its node types by role."""

    # Expressions worth masking: they compute something (a call, an operator, an index), unlike a
    # lone identifier or literal that is either trivial or unguessable.
    expressions: frozenset[str]
    # Simple statements that make a `statement` or `line` case (whole, on one line).
    statements: frozenset[str]
    # Nodes whose children are statements: a simple statement counts only directly inside one.
    containers: frozenset[str]
    # The node types a body is (Python's indented `block`, a brace language's `{ ... }`).
    bodies: frozenset[str]
    # Compound statements whose body makes a `block` case: their `body` field, or else every body
    # among their children (an if's consequence, and Go's or Java's else block).
    block_parents: frozenset[str]
    # Function-like nodes whose `body` field makes a `function` case.
    functions: frozenset[str]
    # Strings and comments: nothing inside them is masked, not even a leaf of the `line` level.
    opaque: frozenset[str]
    comments: frozenset[str]
    # Imports and decorators/annotations: no expression or crossfile case inside them.
    skip_inside: frozenset[str]
    # (parent, field) where an identifier names a member or declares something: not a use.
    name_fields: frozenset[tuple[str, str]]
    # Parents every identifier child of which is declared there (a parameter list, a def's name).
    declaration_parents: frozenset[str]
    # A body whose whole (stripped) text matches holds nothing to predict.
    trivial: re.Pattern[str]
    # Parents whose expression child is the whole statement (that is the `statement` level).
    whole_statement: frozenset[str] = frozenset({"expression_statement"})
    # An expression statement made of one of these is a docstring or a directive ("use strict").
    string_statements: frozenset[str] = frozenset()
    # Name uses for the crossfile level.
    identifiers: frozenset[str] = frozenset({"identifier"})
    # False for Python: the header's colon opens an indented block that ends at its last statement.
    braces: bool = True
    # Python: a function body's leading string stays in the prompt (it says what to write).
    docstrings: bool = False
    # Go's tree puts a block's statements in a `statement_list` between the braces.
    statement_lists: frozenset[str] = frozenset()
    # Nodes a statement may sit in and still count (`export const x = ...`).
    wrappers: frozenset[str] = frozenset()
    # Rust: a block's last expression (no `;`, the block's value) is a statement too.
    tail_expressions: bool = False
    # A type's name is a use for the crossfile level only where the type stands for a value:
    # directly in one of `value_types` (`new Foo(...)`, `Foo { .. }`, Go's `pkg.Config{...}`), or
    # through `type_wrappers` (Go's `pkg.Config`, C++'s `ns::make(...)`).
    type_names: frozenset[str] = frozenset({"type_identifier"})
    type_wrappers: frozenset[str] = frozenset()
    value_types: frozenset[str] = frozenset()


def _alternatives(*patterns: str) -> re.Pattern[str]:
    return re.compile("|".join(patterns))


# A stub's message: a lone throw/panic saying so holds nothing to predict.
STUB_MESSAGE = r"(?i:.*(not[ _-]?implemented|unimplemented|unsupported|todo).*)"

PYTHON = Grammar(
    expressions=frozenset(
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
    ),
    statements=frozenset(
        {
            "expression_statement",
            "return_statement",
            "raise_statement",
            "assert_statement",
            "delete_statement",
            "global_statement",
            "nonlocal_statement",
        }
    ),
    containers=frozenset({"block", "module"}),
    bodies=frozenset({"block"}),
    block_parents=frozenset(
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
    ),
    functions=frozenset({"function_definition"}),
    opaque=frozenset({"string", "comment", "concatenated_string"}),
    comments=frozenset({"comment"}),
    skip_inside=frozenset({"import_statement", "import_from_statement", "decorator"}),
    whole_statement=frozenset({"expression_statement", "decorator"}),
    string_statements=frozenset({"string", "concatenated_string"}),
    name_fields=frozenset({("attribute", "attribute")}),
    declaration_parents=frozenset({"function_definition", "class_definition", "parameters"}),
    trivial=_alternatives(r"pass", r"\.\.\.", r"raise NotImplementedError(\(\))?"),
    braces=False,
    docstrings=True,
)

JAVASCRIPT = Grammar(
    expressions=frozenset(
        {
            "call_expression",
            "member_expression",
            "subscript_expression",
            "binary_expression",
            "unary_expression",
            "ternary_expression",
            "new_expression",
            "await_expression",
            "arrow_function",
            "array",
            "object",
        }
    ),
    statements=frozenset(
        {
            "expression_statement",
            "return_statement",
            "throw_statement",
            "lexical_declaration",
            "variable_declaration",
            "field_definition",
        }
    ),
    containers=frozenset({"statement_block", "program", "switch_case", "switch_default", "class_body"}),
    bodies=frozenset({"statement_block"}),
    block_parents=frozenset(
        {
            "if_statement",
            "else_clause",
            "for_statement",
            "for_in_statement",
            "while_statement",
            "do_statement",
            "try_statement",
            "catch_clause",
            "finally_clause",
        }
    ),
    functions=frozenset(
        {
            "function_declaration",
            "generator_function_declaration",
            "function_expression",
            "generator_function",
            "arrow_function",
            "method_definition",
        }
    ),
    opaque=frozenset({"string", "template_string", "regex", "comment", "jsx_text"}),
    comments=frozenset({"comment"}),
    skip_inside=frozenset({"import_statement", "export_clause", "decorator"}),
    string_statements=frozenset({"string"}),
    name_fields=frozenset(
        {
            ("variable_declarator", "name"),
            ("assignment_pattern", "left"),
            ("arrow_function", "parameter"),
            ("catch_clause", "parameter"),
            ("for_in_statement", "left"),
            ("required_parameter", "pattern"),
            ("optional_parameter", "pattern"),
        }
    ),
    declaration_parents=frozenset(
        {
            "function_declaration",
            "generator_function_declaration",
            "function_expression",
            "generator_function",
            "class_declaration",
            "class",
            "formal_parameters",
        }
    ),
    trivial=_alternatives(r"return;?", rf"throw new \w*Error\({STUB_MESSAGE}\);?"),
    wrappers=frozenset({"export_statement"}),
)

TYPESCRIPT = replace(
    JAVASCRIPT,
    expressions=JAVASCRIPT.expressions | {"as_expression", "satisfies_expression", "non_null_expression"},
    statements=JAVASCRIPT.statements | {"public_field_definition"},
    skip_inside=JAVASCRIPT.skip_inside | {"import_alias"},
)

GO = Grammar(
    expressions=frozenset(
        {
            "call_expression",
            "selector_expression",
            "index_expression",
            "slice_expression",
            "binary_expression",
            "unary_expression",
            "type_assertion_expression",
            "type_conversion_expression",
            "composite_literal",
            "func_literal",
        }
    ),
    statements=frozenset(
        {
            "expression_statement",
            "return_statement",
            "short_var_declaration",
            "assignment_statement",
            "var_declaration",
            "const_declaration",
            "go_statement",
            "defer_statement",
            "send_statement",
            "inc_statement",
            "dec_statement",
        }
    ),
    containers=frozenset({"statement_list", "source_file"}),
    bodies=frozenset({"block"}),
    block_parents=frozenset({"if_statement", "for_statement"}),
    functions=frozenset({"function_declaration", "method_declaration", "func_literal"}),
    opaque=frozenset({"interpreted_string_literal", "raw_string_literal", "rune_literal", "comment"}),
    comments=frozenset({"comment"}),
    skip_inside=frozenset({"import_declaration", "package_clause"}),
    name_fields=frozenset({("qualified_type", "name")}),
    declaration_parents=frozenset(
        {
            "function_declaration",
            "method_declaration",
            "parameter_declaration",
            "variadic_parameter_declaration",
            "var_spec",
            "const_spec",
        }
    ),
    # A package name is an `identifier` in an expression, a `package_identifier` in a type.
    type_names=frozenset({"type_identifier", "package_identifier"}),
    type_wrappers=frozenset({"qualified_type"}),
    value_types=frozenset({"composite_literal"}),
    trivial=_alternatives(r"return", rf"panic\({STUB_MESSAGE}\)"),
    statement_lists=frozenset({"statement_list"}),
)

RUST = Grammar(
    expressions=frozenset(
        {
            "call_expression",
            "field_expression",
            "index_expression",
            "binary_expression",
            "unary_expression",
            "reference_expression",
            "try_expression",
            "await_expression",
            "type_cast_expression",
            "macro_invocation",
            "struct_expression",
            "array_expression",
            "tuple_expression",
            "closure_expression",
        }
    ),
    statements=frozenset({"let_declaration", "expression_statement", "const_item", "static_item"}),
    containers=frozenset({"block", "source_file"}),
    bodies=frozenset({"block"}),
    block_parents=frozenset(
        {
            "if_expression",
            "else_clause",
            "for_expression",
            "while_expression",
            "loop_expression",
            "match_arm",
        }
    ),
    functions=frozenset({"function_item", "closure_expression"}),
    opaque=frozenset(
        {"string_literal", "raw_string_literal", "char_literal", "line_comment", "block_comment"}
    ),
    comments=frozenset({"line_comment", "block_comment"}),
    skip_inside=frozenset({"use_declaration", "extern_crate_declaration", "attribute_item"}),
    name_fields=frozenset(
        {
            ("scoped_identifier", "name"),
            ("let_declaration", "pattern"),
            ("parameter", "pattern"),
            ("const_item", "name"),
            ("static_item", "name"),
            ("function_item", "name"),
            ("for_expression", "pattern"),
        }
    ),
    declaration_parents=frozenset({"closure_parameters"}),
    value_types=frozenset({"struct_expression"}),
    trivial=_alternatives(
        r"todo!\(.*\);?", r"unimplemented!\(.*\);?", r"unreachable!\(\);?", rf"panic!\({STUB_MESSAGE}\);?"
    ),
    tail_expressions=True,
)

JAVA = Grammar(
    expressions=frozenset(
        {
            "method_invocation",
            "field_access",
            "array_access",
            "binary_expression",
            "unary_expression",
            "ternary_expression",
            "object_creation_expression",
            "array_creation_expression",
            "lambda_expression",
            "cast_expression",
            "instanceof_expression",
            "method_reference",
        }
    ),
    statements=frozenset(
        {
            "expression_statement",
            "return_statement",
            "throw_statement",
            "local_variable_declaration",
            "field_declaration",
            "assert_statement",
            "yield_statement",
        }
    ),
    containers=frozenset({"block", "constructor_body", "class_body", "switch_block_statement_group"}),
    bodies=frozenset({"block", "constructor_body"}),
    block_parents=frozenset(
        {
            "if_statement",
            "for_statement",
            "enhanced_for_statement",
            "while_statement",
            "do_statement",
            "try_statement",
            "try_with_resources_statement",
            "catch_clause",
            "finally_clause",
            "synchronized_statement",
        }
    ),
    functions=frozenset({"method_declaration", "constructor_declaration", "lambda_expression"}),
    opaque=frozenset({"string_literal", "character_literal", "line_comment", "block_comment"}),
    comments=frozenset({"line_comment", "block_comment"}),
    skip_inside=frozenset({"import_declaration", "package_declaration", "annotation", "marker_annotation"}),
    name_fields=frozenset(
        {
            ("method_invocation", "name"),
            ("field_access", "field"),
            ("variable_declarator", "name"),
            ("enhanced_for_statement", "name"),
            ("lambda_expression", "parameters"),
            ("method_reference", "name"),
        }
    ),
    declaration_parents=frozenset(
        {
            "class_declaration",
            "interface_declaration",
            "enum_declaration",
            "record_declaration",
            "method_declaration",
            "constructor_declaration",
            "formal_parameter",
            "catch_formal_parameter",
            "inferred_parameters",
        }
    ),
    value_types=frozenset({"object_creation_expression"}),
    trivial=_alternatives(
        r"return;", r"throw new UnsupportedOperationException\(.*\);", rf"throw new \w+\({STUB_MESSAGE}\);"
    ),
)

C = Grammar(
    expressions=frozenset(
        {
            "call_expression",
            "field_expression",
            "subscript_expression",
            "binary_expression",
            "unary_expression",
            "conditional_expression",
            "cast_expression",
            "pointer_expression",
            "sizeof_expression",
            "compound_literal_expression",
            "initializer_list",
        }
    ),
    statements=frozenset({"expression_statement", "return_statement", "declaration"}),
    containers=frozenset({"compound_statement", "translation_unit", "case_statement"}),
    bodies=frozenset({"compound_statement"}),
    block_parents=frozenset(
        {"if_statement", "else_clause", "for_statement", "while_statement", "do_statement"}
    ),
    functions=frozenset({"function_definition"}),
    opaque=frozenset(
        {"string_literal", "char_literal", "system_lib_string", "concatenated_string", "comment"}
    ),
    comments=frozenset({"comment"}),
    skip_inside=frozenset({"preproc_include"}),
    name_fields=frozenset(
        {
            ("declaration", "declarator"),
            ("init_declarator", "declarator"),
            ("function_declarator", "declarator"),
            ("pointer_declarator", "declarator"),
            ("array_declarator", "declarator"),
            ("parameter_declaration", "declarator"),
            ("preproc_def", "name"),
            ("preproc_function_def", "name"),
        }
    ),
    declaration_parents=frozenset(),
    trivial=_alternatives(r"return;", r"abort\(\);", r"assert\((0|false)\);"),
)

CPP = replace(
    C,
    expressions=C.expressions | {"new_expression", "lambda_expression"},
    statements=C.statements | {"field_declaration"},
    containers=C.containers | {"field_declaration_list", "declaration_list"},
    block_parents=C.block_parents | {"for_range_loop", "try_statement", "catch_clause"},
    functions=C.functions | {"lambda_expression"},
    opaque=C.opaque | {"raw_string_literal"},
    skip_inside=C.skip_inside | {"using_declaration", "alias_declaration"},
    name_fields=C.name_fields | {("qualified_identifier", "name")},
    declaration_parents=frozenset({"reference_declarator", "destructor_name"}),
    type_names=frozenset({"type_identifier", "namespace_identifier"}),
    type_wrappers=frozenset({"qualified_identifier"}),
    value_types=frozenset({"new_expression", "call_expression"}),
    trivial=_alternatives(C.trivial.pattern, rf"throw [\w:]+\({STUB_MESSAGE}\);"),
)

# Our language name (context/syntax.py) -> its grammar's node types; TSX is TypeScript's grammar
# with JSX, whose nodes play no role here.
GRAMMARS: dict[str, Grammar] = {
    "python": PYTHON,
    "javascript": JAVASCRIPT,
    "typescript": TYPESCRIPT,
    "tsx": TYPESCRIPT,
    "go": GO,
    "rust": RUST,
    "java": JAVA,
    "c": C,
    "cpp": CPP,
}


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
        self.byte_lines = self.data.split(b"\n")

    def offset(self, byte: int) -> int:
        return len(self.data[:byte].decode("utf-8", errors="replace"))

    def point(self, offset: int) -> tuple[int, int]:
        before = self.text[:offset]
        line = before.count("\n")
        return line, offset - (before.rfind("\n") + 1)


def _inside_string_or_comment(g: Grammar, node: ts.Node) -> bool:
    parent: ts.Node | None = node
    while parent is not None:
        if parent.type in g.opaque:
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
    return src.byte_lines[row][col:].strip() in (b"", b";") if row < len(src.lines) else True


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


def _braces(g: Grammar, container: ts.Node) -> ts.Node:
    """The node holding a container's braces (Go's statement_list sits inside its block)."""
    if container.type in g.statement_lists and container.parent is not None:
        return container.parent
    return container


def _body_statements(g: Grammar, body: ts.Node) -> list[ts.Node]:
    """A body's statements, comments left out."""
    found = []
    for child in body.named_children:
        found.extend(child.named_children if child.type in g.statement_lists else [child])
    return [c for c in found if c.type not in g.comments]


def _is_tail(g: Grammar, node: ts.Node) -> bool:
    """Rust: the block's last expression, its value (`Ok(x)` without `;`), is a statement."""
    parent = node.parent
    if not g.tail_expressions or parent is None or parent.type not in g.bodies or not node.is_named:
        return False
    if node.type in g.statements or node.type in g.comments or node.type.endswith(("_item", "_declaration")):
        return False
    after = node.next_named_sibling
    while after is not None and after.type in g.comments:
        after = after.next_named_sibling
    return after is None


def _is_statement(src: _Source, g: Grammar, node: ts.Node) -> bool:
    """A single-line simple statement, directly in a body or at top level, that ends its line."""
    if (node.type not in g.statements and not _is_tail(g, node)) or node.start_point[0] != node.end_point[0]:
        return False
    if (
        node.type == "expression_statement"
        and node.named_children
        and node.named_children[0].type in g.string_statements
    ):
        return False  # a docstring or a directive
    container = node.parent
    while container is not None and container.type in g.wrappers:
        container = container.parent
    if container is None or container.type not in g.containers:
        return False
    if not g.braces:
        if container.type == "block" and container.start_point[0] == container.parent.start_point[0]:  # type: ignore[union-attr]
            return False  # `if x: return y` on one line: the header shares the line
    else:
        braces = _braces(g, container)
        if braces.parent is not None and node.start_point[0] == braces.start_point[0]:
            return False  # `{ return y; }` or `case 1: go();`: the header shares the line
    return _ends_its_line(src, node)


def _expressions(src: _Source, g: Grammar, path: str, tree: ts.Tree) -> list[Mask]:
    found = []
    for node in _walk(tree.root_node):
        if node.type not in g.expressions or node.start_point[0] != node.end_point[0]:
            continue
        parent = node.parent
        # A whole expression statement is the `statement` level; a part of a larger masked
        # expression of the same kind would duplicate its parent.
        if parent is None or parent.type in g.whole_statement or _inside_string_or_comment(g, node):
            continue
        if _inside(node, g.skip_inside) or (_is_tail(g, node) and _is_statement(src, g, node)):
            continue  # an import's, or a Rust block's value that is the `statement` level
        if parent.type in g.expressions and parent.start_point[0] == parent.end_point[0]:
            continue  # keep the outermost single-line expression only
        mask = _node_mask(src, "expression", path, node)
        if _single_line_ok(mask.target):
            found.append(mask)
    return found


def _statements(src: _Source, g: Grammar, tree: ts.Tree) -> list[ts.Node]:
    return [node for node in _walk(tree.root_node) if _is_statement(src, g, node)]


def _statement_masks(src: _Source, g: Grammar, path: str, tree: ts.Tree) -> list[Mask]:
    found = []
    for node in _statements(src, g, tree):
        mask = _node_mask(src, "statement", path, node)
        if _single_line_ok(mask.target):
            found.append(mask)
    return found


def _line_masks(src: _Source, g: Grammar, path: str, tree: ts.Tree, seed: str) -> list[Mask]:
    """From a token inside a simple statement to the end of its line (the cursor mid-line)."""
    found = []
    for node in _statements(src, g, tree):
        leaves = [n for n in _walk(node) if n.child_count == 0 and not _inside_string_or_comment(g, n)]
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


def _body_mask(
    src: _Source, g: Grammar, level: str, path: str, body: ts.Node, header: ts.Node
) -> Mask | None:
    statements = _body_statements(g, body)
    if not statements:
        return None
    first = statements[0]
    if (
        g.docstrings
        and level == "function"
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
    if g.braces:
        last = statements[-1]
        if first.start_point[0] == body.start_point[0] or last.end_point[0] == body.end_point[0]:
            return None  # the body shares a line with its `{` or its `}`
        # The closing brace stays in the suffix, and so do the comments after the last statement.
        end = last.end_byte
    else:
        end = body.end_byte
    mask = _mask(src, level, path, src.offset(first.start_byte), src.offset(end))
    lines = mask.target.count("\n") + 1
    min_lines = MIN_BLOCK_LINES if level == "block" else 1
    if not (min_lines <= lines <= MAX_BLOCK_LINES) or len(mask.target) > MAX_BLOCK_TARGET_CHARS:
        return None
    if g.trivial.fullmatch(mask.target.strip()) or IDENT.search(mask.target) is None:
        return None
    return mask


def _bodies(g: Grammar, node: ts.Node) -> list[ts.Node]:
    """The bodies a compound statement owns: its `body` field, or else each body among its children."""
    body = node.child_by_field_name("body")
    candidates = [body] if body is not None else node.named_children
    return [c for c in candidates if c.type in g.bodies]


def _block_masks(src: _Source, g: Grammar, path: str, tree: ts.Tree) -> list[Mask]:
    found = []
    for node in _walk(tree.root_node):
        if node.type not in g.block_parents:
            continue
        for body in _bodies(g, node):
            mask = _body_mask(src, g, "block", path, body, node)
            if mask is not None:
                found.append(mask)
    return found


def _function_masks(src: _Source, g: Grammar, path: str, tree: ts.Tree) -> list[Mask]:
    found = []
    for node in _walk(tree.root_node):
        if node.type not in g.functions:
            continue
        body = node.child_by_field_name("body")
        if body is not None and body.type in g.bodies:
            mask = _body_mask(src, g, "function", path, body, node)
            if mask is not None:
                found.append(mask)
    return found


def _stands_for_value(g: Grammar, node: ts.Node) -> bool:
    parent = node.parent
    while parent is not None and parent.type in g.type_wrappers:
        parent = parent.parent
    return parent is not None and parent.type in g.value_types


def _is_name_use(g: Grammar, node: ts.Node) -> bool:
    """An identifier used (not declared, not a member's name) or a type name used as a value."""
    parent = node.parent
    if node.type not in g.identifiers and not (node.type in g.type_names and _stands_for_value(g, node)):
        return False
    if parent is None:
        return True
    if any(
        parent.type == kind and node in parent.children_by_field_name(field) for kind, field in g.name_fields
    ):
        return False  # `x.name` is not the imported name, nor is `let name = ...`
    return parent.type not in g.declaration_parents


def _crossfile_masks(
    src: _Source, g: Grammar, path: str, tree: ts.Tree, imported: Mapping[str, str]
) -> list[Mask]:
    """The rest of a line that starts with a use of a name imported from another file."""
    found: list[Mask] = []
    names = g.identifiers | g.type_names
    for node in _walk(tree.root_node):
        # The node's type first: `text` copies the node's bytes (the whole file, for the root).
        if node.type not in names or node.text is None:
            continue
        name = node.text.decode("utf-8", errors="replace")
        if name not in imported or not _is_name_use(g, node) or _inside_string_or_comment(g, node):
            continue
        if _inside(node, g.skip_inside):
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
    """Every candidate case of one level in one file, in file order; none for a language we lack.

    The language follows the path's extension (context/syntax.py). `imported` maps the file's
    local names bound by imports to the repository file that defines them (only names from other
    files count; the caller resolves imports, in whatever way the language has): the crossfile
    level needs it.
    """
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r} (known: {', '.join(LEVELS)})")
    language = language_for_path(path)
    if language is None:
        return []
    g = GRAMMARS[language]
    src = _Source(text)
    try:
        tree = parse(language, src.data, timeout_s=PARSE_TIMEOUT_S)
    except ParseTimeout:
        return []
    if level == "expression":
        return _expressions(src, g, path, tree)
    if level == "line":
        return _line_masks(src, g, path, tree, str(seed))
    if level == "statement":
        return _statement_masks(src, g, path, tree)
    if level == "block":
        return _block_masks(src, g, path, tree)
    if level == "function":
        return _function_masks(src, g, path, tree)
    return _crossfile_masks(src, g, path, tree, imported or {})


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
