"""Property-based checks of UTF-16 positions and incremental sync (server/lsp/documents.py).

The reference is computed independently: UTF-16 units from Python's own encoder, and edits
applied by slicing code points. Text includes astral characters (emoji), CRLF and lone
surrogates, which the store turns into U+FFFD without moving any position.
"""

from __future__ import annotations

import re

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from lsprotocol import types

from server.lsp.documents import (
    Documents,
    apply_change,
    column_from_utf16,
    cursor_at,
    offset_at,
    position_of,
    scrub_surrogates,
    utf16_len,
)

# Characters that matter for positions, and any character at all (surrogates included).
INTERESTING = st.sampled_from(
    ["a", "é", "😋", "𝔘", "\n", "\r\n", "\t", "\ud800", "\udfff", "\u2028", "\x0c", " "]
)
ANY_CHAR = st.characters()
# A lone CR is out of scope: the store, like the completion pipeline, breaks lines at \n only.
TEXT = (
    st.lists(st.one_of(INTERESTING, ANY_CHAR), max_size=60)
    .map("".join)
    .map(lambda s: re.sub("\r(?!\n)", "", s))
)


def units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def reference_position(text: str, offset: int) -> types.Position:
    head = text[:offset]
    return types.Position(line=head.count("\n"), character=units(head[head.rfind("\n") + 1 :]))


def between_cr_lf(text: str, offset: int) -> bool:
    # Editors never address the middle of a CRLF line ending; the store maps it to before the CR.
    return 0 < offset < len(text) and text[offset - 1] == "\r" and text[offset] == "\n"


@settings(max_examples=300)
@given(TEXT)
def test_utf16_length_matches_the_encoder(text: str) -> None:
    assert utf16_len(text) == units(text)


@settings(max_examples=300)
@given(TEXT, st.data())
def test_offsets_and_positions_round_trip(text: str, data: st.DataObject) -> None:
    offset = data.draw(st.integers(0, len(text)))
    assume(not between_cr_lf(text, offset))
    position = reference_position(text, offset)
    assert position_of(text, offset) == position
    assert offset_at(text, position) == offset
    line, column = cursor_at(text, position)
    lines = text.split("\n")
    assert sum(len(x) + 1 for x in lines[:line]) + column == offset


@settings(max_examples=300)
@given(TEXT, st.integers(0, 200), st.integers(0, 200))
def test_any_position_clamps_into_the_text(text: str, line: int, character: int) -> None:
    offset = offset_at(text, types.Position(line=line, character=character))
    assert 0 <= offset <= len(text)
    lines = text.split("\n")
    if line < len(lines):
        body = lines[line].removesuffix("\r")
        assert column_from_utf16(lines[line], character) <= len(body)


@settings(max_examples=300)
@given(TEXT)
def test_scrubbing_surrogates_keeps_every_position(text: str) -> None:
    clean = scrub_surrogates(text)
    clean.encode("utf-8")  # valid Unicode now
    assert len(clean) == len(text) and units(clean) == units(text)
    for offset in range(len(text) + 1):
        assert position_of(clean, offset) == position_of(text, offset)


@st.composite
def edit_sessions(draw: st.DrawFn) -> tuple[str, list[list[tuple[int, int, str] | str]]]:
    """An initial text and didChange events, each a list of (start, end, new text) splices or full texts."""
    text = draw(TEXT)
    events: list[list[tuple[int, int, str] | str]] = []
    current = text
    for _ in range(draw(st.integers(1, 8))):
        event: list[tuple[int, int, str] | str] = []
        for _ in range(draw(st.integers(1, 3))):
            if draw(st.integers(0, 9)) == 0:
                current = draw(TEXT)
                event.append(current)
                continue
            start = draw(st.integers(0, len(current)))
            end = draw(st.integers(start, len(current)))
            if between_cr_lf(current, start) or between_cr_lf(current, end):
                continue
            new = draw(TEXT)
            event.append((start, end, new))
            current = current[:start] + new + current[end:]
        events.append(event)
    return text, events


@settings(max_examples=300, deadline=None)
@given(edit_sessions())
def test_incremental_edits_equal_applying_the_full_text(
    session: tuple[str, list[list[tuple[int, int, str] | str]]],
) -> None:
    initial, events = session
    docs = Documents()
    uri = "file:///p/x.py"
    docs.open(types.TextDocumentItem(uri=uri, language_id="python", version=1, text=initial))
    expected = initial
    for version, event in enumerate(events, start=2):
        changes: list[types.TextDocumentContentChangeEvent] = []
        for step in event:
            if isinstance(step, str):
                changes.append(types.TextDocumentContentChangeWholeDocument(text=step))
                expected = step
                continue
            start, end, new = step
            rng = types.Range(
                start=reference_position(expected, start), end=reference_position(expected, end)
            )
            changes.append(types.TextDocumentContentChangePartial(range=rng, text=new))
            expected = expected[:start] + new + expected[end:]
        docs.change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=changes,
            )
        )
        doc = docs.get(uri)
        assert doc is not None and doc.version == version
        assert doc.text == scrub_surrogates(expected)


@settings(max_examples=200)
@given(TEXT, TEXT)
def test_a_full_change_replaces_everything(old: str, new: str) -> None:
    assert apply_change(old, types.TextDocumentContentChangeWholeDocument(text=new)) == scrub_surrogates(new)
