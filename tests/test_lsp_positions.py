"""UTF-16 positions and incremental edits on lines with non-ASCII and astral (emoji) characters."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from server.lsp.documents import apply_change, column_from_utf16, cursor_at, offset_at, position_of, utf16_len

DATA = Path(__file__).parent / "data" / "lsp"
EMOJI = (DATA / "emoji.py").read_text(encoding="utf-8")


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def test_utf16_length_counts_astral_characters_twice() -> None:
    for text in ("", "abc", "héllo", "😋", 'x="😋"', "🎉 ünï 😋"):
        assert utf16_len(text) == units(text)


def test_columns_round_trip_on_every_character_of_the_emoji_file() -> None:
    for n, line in enumerate(EMOJI.split("\n")):
        for col in range(len(line) + 1):
            character = units(line[:col])
            assert column_from_utf16(line, character) == col
            assert cursor_at(EMOJI, types.Position(n, character)) == (n, col)
            offset = offset_at(EMOJI, types.Position(n, character))
            assert position_of(EMOJI, offset) == types.Position(n, character)


def test_the_lsp_spec_example() -> None:
    # In x="😋" the closing quote is at UTF-16 offset 5 and code point 4.
    assert column_from_utf16('x="😋"', 5) == 4


def test_positions_past_the_end_clamp() -> None:
    assert column_from_utf16("héllo", 99) == 5
    assert column_from_utf16("ab\r", 5) == 2  # \r belongs to the line ending
    assert cursor_at("a\nb", types.Position(7, 0)) == (1, 1)


def _change(sl: int, sc: int, el: int, ec: int, text: str) -> types.TextDocumentContentChangePartial:
    return types.TextDocumentContentChangePartial(
        range=types.Range(types.Position(sl, sc), types.Position(el, ec)), text=text
    )


def test_incremental_edits_after_emoji() -> None:
    line = EMOJI.split("\n")[2]
    end = units(line)
    text = apply_change(EMOJI, _change(2, end, 2, end, "rm"))
    assert text.split("\n")[2] == line + "rm"
    # Delete the emoji itself (two UTF-16 units) at the start of the string literal.
    start = units(line[: line.index("😋")])
    text = apply_change(EMOJI, _change(2, start, 2, start + 2, ""))
    assert text.split("\n")[2] == line.replace("😋", "", 1)
    # A multi-line replacement spanning the non-ASCII line 1 and the emoji line 2.
    text = apply_change(EMOJI, _change(1, units('greeting = "hé'), 2, units('label = "😋'), "X\nY"))
    assert text.split("\n")[1:3] == ['greeting = "héX', 'Y ünïcödé 🎉"; value = fo']


def test_form_feed_and_line_separator_are_not_line_breaks() -> None:
    # str.splitlines() would break at these; LSP clients do not.
    text = "a = 1\x0c\nb = '\u2028'; c = d\n"
    line = text.split("\n")[1]
    assert cursor_at(text, types.Position(1, units(line))) == (1, len(line))
    edited = apply_change(text, _change(1, units(line), 1, units(line), "x"))
    assert edited.split("\n")[1] == line + "x"


def test_full_document_change() -> None:
    assert apply_change("old", types.TextDocumentContentChangeWholeDocument(text="new")) == "new"
