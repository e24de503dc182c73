"""Finding the workspace root of a file and opening its index (shared by the CLI and the daemon)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from context.index import Index

log = logging.getLogger(__name__)

ROOT_MARKERS = (".git", "pyproject.toml", "setup.py", "setup.cfg", "package.json", "go.mod", "Cargo.toml")


def find_root(path: Path) -> Path:
    """The nearest ancestor holding a project marker; the file's folder when there is none."""
    start = path.resolve()
    folder = start if start.is_dir() else start.parent
    for candidate in (folder, *folder.parents):
        if any((candidate / marker).exists() for marker in ROOT_MARKERS):
            return candidate
    return folder


def open_index(root: Path, progress: Callable[[int, int], None] | None = None) -> Index:
    """Open (and incrementally refresh) the workspace index."""
    from context.index import Index

    index = Index.open(root)
    index.refresh(progress)
    return index
