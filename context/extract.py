"""Facts of one source file: definitions, imports, references and similarity windows.

A pure function of (path, language, bytes), run by the indexer for each changed file. Definitions
and references come from the tags queries in `context/queries/<lang>-tags.scm`; each definition
carries the compact form shown to the model (signature + docstring, or the whole body when short).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

import tree_sitter as ts

from context.imports import ImportBinding, python_bindings
from context.syntax import code_before_comment, get_language, parse

# A definition at most this many lines long is shown whole: its body is cheaper than a summary.
SHORT_BODY_LINES = 12
# Module-level assignments longer than this are cut (long literal tables add tokens, not meaning).
CONSTANT_MAX_LINES = 6
# Docstrings/comments beyond this are cut: the first lines carry the contract.
DOC_MAX_LINES = 6
# A class summary lists members up to this many lines (Django's Model has 80+ methods).
CLASS_SUMMARY_MAX_LINES = 24
# A member's signature in a class summary is joined onto one line and cut at this length.
MEMBER_MAX_CHARS = 120
# Dunder methods that are part of a class's public contract (how to build and call it).
PUBLIC_DUNDERS = frozenset({"__init__", "__call__", "__new__", "__enter__", "__iter__", "__getitem__"})
# A class summary keeps only the head of the class docstring: members matter more.
CLASS_DOC_MAX_LINES = 3
# Signatures can span lines (long parameter lists) but not forever.
SIGNATURE_MAX_LINES = 8
# A file whose parse takes longer than this hits a grammar pathology: indexed without facts.
PARSE_TIMEOUT_S = 2.0
# Similarity windows: RepoCoder-style fixed line windows with half overlap.
WINDOW_LINES = 20
WINDOW_STRIDE = 10
# A window with fewer distinct identifiers than this is blank lines or braces: not worth a row.
MIN_WINDOW_IDENTS = 4

IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Keywords and ubiquitous names carry no similarity signal.
STOP_IDENTS = frozenset(
    [
        "self",
        "cls",
        "def",
        "return",
        "if",
        "else",
        "elif",
        "for",
        "while",
        "in",
        "not",
        "and",
        "or",
        "is",
        "None",
        "True",
        "False",
        "import",
        "from",
        "as",
        "class",
        "pass",
        "try",
        "except",
        "finally",
        "raise",
        "with",
        "yield",
        "lambda",
        "async",
        "await",
        "global",
        "nonlocal",
        "del",
        "assert",
        "break",
        "continue",
        "const",
        "let",
        "var",
        "function",
        "new",
        "this",
        "null",
        "undefined",
        "true",
        "false",
        "func",
        "package",
        "type",
        "struct",
        "fn",
        "pub",
        "mut",
        "impl",
        "use",
        "let",
        "match",
        "int",
        "char",
        "void",
        "static",
        "public",
        "private",
        "protected",
        "final",
    ]
)

# When two patterns capture the same name node, the more specific kind wins.
KIND_PRECEDENCE = {"method": 0, "function": 1, "class": 2, "constant": 3}

# Node types that open a local scope: definitions nested inside them are not workspace symbols.
FUNCTION_NODES = frozenset(
    {
        "function_definition",
        "function_declaration",
        "method_definition",
        "method_declaration",
        "arrow_function",
        "function_expression",
        "function_item",
        "constructor_declaration",
        "generator_function_declaration",
    }
)
# Ancestors that name the owner of a method.
OWNER_NODES = frozenset(
    {
        "class_definition",
        "class_declaration",
        "abstract_class_declaration",
        "interface_declaration",
        "class_specifier",
        "struct_specifier",
        "impl_item",
        "trait_item",
        "enum_declaration",
        "record_declaration",
    }
)


@dataclass(frozen=True)
class Definition:
    name: str
    kind: str  # function | class | method | constant
    parent: str | None  # owning class for methods
    start_line: int  # 0-based, inclusive (decorators included)
    end_line: int  # 0-based, inclusive
    signature: str
    doc: str
    snippet: str  # the compact form shown to the model
    top_level: bool


@dataclass
class FileFacts:
    definitions: list[Definition] = field(default_factory=list)
    imports: list[ImportBinding] = field(default_factory=list)
    references: Counter[str] = field(default_factory=Counter)
    # (start_line, end_line inclusive, space-joined distinct identifiers)
    windows: list[tuple[int, int, str]] = field(default_factory=list)
    lines: int = 0


@cache
def tags_query(language: str, references: bool = True) -> ts.Query:
    """The compiled tags query of a language (TSX shares TypeScript's).

    Without `references`, the reference patterns are left out: calls are the most numerous
    matches, and an editor buffer's re-index does not use them.
    """
    name = "typescript" if language == "tsx" else language
    source = resources.files("context.queries").joinpath(f"{name}-tags.scm").read_text("utf-8")
    query = ts.Query(get_language(language), source)
    if references:
        return query
    raw = source.encode("utf-8")
    patterns = [
        raw[query.start_byte_for_pattern(i) : query.end_byte_for_pattern(i)]
        for i in range(query.pattern_count)
    ]
    kept = b"\n".join(p for p in patterns if b"@name.reference." not in p)
    return ts.Query(get_language(language), kept.decode("utf-8"))


def extract(language: str, source: bytes, *, windows: bool = True, references: bool = True) -> FileFacts:
    """Parse `source` and collect everything the index stores about it.

    `windows` and `references` feed only the similar-code source and the repo map; editor buffers
    skip them (they are refreshed when the buffer is saved) to keep a keystroke's re-index cheap.
    """
    tree = parse(language, source, timeout_s=PARSE_TIMEOUT_S)
    facts = FileFacts(lines=source.count(b"\n") + 1)
    collect(language, source, tree.root_node, facts, references=references)
    if windows:
        facts.windows = _windows(source)
    return facts


def collect(
    language: str,
    source: bytes,
    node: ts.Node,
    facts: FileFacts,
    *,
    references: bool,
    byte_range: tuple[int, int] | None = None,
) -> None:
    """Add the definitions, imports (and references) found under `node` to `facts`.

    With `byte_range`, only what lies within those bytes of the source.
    """
    chosen: dict[int, tuple[str, ts.Node, ts.Node]] = {}
    cursor = ts.QueryCursor(tags_query(language, references))
    low, high = byte_range if byte_range is not None else (0, len(source))
    if byte_range is not None:
        cursor.set_byte_range(low, high)
    for _, captures in cursor.matches(node):
        for capture, all_nodes in captures.items():
            # A pattern anchored at the root (module-level constants) intersects every range:
            # keep only the captures inside it.
            nodes = [n for n in all_nodes if low <= n.start_byte < high]
            if capture.startswith("name.definition."):
                kind = capture.rsplit(".", 1)[1]
                outer = captures.get("definition." + kind)
                for name_node in nodes:
                    def_node = outer[0] if outer else name_node.parent or name_node
                    previous = chosen.get(name_node.start_byte)
                    if previous is None or KIND_PRECEDENCE[kind] < KIND_PRECEDENCE[previous[0]]:
                        chosen[name_node.start_byte] = (kind, name_node, def_node)
            elif references and capture.startswith("name.reference."):
                for ref in nodes:
                    # Slices of `source`: node.text would go through the parse's read callback.
                    facts.references[source[ref.start_byte : ref.end_byte].decode("utf-8", "replace")] += 1
            elif capture == "import.statement" and language == "python":
                for statement in nodes:
                    facts.imports.extend(python_bindings(statement, source))
            elif capture == "import.source":
                for source_node in nodes:
                    raw = _node_text(source, source_node).strip("\"'<>")
                    facts.imports.append(ImportBinding(None, raw, None, 0, source_node.start_point.row))
    for _, (kind, name_node, def_node) in sorted(chosen.items()):
        if _is_local(def_node):
            continue
        definition = _definition(language, source, kind, name_node, def_node)
        if definition is not None:
            facts.definitions.append(definition)


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 4].rstrip() + " ..."


_OPEN_SPACE_RE = re.compile(r"([(\[{])\s+")
_CLOSE_SPACE_RE = re.compile(r",?\s+([)\]}])")


def one_line(signature: str, limit: int = MEMBER_MAX_CHARS) -> str:
    """A signature joined onto one line, cut at a parameter boundary when longer than `limit`.

    `def f(\n    self,\n    a: int,\n) -> X:` becomes `def f(self, a: int) -> X:`; a long one
    becomes `def f(self, a: int, ...) -> X:`: never a name cut in half, the return type kept.
    """
    flat = " ".join(" ".join(code_before_comment(line, "#") for line in signature.split("\n")).split())
    text = _CLOSE_SPACE_RE.sub(r"\1", _OPEN_SPACE_RE.sub(r"\1", flat))
    if len(text) <= limit:
        return text
    open_at = text.find("(")
    if open_at < 0:
        return shorten(text, limit)
    depth, commas, close = 0, [], -1
    for i in range(open_at, len(text)):
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                close = i
                break
        elif ch == "," and depth == 1:
            commas.append(i)
    if close < 0:
        return shorten(text, limit)
    tail = shorten(text[close + 1 :], max(limit // 3, 8))
    fitting = [c for c in commas if c + len(", ...)") + len(tail) <= limit]
    head = text[: fitting[-1]] + ", ...)" if fitting else text[: open_at + 1] + "...)"
    return head + tail


def identifiers(text: str) -> set[str]:
    """Distinct meaningful identifiers of a text (the similarity vocabulary)."""
    # Dedupe first: the filter then runs over distinct names only (windows repeat names a lot).
    return {m for m in set(IDENT_RE.findall(text)) - STOP_IDENTS if len(m) > 1}


def _windows(source: bytes) -> list[tuple[int, int, str]]:
    lines = source.decode("utf-8", "replace").split("\n")
    # Identifiers per stride block, computed once: each window is the union of two blocks.
    blocks = [
        identifiers("\n".join(lines[i : i + WINDOW_STRIDE])) for i in range(0, len(lines), WINDOW_STRIDE)
    ]
    per_window = WINDOW_LINES // WINDOW_STRIDE
    out: list[tuple[int, int, str]] = []
    for b in range(max(len(blocks) - per_window + 1, 1)):
        start = b * WINDOW_STRIDE
        end = min(start + WINDOW_LINES, len(lines)) - 1
        idents = set().union(*blocks[b : b + per_window])
        if len(idents) >= MIN_WINDOW_IDENTS:
            out.append((start, end, " ".join(sorted(idents))))
    return out


def _is_local(node: ts.Node) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.type in FUNCTION_NODES:
            return True
        parent = parent.parent
    return False


def _owner(node: ts.Node, source: bytes) -> str | None:
    if node.type == "method_declaration":  # Go: the receiver names the owner
        receiver = node.child_by_field_name("receiver")
        if receiver is not None:
            names = IDENT_RE.findall(_node_text(source, receiver))
            return names[-1] if names else None
    parent = node.parent
    while parent is not None:
        if parent.type in OWNER_NODES:
            name = parent.child_by_field_name("name") or parent.child_by_field_name("type")
            return _node_text(source, name) if name is not None else None
        parent = parent.parent
    return None


def _node_text(source: bytes, node: ts.Node) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _definition(
    language: str, source: bytes, kind: str, name_node: ts.Node, node: ts.Node
) -> Definition | None:
    name = _node_text(source, name_node)
    if not name:
        return None
    outer = node.parent if node.parent is not None and node.parent.type == "decorated_definition" else node
    parent = _owner(node, source) if kind == "method" else None
    top_level = kind != "method" and _owner(node, source) is None
    indent = " " * node.start_point.column
    body = node.child_by_field_name("body")
    if body is not None and body.start_byte > node.start_byte:
        signature = source[node.start_byte : body.start_byte].decode("utf-8", "replace").rstrip()
        # A body opening with comments (`#: the verb`) would otherwise end the signature.
        sig_lines = signature.split("\n")
        while len(sig_lines) > 1 and sig_lines[-1].lstrip().startswith(("#", "//")):
            sig_lines.pop()
        signature = "\n".join(sig_lines).rstrip()
    else:
        signature = _node_text(source, node)
    doc = _doc(language, source, node, body)
    n_lines = outer.end_point.row - outer.start_point.row + 1
    whole = " " * outer.start_point.column + _node_text(source, outer)
    if kind == "constant":
        lines = whole.split("\n")
        snippet = (
            whole if len(lines) <= CONSTANT_MAX_LINES else "\n".join([*lines[:CONSTANT_MAX_LINES], "..."])
        )
    elif n_lines <= SHORT_BODY_LINES or body is None:
        snippet = whole
    elif kind == "class" and language == "python":
        snippet = _class_summary(source, indent, signature, doc, body)
    else:
        sig_lines = signature.split("\n")
        if len(sig_lines) > SIGNATURE_MAX_LINES:  # the record keeps it whole: one_line() cuts it
            sig_lines = [*sig_lines[:SIGNATURE_MAX_LINES], indent + "    ..."]
        snippet = _compact(language, indent, "\n".join(sig_lines), doc, body)
    if parent is not None and language == "python":
        header = _owner_header(node, source)
        if header:
            snippet = header + "\n" + snippet
    return Definition(
        name=name,
        kind=kind,
        parent=parent,
        start_line=outer.start_point.row,
        end_line=outer.end_point.row,
        signature=signature.strip(),
        doc=doc,
        snippet=snippet.rstrip() + "\n",
        top_level=top_level,
    )


def _compact(language: str, indent: str, signature: str, doc: str, body: ts.Node) -> str:
    if language == "python":
        inner = " " * body.start_point.column
        parts = [indent + signature]
        if doc:
            parts.append(inner + doc)
        parts.append(inner + "...")
        return "\n".join(parts)
    prefix = f"{indent}{doc}\n" if doc else ""
    return f"{prefix}{indent}{signature} {{ ... }}"


def _owner_header(node: ts.Node, source: bytes) -> str:
    parent = node.parent
    while parent is not None and parent.type != "class_definition":
        parent = parent.parent
    if parent is None:
        return ""
    body = parent.child_by_field_name("body")
    end = body.start_byte if body is not None else parent.end_byte
    return (
        " " * parent.start_point.column + source[parent.start_byte : end].decode("utf-8", "replace").rstrip()
    )


def _doc(language: str, source: bytes, node: ts.Node, body: ts.Node | None) -> str:
    text = ""
    if language == "python":
        if body is not None and body.named_child_count:
            first = body.named_children[0]
            if first.type == "expression_statement" and first.named_child_count:
                string = first.named_children[0]
                if string.type == "string":
                    text = _node_text(source, string)
    else:
        comments: list[ts.Node] = []
        sibling = node.prev_named_sibling
        row = node.start_point.row
        while sibling is not None and "comment" in sibling.type and sibling.end_point.row >= row - 1:
            comments.append(sibling)
            row = sibling.start_point.row
            sibling = sibling.prev_named_sibling
        if comments:
            text = "\n".join(_node_text(source, c) for c in reversed(comments))
    lines = text.split("\n")
    if len(lines) > DOC_MAX_LINES:
        text = "\n".join(lines[:DOC_MAX_LINES]) + " ..."
        if language == "python":
            text += '"""'
    return text


def _class_summary(source: bytes, indent: str, signature: str, doc: str, body: ts.Node) -> str:
    """Python classes: header, docstring, fields and member signatures instead of a long body."""
    inner = " " * body.start_point.column
    lines = [indent + signature]
    if doc:
        doc_lines = doc.split("\n")
        if len(doc_lines) > CLASS_DOC_MAX_LINES:
            doc = "\n".join(doc_lines[:CLASS_DOC_MAX_LINES]) + ' ..."""'
        lines.append(inner + doc)
    seen: set[str] = set()
    for child in body.named_children:
        if len(lines) >= CLASS_SUMMARY_MAX_LINES:
            lines.append(inner + "...")
            break
        target = child.child_by_field_name("definition") if child.type == "decorated_definition" else child
        if target is None:
            continue
        if target.type in ("function_definition", "class_definition"):
            member = _node_text(source, target.child_by_field_name("name") or target)
            if member in seen or (member.startswith("_") and member not in PUBLIC_DUNDERS):
                continue  # private helpers and property setters add lines, not API
            seen.add(member)
            member_body = target.child_by_field_name("body")
            end = member_body.start_byte if member_body is not None else target.end_byte
            head = one_line(source[target.start_byte : end].decode("utf-8", "replace"))
            lines.append(inner + head + " ...")
        elif (
            target.type == "expression_statement"
            and target.named_child_count
            and target.named_children[0].type == "assignment"
        ):
            lines.append(inner + _node_text(source, target).split("\n")[0])
    return "\n".join(lines)
