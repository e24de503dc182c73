"""The repository under evaluation: a path or a pinned sdist, its leak-free scratch copy and index.

The scratch copy is what the index, the retriever and jedi read. While a case runs, its file
there holds only prefix + suffix (the target is nowhere they can see); afterwards it is restored.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from context.imports import resolve_binding
from context.index import Index
from context.masking import Mask

# `name==version`: a pinned source distribution fetched from the package index.
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+$")
# Folders never copied into the scratch tree (environments, caches, VCS data).
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".venv",
        "venv",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".tox",
        ".infiller",
    }
)
# Folders whose files are not masked: tests are what checks the completions, docs and examples
# are not the code a user completes most.
NOT_CASE_DIRS = frozenset({"tests", "test", "testing", "docs", "doc", "examples", "benchmarks", "build"})
NOT_CASE_FILES = frozenset({"setup.py", "conftest.py", "noxfile.py", "conf.py"})
# Covering test files run per case at most (the closest by name first).
MAX_COVERING_TESTS = 2


def fetch_sdist(spec: str, into: Path) -> Path:
    """Download `name==version`'s sdist into `into` (once) and unpack it there; returns the tree."""
    name, version = spec.split("==")
    into.mkdir(parents=True, exist_ok=True)
    found = _unpacked(into, name, version)
    if found is not None:
        return found
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
    done = subprocess.run(
        [*cmd, spec, "-d", str(into)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    if done.returncode:
        # pip's last lines say why (no such project or version, no sdist, no network).
        said = " ".join(line.strip() for line in done.stderr.strip().splitlines()[-2:])
        raise FileNotFoundError(f"{spec}: pip could not download its sdist: {said or 'no reason given'}")
    archives = [p for p in into.glob("*.tar.gz") if _norm(p.name).startswith(_norm(f"{name}-{version}"))]
    if not archives:
        raise FileNotFoundError(f"pip downloaded no sdist for {spec} into {into}")
    with tarfile.open(archives[0]) as tar:
        tar.extractall(into, filter="data")
    found = _unpacked(into, name, version)
    if found is None:
        raise FileNotFoundError(f"{archives[0]} did not unpack to {name}-{version}/")
    return found


def _norm(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()


def _unpacked(into: Path, name: str, version: str) -> Path | None:
    want = _norm(f"{name}-{version}")
    for path in into.iterdir():
        if path.is_dir() and _norm(path.name) == want:
            return path
    return None


def resolve_repo(spec: str, cache: Path) -> Path:
    """A directory for REPO: an existing path, or a pinned sdist fetched into `cache`."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path.resolve()
    if PINNED.match(spec):
        return fetch_sdist(spec, cache).resolve()
    raise FileNotFoundError(f"{spec}: not a directory, nor a pinned sdist like `boltons==24.1.0`")


def is_test_file(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    name = parts[-1]
    return name.startswith("test_") or name.endswith("_test.py") or any(p in ("tests", "test") for p in parts)


def is_case_file(rel: str) -> bool:
    """Python product code: not tests, docs, examples or packaging scripts."""
    parts = PurePosixPath(rel).parts
    return (
        rel.endswith(".py")
        and not is_test_file(rel)
        and parts[-1] not in NOT_CASE_FILES
        and not any(p in NOT_CASE_DIRS for p in parts[:-1])
    )


def copy_tree(src: Path, dst: Path) -> None:
    """The scratch copy (replaced when it exists: a previous run may have died mid-case)."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*SKIP_DIRS), symlinks=True)


class Workspace:
    """The original tree (read-only for us), its scratch copy and the copy's index."""

    def __init__(self, source: Path, scratch: Path, db_path: Path) -> None:
        self.source = source
        # Same folder name as the original: the prompt names the repository. Absolute: the index
        # reads a relative path as already relative to its root, so a relative --out made the
        # completed file a stranger to itself, and retrieval offered its own text as context.
        self.root = scratch.resolve() / source.name
        copy_tree(source, self.root)
        self.index = Index.open(self.root, db_path)
        self.index.refresh()
        self._covering: dict[str, list[str]] = {}

    def close(self) -> None:
        self.index.close()

    def files(self) -> list[str]:
        return [rel for rel in self.index.files() if is_case_file(rel)]

    def read(self, rel: str) -> str | None:
        try:
            return (self.source / rel).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def imported_elsewhere(self, rel: str) -> dict[str, str]:
        """The file's names bound by imports that resolve to another file of the repository."""
        out = {}
        for binding in self.index.bindings(rel):
            if not binding.local or binding.local == "*":
                continue
            target = resolve_binding(self.index, rel, binding)
            if target is not None and target.path != rel:
                out[binding.local] = target.path
        return out

    @contextmanager
    def masked(self, mask: Mask, text: str) -> Iterator[None]:
        """The scratch file holds only prefix + suffix while the block runs, and is re-indexed."""
        path = self.root / mask.path
        path.write_text(mask.buffer(text), "utf-8")
        self.index.reindex_file(mask.path)
        try:
            yield
        finally:
            path.write_text(text, "utf-8")
            self.index.reindex_file(mask.path)

    def covering_tests(self, rel: str) -> list[str]:
        """Test files that exercise `rel`: `test_<stem>.py` first (nearest folder first), then
        test files importing it. At most MAX_COVERING_TESTS."""
        if rel not in self._covering:
            self._covering[rel] = self._find_covering_tests(rel)
        return self._covering[rel]

    def _find_covering_tests(self, rel: str) -> list[str]:
        stem = PurePosixPath(rel).stem
        if stem == "__init__":
            stem = PurePosixPath(rel).parent.name
        tests = [t for t in self.index.files() if t.endswith(".py") and is_test_file(t)]
        wanted = {f"test_{stem}.py", f"{stem}_test.py"}
        by_name = [t for t in tests if PurePosixPath(t).name in wanted]
        folder = PurePosixPath(rel).parent
        by_name.sort(key=lambda t: (not PurePosixPath(t).is_relative_to(folder), len(t), t))
        importing = []
        for test in tests:
            if test in by_name:
                continue
            if any(target == rel for target in self.imported_elsewhere(test).values()):
                importing.append(test)
        return (by_name + sorted(importing))[:MAX_COVERING_TESTS]
