"""Helpers for the context-engine tests: a copy of the small `shop` repository and a token counter."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from context.index import Index
from context.walk import WalkOptions

SHOP = Path(__file__).parent / "data" / "context" / "shop"
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Deterministic stand-in for the model tokenizer: words and punctuation marks."""
    return len(_TOKEN_RE.findall(text))


def copy_shop(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    shutil.copytree(SHOP, root)
    return root


def open_shop(tmp_path: Path) -> tuple[Path, Index]:
    """A fresh, refreshed index over a private copy of the shop repository."""
    root = copy_shop(tmp_path)
    index = Index.open(root, tmp_path / "index.sqlite", WalkOptions(use_git=False))
    index.refresh()
    return root, index
