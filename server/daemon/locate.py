"""Which workspace file a completion request is about, when the request does not say.

llama.vim and llama.vscode send the text around the cursor but not the file's name. The
candidates are the files named in `input_extra` (their ring buffer holds chunks of the current
file too) and the indexed windows that share the most identifiers with the prefix's last lines;
the winner is the candidate that contains most of those lines verbatim. Pure functions: the
daemon's core gathers candidates from the index and calls these.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

# Last non-blank lines of the prefix compared with each candidate: enough to tell files apart,
# few enough to survive unsaved edits a few lines above the cursor.
TAIL_LINES = 8
# Share of those lines a candidate must contain (as whole lines) to be taken as the current file.
MIN_MATCH = 0.6
# Lines shorter than this ("}", "else:", "") say nothing about which file this is.
MIN_LINE_CHARS = 4
# Lines of the prefix's start that must match a file's lines to place the prefix window in it.
HEAD_PROBE_LINES = 3

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")


def tail_lines(prefix: str, n: int = TAIL_LINES) -> list[str]:
    """The last n distinctive complete lines before the cursor, stripped (the cursor line is partial)."""
    lines = prefix.split("\n")[:-1]
    out: list[str] = []
    for line in reversed(lines):
        stripped = line.strip()
        if len(stripped) >= MIN_LINE_CHARS:
            out.append(stripped)
            if len(out) == n:
                break
    return out


def identifiers(lines: Iterable[str]) -> list[str]:
    """Identifiers of the lines, for a full-text search of the index's windows."""
    seen: dict[str, None] = {}
    for line in lines:
        for name in _IDENT.findall(line):
            seen.setdefault(name, None)
    return list(seen)


def match_score(tail: Sequence[str], text: str) -> float:
    """Share of the tail lines that occur in text as whole (stripped) lines."""
    if not tail:
        return 0.0
    present = {line.strip() for line in text.split("\n")}
    return sum(1 for line in tail if line in present) / len(tail)


def best_match(tail: Sequence[str], candidates: Mapping[str, str]) -> str | None:
    """The candidate (path -> text, in order of preference) holding most of the tail; None below MIN_MATCH."""
    best: str | None = None
    best_score = 0.0
    for path, text in candidates.items():
        score = match_score(tail, text)
        if score > best_score:  # ties keep the earlier, preferred candidate
            best, best_score = path, score
    return best if best_score >= MIN_MATCH else None


def names_matching(name: str, files: Iterable[str]) -> list[str]:
    """Indexed paths that a client's file name may denote: equal, or ending with it as whole components.

    Editors send names relative to their own working directory ("src/app.py", "app.py") or absolute.
    """
    clean = name.replace("\\", "/").lstrip("./")
    if not clean:
        return []
    return [f for f in files if f == clean or f.endswith("/" + clean) or clean.endswith("/" + f)]


def head_before(file_text: str, prefix: str) -> str:
    """The file's text before the request's prefix window, or "" when the window is not found in it.

    Clients send a window of lines before the cursor (llama.vim: 256); the imports at the top of a
    long file fall outside it. Placing the window in the indexed file gives retrieval the whole head.
    """
    window = prefix.split("\n")
    probe = [line for line in window[:HEAD_PROBE_LINES] if line.strip()]
    if not probe or len(window) <= HEAD_PROBE_LINES:
        return ""
    lines = file_text.split("\n")
    first = window[0]
    for i, line in enumerate(lines):
        if i > 0 and line == first and lines[i : i + HEAD_PROBE_LINES] == window[:HEAD_PROBE_LINES]:
            return "\n".join(lines[:i]) + "\n"
    return ""
