"""How often names occur in the buffer being edited, kept up to date paragraph by paragraph.

Retrieval weighs every imported name by its uses in the whole buffer. Counting them afresh cost
~70 ms per request in a 9,000-line file with 445 imported names; a keystroke or a new cursor place
changes one or two paragraphs, so only those are counted again.

Names never contain a newline, so an occurrence never spans the blank line between two
paragraphs: a count over the buffer is the sum of the counts over its paragraphs, and a buffer's
count follows from the previous buffer's minus the paragraphs gone plus the paragraphs new.
"""

from __future__ import annotations

from collections import Counter

# Paragraphs: the buffer split at blank lines (an edit changes one, a new line splits one in two).
PARAGRAPH_BREAK = "\n\n"
# Whole-name uses are counted up to this many: retrieval only asks whether a name is used at all
# (more than its import), and counting a common name's every use costs a Python loop per use.
WHOLE_USES_CAP = 2
# When the paragraphs changed since the previous buffer hold more than this share of its text
# (another file, a paste), counting the new buffer afresh costs no more than the difference.
RECOUNT_SHARE = 0.25


class NameCounts:
    """`text.count(name)` and whole-name uses of names in one buffer, updated as the buffer changes.

    Each count is computed from the whole buffer the first time it is asked for, then carried
    from buffer to buffer through the paragraphs that changed. Results equal a fresh count's.
    """

    def __init__(self) -> None:
        self._text: str | None = None
        self._paragraphs: Counter[str] = Counter()
        self._occurrences: dict[str, int] = {}
        self._whole: dict[str, int] = {}  # min(whole-name uses, WHOLE_USES_CAP)

    def update(self, text: str) -> None:
        """Make the counts those of `text`."""
        if self._text is not None and text == self._text:
            return
        paragraphs = Counter(text.split(PARAGRAPH_BREAK))
        if self._text is not None and (self._occurrences or self._whole):
            gone, new = _difference(self._paragraphs, paragraphs)
            if len(gone) + len(new) <= RECOUNT_SHARE * len(text):
                self._carry(text, gone, new)
            else:
                self._occurrences, self._whole = {}, {}
        self._text, self._paragraphs = text, paragraphs

    def occurrences(self, name: str) -> int:
        """`text.count(name)`: substring occurrences, `name` inside longer names included."""
        count = self._occurrences.get(name)
        if count is None:
            count = self._occurrences[name] = self._current().count(name)
        return count

    def whole_uses(self, name: str) -> int:
        """Uses of `name` as a whole name (not inside a longer one, not an attribute), at most 2."""
        count = self._whole.get(name)
        if count is None:
            count = self._whole[name] = whole_name_count(self._current(), name, WHOLE_USES_CAP)
        return count

    def _current(self) -> str:
        if self._text is None:
            raise RuntimeError("NameCounts.update() was never called")
        return self._text

    def _carry(self, text: str, gone: str, new: str) -> None:
        """Counts of `text` from the previous buffer's: minus paragraphs `gone`, plus paragraphs `new`."""
        for name, count in self._occurrences.items():
            if name in gone or name in new:
                self._occurrences[name] = count - gone.count(name) + new.count(name)
        for name, whole in self._whole.items():
            if name not in gone and name not in new:
                continue
            lost = whole_name_count(gone, name, WHOLE_USES_CAP)
            if whole < WHOLE_USES_CAP:  # an exact count: carry it
                whole = min(whole - lost + whole_name_count(new, name, WHOLE_USES_CAP), WHOLE_USES_CAP)
            elif lost:  # "2 or more" minus some: only a recount can tell
                whole = whole_name_count(text, name, WHOLE_USES_CAP)
            self._whole[name] = whole


def _difference(old: Counter[str], new: Counter[str]) -> tuple[str, str]:
    """The paragraphs only in `old` and those only in `new` (as multisets), each joined into one text.

    The symmetric difference of the (paragraph, count) pairs runs in C: a Python loop over a large
    buffer's paragraphs would cost more than the counting it saves.
    """
    gone: list[str] = []
    added: list[str] = []
    for paragraph in {p for p, _ in old.items() ^ new.items()}:
        change = new.get(paragraph, 0) - old.get(paragraph, 0)
        (added if change > 0 else gone).extend([paragraph] * abs(change))
    # Joined at a paragraph break: no name spans it, so a count over the join is the sum of the parts'.
    return PARAGRAPH_BREAK.join(gone), PARAGRAPH_BREAK.join(added)


def whole_name_count(text: str, name: str, limit: int) -> int:
    """Occurrences of `name` as a whole name, not an attribute (`x.name`), counted up to `limit`.

    str.find (memchr speed) rather than a regex: a lookbehind pattern has no literal prefix to
    search for and steps through every position, which cost 50 ms per request on a 100 KB file.
    """
    count, start = 0, 0
    while count < limit:
        at = text.find(name, start)
        if at < 0:
            break
        end = at + len(name)
        after = text[end] if end < len(text) else " "
        # `Table` inside `TableRow` or `self.Table` is not a use of the imported `Table`.
        if starts_a_name(text, at) and not (after.isalnum() or after == "_"):
            count += 1
        start = end
    return count


def starts_a_name(text: str, at: int) -> bool:
    """Whether `text[at]` begins a name of its own: not inside a longer name, not after a dot."""
    if at == 0:
        return True
    before = text[at - 1]
    return not (before.isalnum() or before in "_.")
