"""The latency logic of inline completion, as pure code: what can be answered without the model.

- Typing-through: a suggestion made at (prefix|suffix) is still valid after the user types
  characters that match its start (or deletes a few on the same line); we answer with the rest.
- In-flight reuse: a generation still running for (prefix|suffix) serves a request at
  (prefix + typed|suffix) when its output so far agrees with `typed`.
- Hot streak: once a line is shown, the next line's suggestion is prepared for the cursor the
  user will have after accepting it and pressing Enter.
- Early answers: when the user has paused and the model has written a few whole words of the
  line, those are shown at once; the rest follows when the generation ends.
- Adaptive debounce: during a fast typing burst wait a little longer than the user's
  inter-key interval (the next key will probably supersede the request anyway); when typing
  slowly, ask at once.

The suggester (server/suggest.py) wires these to the model worker; everything here is
synchronous, allocation-light and tested without a server (tests/test_latency_logic.py).
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from context.anchor import middle_start
from context.syntax import code
from server.model.postprocess import CLOSERS, OPENERS, closers_only, no_space_inside_bracket
from server.request import CompletionContext

# Suggestions remembered per document for typing-through: the last few are enough, since a
# new model answer usually replaces the old one and old prefixes stop matching after edits.
CACHE_PER_DOCUMENT = 8
# Documents with cached suggestions (least recently used dropped first).
CACHE_DOCUMENTS = 32
# Typing-through after backspace: deleting more than this many characters means the user is
# rewriting, not correcting a typo; ask the model again.
MAX_BACKSPACE_CHARS = 8
# Inter-key gaps longer than this are pauses, not typing speed.
TYPING_PAUSE_S = 1.5
# Weight of the newest inter-key interval in the moving average.
EWMA_ALPHA = 0.3
# Wait this multiple of the average inter-key interval: long enough to catch the next key.
DEBOUNCE_INTERVAL_FACTOR = 1.25
# Lines whose end opens a block (the editor indents the next line one level deeper).
BLOCK_OPENER_ENDS = (":", "{", "(", "[")


# An early answer shows at least this many non-blank characters (fewer are not worth a glance).
EARLY_MIN_CHARS = 3
_WORD_TAIL = re.compile(r"\w+$")


# What an editor puts after the cursor by itself: VS Code closes brackets and quotes as they are typed
# (`(` brings `)`), and Enter between braces puts the `}` on a line of its own below the cursor.
AUTO_CLOSED = frozenset(")]}\"'`")
QUOTES = "\"'`"
# The lines before the cursor whose open brackets an editor may have closed (the cursor's, and the
# header's above it after Enter between braces).
AUTO_CLOSE_LINES = 2


def editor_closed(made_at: CompletionContext, now: CompletionContext) -> str | None:
    """What the editor's auto-closing put after the cursor since `made_at`: "" when the text after
    the cursor is unchanged, None when it changed otherwise. The closers must close, innermost
    first, brackets left open on the cursor's last lines, and a quote one left open on its line;
    with VS Code on, a suggestion made before `(` was typed still serves `foo(|)`."""
    if now.suffix == made_at.suffix:
        return ""
    if not now.suffix.endswith(made_at.suffix) or not now.prefix.startswith(made_at.prefix):
        return None
    closed = now.suffix[: len(now.suffix) - len(made_at.suffix)]
    head, newline, tail = closed.partition("\n")
    below = tail.lstrip(" \t")
    if not set(head) <= AUTO_CLOSED or not set(below) <= AUTO_CLOSED or (newline and not below):
        return None
    return closed if _close_what_was_typed(now.prefix, head + below) else None


def editor_rest(at: CompletionContext) -> str:
    """The rest of the cursor's line when it only closes, innermost first, brackets and quotes the
    line opened before the cursor: what an editor's auto-closing put there (`foo(|)`, `{|}`); ""
    otherwise. The suggester answers as if the line ended at the cursor and cuts the answer there
    (before_closed): the prompt, the KV cache and the cached answers stay those of the typing."""
    rest = at.suffix.split("\n", 1)[0]
    return rest if rest and _close_what_was_typed(at.line_prefix, rest) else ""


# A line that only closes brackets (`}`, `});`, `]`), as Enter between a pair leaves below the cursor.
_CLOSER_LINE = re.compile(r"[ \t]*[)\]}][)\]}]*[;,]?[ \t]*")
# How far above the cursor the line that opened such a block is looked for.
CLOSER_OPENER_LINES = 400
# A label at its block's indentation: `case x:`, `case a, b:`, `default:` (a `//` comment after it).
_LABEL_LINE = re.compile(r"[ \t]*(case\b.*|default[ \t]*):[ \t]*(//.*)?$")


def closer_lines(at: CompletionContext, rest: str) -> str:
    """The lines right after the cursor's line (from its new line on) that only close blocks still
    open above the cursor, each at the indentation of the line that opened it, innermost first:
    what VS Code's Enter between brackets put below the cursor (`{`, Enter: `{\n    |\n  }`), or
    the end of a block being edited; "" when there are none, or when the cursor's line goes on
    with more than `rest` (its editor_rest). Left out of the prompt, the text after the cursor stays the same
    while the block is typed and once the user steps past its `}` (which then joins the text
    before the cursor): the model would read the typed body again at both (~1 s each, measured at
    rxjs `multicast`'s inner block on 2 cores)."""
    head, newline, below = at.suffix.partition("\n")
    if not newline or head != rest or not _CLOSER_LINE.match(below):
        return ""  # (the common case, on every key: no scan of the body for its start)
    # Only blocks opened in the body being typed (the prompt's middle, context/anchor.py): the
    # function's own closing line is the file's, and the model reads where the function ends.
    body = at.prefix[middle_start(at.prefix) :]
    above = body.rsplit("\n", CLOSER_OPENER_LINES)[-CLOSER_OPENER_LINES:]
    top = len(above)  # openers are looked for above this line
    taken: list[str] = []
    for line in _lines_after(at.suffix, len(head) + 1):
        if not _CLOSER_LINE.fullmatch(line):
            break
        indent = len(line) - len(line.lstrip(" \t"))
        top = _opener_line(above, top, indent, line.strip().rstrip(";,"))
        if top < 0:
            break
        taken.append(line)
    return "".join("\n" + line for line in taken)


def _lines_after(text: str, start: int) -> Iterator[str]:
    """The lines of `text` from offset `start` on, one at a time (a suffix may be a whole file)."""
    while start <= len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        yield text[start:end]
        start = end + 1


def _opener_line(lines: list[str], top: int, indent: int, closers: str) -> int:
    """The index, below `top`, of the nearest line indented no deeper than `indent` when it is
    indented exactly so and its code ends with the brackets `closers` close (innermost first);
    -1 otherwise. The last line is the cursor's, typed up to the cursor.

    Inside a block two kinds of line sit at its closer's indentation: a label (Go's and C's
    `case x:` and `default:` under `switch {`, as gofmt indents them) and, at that indentation, the
    cursor's own line while it is being typed (`\t\tc`, the start of the next `case`). Both are
    passed over: stopped at them, the closers were left out on the blank line after Enter and
    kept from the first key on, so the text after the cursor changed twice per line and the
    model read the prompt again from the suffix each time (2-5 s per new case in a Go switch)."""
    cursor_line = len(lines) - 1
    for i in range(top - 1, -1, -1):
        line = lines[i]
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip(" \t"))
        if depth > indent:
            continue
        if depth < indent:
            return -1
        open_brackets = _open_brackets(line)
        expected = "".join(OPENERS[o] for o in reversed(open_brackets))
        if expected.startswith(closers):
            return i
        if not open_brackets and (i == cursor_line or _LABEL_LINE.match(line)):
            continue
        return -1
    return -1


