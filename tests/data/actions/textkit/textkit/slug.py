"""URL slugs from titles."""

import re
import unicodedata

_NON_WORD = re.compile(r"[^a-z0-9]+")


def slugify(title: str, sep: str = "-") -> str:
    """Lowercase ASCII words of `title` joined by `sep`: 'Hello, World!' -> 'hello-world'."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    words = _NON_WORD.split(ascii_title.lower())
    return sep.join(w for w in words if w)


def truncate_words(text: str, limit: int) -> str:
    """The first `limit` words of text, with '...' appended when words were dropped."""
    words = text.split()
    if len(words) <= limit:
        return " ".join(words)
    return " ".join(words[:limit]) + "..."
