"""The completion context: one request, built once by the door that received it.

Every door (the language server's handlers, the daemon's HTTP handlers, `infiller complete`)
turns what its client sent into one immutable `CompletionContext`: the buffer split at the
cursor, the file and workspace it belongs to. Everything downstream (the suggestion cache, the
in-flight generation, the prompt builder, the retriever) reads it; nothing re-splits or re-joins
the buffer per step. The next keystroke's context is `forward(typed)`, as Tabby's agent does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

# The stand-in file name of a buffer that has no path (an untitled editor, a daemon request
# that names no file): only its suffix matters, for the language.
UNTITLED = "untitled"


@dataclass(frozen=True)
class CompletionContext:
    """A buffer split at the cursor, and where it lives.

    `uri` identifies the buffer for caches and supersession (a file URI, or any stable key);
    equality compares `uri`, `prefix` and `suffix` only. Line and column (0-based, code points)
    and the joined text are derived once, on first use.
    """

    uri: str
    prefix: str
    suffix: str
    path: Path | None = field(default=None, compare=False)
    language: str | None = field(default=None, compare=False)
    root: Path | None = field(default=None, compare=False)

    @classmethod
    def at(
        cls,
        path: Path,
        text: str,
        line: int,
        column: int,
        *,
        uri: str | None = None,
        language: str | None = None,
        root: Path | None = None,
    ) -> CompletionContext:
        """The context for a cursor given as 0-based line and column (code points) in `text`."""
        prefix, suffix = split_at(text, line, column)
        return cls(uri or str(path), prefix, suffix, path=path, language=language, root=root)

    def forward(self, typed: str) -> CompletionContext:
        """The context after the user typed `typed` at the cursor (the suffix is unchanged)."""
        return replace(self, prefix=self.prefix + typed)

    @property
    def file(self) -> Path:
        """The buffer's path, or a stand-in named after its URI for buffers without one."""
        if self.path is not None:
            return self.path
        return Path(self.uri.rsplit("/", 1)[-1] or UNTITLED)

    @cached_property
    def line(self) -> int:
        return self.prefix.count("\n")

    @cached_property
    def column(self) -> int:
        return len(self.prefix) - (self.prefix.rfind("\n") + 1)

    @cached_property
    def line_prefix(self) -> str:
        """The cursor line's text before the cursor."""
        return self.prefix[len(self.prefix) - self.column :]

    @cached_property
    def text(self) -> str:
        return self.prefix + self.suffix


def split_at(text: str, line: int, column: int) -> tuple[str, str]:
    """Split `text` at a 0-based (line, column); a position past the end clamps to the end."""
    offset = 0
    for _ in range(line):
        nl = text.find("\n", offset)
        if nl < 0:
            return text, ""
        offset = nl + 1
    end = text.find("\n", offset)
    line_len = (len(text) if end < 0 else end) - offset
    offset += min(max(column, 0), line_len)
    return text[:offset], text[offset:]