def without_editor_rest(at: CompletionContext) -> tuple[CompletionContext, str]:
    """`at` as if its line ended at the cursor and the block it is in ended there too: the rest of
    the line an editor closed (editor_rest) and the closer lines below it (closer_lines) left out.
    What every door asks the model; the second value, what was left out, cuts the answer
    (within_left_out)."""
    rest = editor_rest(at)
    closed = rest + closer_lines(at, rest)
    return (replace(at, suffix=at.suffix[len(closed) :]) if closed else at), closed


def within_left_out(text: str, left_out: str, line_prefix: str) -> str:
    """An answer made without what without_editor_rest left out of the request: before the closers
    the editor put after the cursor on its line (before_closed), and before a line of the answer
    that is the first closer line already below the cursor (`line_prefix`: the cursor's line
    before it, which the answer's first line goes on)."""
    rest, newline, lines = left_out.partition("\n")
    if rest:
        text = before_closed(text, rest)
    if not newline:
        return text
    first = lines.split("\n", 1)[0].rstrip()
    start = 0
    for i, line in enumerate(text.split("\n")):
        if (line_prefix + line if i == 0 else line).rstrip() == first:
            return text[: max(0, start - 1)].rstrip(" \t")  # nor the new line before it
        start += len(line) + 1
    return text


