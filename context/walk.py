"""Which files of a workspace are indexed: supported languages, minus ignored, vendored, huge or binary.

Uses `git ls-files` when the workspace is a git checkout (exact .gitignore semantics for free);
otherwise walks the tree and applies the root `.gitignore` patterns with fnmatch.

Only regular files inside the workspace are ever read (`read_source`): a FIFO named `x.py` would
block a read forever, a link to /dev/zero would never end, and a link to `~/.ssh/...` would leak a
file from outside the workspace into prompts. Type and size are checked on the open descriptor
before reading, and at most the size limit is read even if the file grows meanwhile.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import re
import stat
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from context.syntax import language_for_path

log = logging.getLogger(__name__)

# Files above this are generated or data (minified bundles, vendored amalgamations).
MAX_FILE_BYTES = 1_000_000
# A NUL in the first bytes means binary; git uses the same heuristic and window.
BINARY_SNIFF_BYTES = 8000
# git ls-files on a huge monorepo must not hang the editor.
GIT_TIMEOUT_S = 20.0

DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    "site-packages",
    "dist",
    "build",
    "target",
    "vendor",
    "third_party",
    ".eggs",
    "*.egg-info",
    "*.min.js",
    "*_pb2.py",
    "*.pb.go",
)


@dataclass(frozen=True)
class WalkOptions:
    excludes: tuple[str, ...] = DEFAULT_EXCLUDES
    max_file_bytes: int = MAX_FILE_BYTES
    use_git: bool = True


@lru_cache(maxsize=32)
def _matchers(excludes: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """One regex for patterns matched against each path component, one for whole-path patterns."""
    parts = [fnmatch.translate(p) for p in excludes if "/" not in p] or ["(?!)"]
    paths = [fnmatch.translate(p) for p in excludes if "/" in p] or ["(?!)"]
    return re.compile("|".join(parts)), re.compile("|".join(paths))


def is_excluded(rel: str, excludes: Iterable[str]) -> bool:
    """True when any path component (or the whole relative path) matches an exclude pattern."""
    component, whole = _matchers(tuple(excludes))
    return bool(whole.match(rel)) or any(component.match(part) for part in rel.split("/"))


def is_candidate(rel: str, options: WalkOptions) -> bool:
    return language_for_path(rel) is not None and not is_excluded(rel, options.excludes)


def workspace_files(root: Path, options: WalkOptions = WalkOptions()) -> list[str]:
    """Posix paths relative to root of every indexable file, sorted."""
    rels = _git_files(root) if options.use_git else None
    if rels is None:
        rels = list(_walk(root, options))
    return sorted(r for r in rels if is_candidate(r, options))


def is_binary_or_huge(data: bytes, options: WalkOptions) -> bool:
    return len(data) > options.max_file_bytes or b"\0" in data[:BINARY_SNIFF_BYTES]


def _inside(root: Path, rel: str) -> str | None:
    """The real path of root/rel (symlinks resolved) when it stays inside the workspace, else None."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, rel))
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        log.info("skipping %s: it leads out of the workspace", rel)
        return None
    return real


def stat_source(root: Path, rel: str, max_bytes: int = MAX_FILE_BYTES) -> os.stat_result | None:
    """The stat of a file `read_source` would read, else None (logged); never opens the file."""
    real = _inside(root, rel)
    if real is None:
        return None
    try:
        st = os.stat(real)
    except OSError:
        return None
    return st if _readable(rel, st, max_bytes) else None


def read_source(root: Path, rel: str, max_bytes: int = MAX_FILE_BYTES) -> tuple[bytes, os.stat_result] | None:
    """Content and stat of a regular file inside the workspace of at most max_bytes, else None (logged).

    The descriptor is opened without following a final symlink and without blocking (a FIFO
    opens at once and is then refused), and checked before anything is read.
    """
    real = _inside(root, rel)
    if real is None:
        return None
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(real, flags)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not _readable(rel, st, max_bytes):
            return None
        chunks = []
        left = max_bytes + 1  # one byte more tells that the file grew past the limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        log.info("skipping %s: it grew past %d bytes while read", rel, max_bytes)
        return None
    return data, st


def _readable(rel: str, st: os.stat_result, max_bytes: int) -> bool:
    if not stat.S_ISREG(st.st_mode):
        log.info("skipping %s: not a regular file", rel)
        return False
    return st.st_size <= max_bytes


def _git_files(root: Path) -> list[str] | None:
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=root,
            capture_output=True,
            timeout=GIT_TIMEOUT_S,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        log.info("git ls-files failed in %s; walking the tree instead", root)
        return None
    return [p for p in out.decode("utf-8", "replace").split("\0") if p and (root / p).is_file()]


def _gitignore_patterns(root: Path) -> list[str]:
    read = read_source(root, ".gitignore")
    if read is None:
        return []
    text = read[0].decode("utf-8", "replace")
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            patterns.append(line.strip("/"))
    return patterns


def _walk(root: Path, options: WalkOptions) -> Iterator[str]:
    ignores = (*options.excludes, *_gitignore_patterns(root))
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(
            d for d in dirnames if not is_excluded(d, ignores) and not is_excluded(rel_dir + d, ignores)
        )
        for name in filenames:
            rel = rel_dir + name
            if language_for_path(name) is not None and not is_excluded(rel, ignores):
                yield rel