def _close_what_was_typed(prefix: str, closers: str) -> bool:
    """`closers` (closing brackets and quotes only) close, innermost first, brackets left open on the
    last lines of `prefix`, and quotes left open on its last line."""
    if not set(closers) <= AUTO_CLOSED:
        return False
    lines = prefix.split("\n")
    expected = "".join(OPENERS[o] for o in reversed(_open_brackets("\n".join(lines[-AUTO_CLOSE_LINES:]))))
    if not expected.startswith("".join(ch for ch in closers if ch not in QUOTES)):
        return False
    return all(lines[-1].count(q) % 2 == 1 for q in set(closers) & set(QUOTES))


def before_closed(rest: str, closed: str) -> str:
    """`rest` (text to insert at the cursor) up to what the editor already put after it (`closed`:
    from editor_closed or editor_rest): the user types over a closer rather than taking it twice. A
    closer that starts a line of the answer keeps its line's start (`{|}`: the body, then the `}`
    where the answer put it); one the editor already moved below the cursor does not."""
    if not closed:
        return rest
    end = _closed_at(rest, closed)
    kept = rest[:end]
    line_start = kept.rfind("\n")
    if end < len(rest) and line_start >= 0 and not kept[line_start:].strip() and not closed.startswith("\n"):
        return kept
    return kept.rstrip()


def _closed_at(rest: str, closed: str) -> int:
    """Where `rest` (text to insert at the cursor) reaches the first of `closed` (closers the editor
    put after the cursor) with a closer or quote of its own; len(rest) when it never does."""
    first = closed.strip()[0]
    end = len(rest)
    if first in QUOTES:
        return next((i for i, ch in enumerate(rest) if ch == first and rest[i - 1 : i] != "\\"), end)
    depth = 0  # brackets `rest` opened itself
    for i, ch in code(rest):
        if ch in OPENERS:
            depth += 1
        elif ch in CLOSERS:
            if not depth:
                return i
            depth -= 1
    return end


def types_over(text: str, left_out: str) -> int:
    """How many characters after the cursor answer `text` replaces: those the editor closed on the
    cursor's line (the first line of `left_out`, from without_editor_rest) when the answer writes
    them itself, where before_closed would cut it, and goes on with code on the same line
    (`v.Len(|)` answered `).Kind()`, `self.flags(|)` answered `).unicode() {`); 0 otherwise.

    Cut before the `)`, such an answer was nothing: an empty call got no suggestion until the user
    typed over the `)` (22 keys with nothing on screen in the Go and Rust development replay, as
    VS Code). Shown whole, with the `)` in the range it replaces, the editor shows the `)` in place
    and the rest as ghost text after it."""
    rest = left_out.split("\n", 1)[0]
    if not rest:
        return 0
    end = _closed_at(text, rest)
    line_end = text.find("\n")
    line_end = len(text) if line_end < 0 else line_end
    if end >= line_end or not text.startswith(rest, end):
        return 0
    return len(rest) if text[end + len(rest) : line_end].strip() else 0


def _open_brackets(text: str) -> list[str]:
    """The brackets `text` leaves open in code, outermost first."""
    stack: list[str] = []
    for _, ch in code(text):
        if ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS and stack and stack[-1] == CLOSERS[ch]:
            stack.pop()
    return stack


def continuation(
    made_at: CompletionContext, text: str, now: CompletionContext, *, blank_lines: bool = False
) -> str | None:
    """What is left of suggestion `text` (made at `made_at`) for the buffer `now`; None if nothing.

    Valid when the text after the cursor is unchanged and the text before it grew by characters
    the suggestion starts with (typing-through), or lost a few characters on the same line
    (backspace: they are offered again, followed by the suggestion). `blank_lines`: `text` is a
    line prepared for a new line's start (the hot streak), and blank lines the user put before it
    do not count (Enter twice: the line after the blank one is most often the same).
    """
    if made_at.uri != now.uri or not text:
        return None
    closed = editor_closed(made_at, now)
    if closed is None:
        return None
    if now.prefix.startswith(made_at.prefix):
        typed = now.prefix[len(made_at.prefix) :]
        if blank_lines and not typed[: typed.rfind("\n") + 1].strip():
            typed = typed[typed.rfind("\n") + 1 :]
        if text.startswith(typed) and len(typed) < len(text):
            return before_closed(text[len(typed) :], closed) or None
        return None
    if closed:
        return None
    if made_at.prefix.startswith(now.prefix):
        deleted = made_at.prefix[len(now.prefix) :]
        if len(deleted) <= MAX_BACKSPACE_CHARS and "\n" not in deleted and deleted.strip():
            return deleted + text
    return None


def agrees(made_at: CompletionContext, partial: str, now: CompletionContext) -> bool:
    """Could a generation at `made_at`, which has produced `partial` so far, serve `now`?"""
    if made_at.uri != now.uri or not now.prefix.startswith(made_at.prefix):
        return False
    if editor_closed(made_at, now) is None:
        return False
    typed = now.prefix[len(made_at.prefix) :]
    return partial.startswith(typed) or typed.startswith(partial)


def early_text(partial: str, typed: str = "", line_prefix: str = "") -> str | None:
    """What of a generation still running can be shown already: the words it has finished on its
    first line, past what was typed since it started; None when that is not worth a key.
    `line_prefix`: the cursor line before the cursor now (the same style fixes as the whole answer).

    A trailing run of word characters may be half a name (`self.valu`), so it waits for the next
    piece; the rest of the line comes when the generation ends (the door asks the editor again).
    """
    if not partial.startswith(typed):
        return None
    rest = partial[len(typed) :]
    # An answer that starts on the next line (after a block's header): its first line of code.
    lead = "\n" if rest.startswith("\n") else ""
    line, newline, after = rest[len(lead) :].partition("\n")
    # A line that only closes brackets (`}`) is shown with the words of the line after it.
    closing = ""
    if newline and closers_only(line):
        closing = line.rstrip() + "\n"
        line, newline, _ = after.partition("\n")
    if not newline:
        line = _WORD_TAIL.sub("", line)
    line = line.rstrip() if lead or closing else no_space_inside_bracket(line.rstrip(), line_prefix)
    if sum(1 for ch in line if not ch.isspace()) < EARLY_MIN_CHARS or not any(c.isalnum() for c in line):
        return None
    return lead + closing + line


def next_line_cursor(at: CompletionContext, text: str) -> CompletionContext | None:
    """Where the line after `text` starts once the user accepts it and presses Enter (the
    hot-streak target): column 0 of the new line. The model writes that line's indentation
    itself (Completer.complete's `new_line`), so its answer serves whatever indentation the editor
    puts there, a dedent after `return` included (26 of the 91 line starts in the replay's eight
    regions go back a level).

    None when that is not predictable: text inserted mid-line, before other text on the line.
    """
    if at.suffix.split("\n", 1)[0].strip() or not text.strip():
        return None
    accepted = at.prefix + text.rstrip(" \t")
    if accepted.endswith("\n"):
        accepted = accepted[:-1]
    return _line_below(at, accepted)


def below_header(at: CompletionContext) -> CompletionContext | None:
    """The line below a block header's end (`    if x < 0:|`), at its column 0: the hot streak's
    target after an answer that ended the header. None elsewhere, and after trailing spaces (the
    next line would not follow the cursor's text)."""
    line = at.line_prefix
    # `{|}`: the editor closed the brace; after Enter it goes below the cursor (editor_closed).
    rest = at.suffix.split("\n", 1)[0]
    if rest.strip() and rest != editor_rest(at):
        return None
    if not line.strip() or line != line.rstrip():
        return None
    return _line_below(at, at.prefix) if line.endswith(BLOCK_OPENER_ENDS) else None


def _line_below(at: CompletionContext, before: str) -> CompletionContext:
    """`at` with `before` ahead of the cursor, then a new line (the rest of the cursor's line is
    blank and goes)."""
    line_suffix = at.suffix.split("\n", 1)[0]
    return replace(at, prefix=before + "\n", suffix=at.suffix[len(line_suffix) :])


@dataclass
class Suggestion:
    """A suggestion and the buffer it was made for."""

    at: CompletionContext
    text: str
    source: str  # "model" or "hot-streak"
    stats_id: int = 0
    created: float = field(default_factory=time.monotonic)
    origin: object = None  # what the door made it from (the daemon's Answer: its file and context)
    first_line: bool = False  # the first line of a block the model would have written on
    ended: bool = False  # the model ended its line here (not cut off by the token limit)
    confidence: float = 1.0  # the model's, for its whole answer (GenerationStats.confidence)


class SuggestionCache:
    """Recent suggestions per document, newest first, for typing-through and the hot streak."""

    def __init__(self, per_document: int = CACHE_PER_DOCUMENT, documents: int = CACHE_DOCUMENTS) -> None:
        self.per_document = per_document
        self.documents = documents
        self._by_uri: OrderedDict[str, deque[Suggestion]] = OrderedDict()

    def put(self, suggestion: Suggestion) -> None:
        uri = suggestion.at.uri
        entries = self._by_uri.setdefault(uri, deque(maxlen=self.per_document))
        self._by_uri.move_to_end(uri)
        entries.appendleft(suggestion)
        while len(self._by_uri) > self.documents:
            self._by_uri.popitem(last=False)

    def lookup(self, now: CompletionContext) -> tuple[Suggestion, str] | None:
        """The newest cached suggestion still valid at `now`, and the text to show."""
        for entry in self._by_uri.get(now.uri, ()):
            rest = continuation(entry.at, entry.text, now, blank_lines=entry.source == "hot-streak")
            if rest is not None:
                return entry, rest
        return None

    def ended(self, now: CompletionContext) -> Suggestion | None:
        """The cached answer that `now` took whole (accepted or typed through) where the model
        ended its line, with nothing after the cursor on it: the model has said what goes here."""
        if now.suffix.split("\n", 1)[0].strip() or not now.line_prefix.strip():
            return None
        for entry in self._by_uri.get(now.uri, ()):
            if entry.ended and entry.at.suffix == now.suffix and now.prefix == entry.at.prefix + entry.text:
                return entry
        return None

    def drop(self, uri: str) -> None:
        self._by_uri.pop(uri, None)

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_uri.values())


class AdaptiveDebounce:
    """Per-document debounce that follows the measured typing speed."""

    def __init__(self, min_s: float, max_s: float, adaptive: bool = True) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.adaptive = adaptive
        self._last: dict[str, float] = {}
        self._interval: dict[str, float] = {}

    def observe(self, uri: str, at: float | None = None) -> None:
        """Note a keystroke (a content change) in `uri`."""
        at = time.monotonic() if at is None else at
        last = self._last.get(uri)
        self._last[uri] = at
        if last is None:
            return
        gap = at - last
        if gap <= 0 or gap > TYPING_PAUSE_S:
            return
        old = self._interval.get(uri)
        self._interval[uri] = gap if old is None else EWMA_ALPHA * gap + (1 - EWMA_ALPHA) * old

    def delay(self, uri: str, fresh_line: bool = False) -> float:
        """Seconds to wait before asking the model for `uri`; `fresh_line`: the cursor follows only
        indentation (Enter was just pressed), where a user reads before typing on, so the next key
        seldom comes within the debounce and waiting for it would only delay the answer."""
        if not self.adaptive or fresh_line:
            return self.min_s
        interval = self._interval.get(uri)
        if interval is None:
            return self.min_s
        wait = interval * DEBOUNCE_INTERVAL_FACTOR
        # Slow typing: the next key will not come within max_s, so waiting only adds latency.
        return self.min_s if wait > self.max_s else max(self.min_s, wait)

    def since_last_key(self, uri: str, now: float | None = None) -> float | None:
        """Seconds since the last keystroke in `uri` (None: none seen)."""
        last = self._last.get(uri)
        if last is None:
            return None
        return (time.monotonic() if now is None else now) - last

    def forget(self, uri: str) -> None:
        self._last.pop(uri, None)
        self._interval.pop(uri, None)
