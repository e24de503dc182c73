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
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from context.imports import resolve_binding, resolve_script_import
from context.index import Index
from context.masking import Mask
from context.syntax import language_for_path

# `name==version`: a pinned source distribution fetched from the package index.
PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+$")
# `npm:name@version` (scoped names too): a pinned npm package, fetched with `npm pack`.
PINNED_NPM = re.compile(r"^npm:((?:@[a-z0-9][\w.-]*/)?[a-z0-9][\w.-]*)@([0-9][\w.+-]*)$")
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
# The same for other languages: bundles, vendored and generated code are not what a user types.
# (Kept apart from the Python rules above so that a Python repository's cases stay those of
# earlier runs, which later samples exclude by key.)
NOT_CASE_DIRS_OTHER = frozenset({"dist", "vendor", "third_party", "__tests__", "__mocks__", "fixtures"})
NOT_CASE_SUFFIXES = (".min.js", ".d.ts", ".d.mts", ".d.cts", ".pb.go", "_generated.go")
# Test files of other languages: `x.test.ts`, `x.spec.js`, `x_test.go`, `FooTest.java`.
OTHER_TEST_NAME = re.compile(r"\.(?:test|spec)\.[a-z]+$|_test\.go$|Tests?\.java$|^test_.*\.(?:c|cc|cpp)$")
# A language's family: evaluating TypeScript takes its .tsx files too, C++ its C headers.
FAMILIES = {"typescript": ("typescript", "tsx"), "tsx": ("typescript", "tsx"), "cpp": ("cpp", "c")}
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


def fetch_npm(name: str, version: str, into: Path) -> Path:
    """Download an npm package's tarball (`npm pack`) into `into` (once) and unpack it there."""
    tree = into / f"{name.replace('/', '+')}-{version}"
    if tree.is_dir():
        return tree
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError(f"npm:{name}@{version}: fetching an npm package needs `npm` on PATH")
    into.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "pack", f"{name}@{version}", "--pack-destination", str(into), "--silent"],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        said = " ".join(line.strip() for line in done.stderr.strip().splitlines()[-2:])
        raise FileNotFoundError(f"npm:{name}@{version}: npm could not fetch it: {said or 'no reason given'}")
    archive = into / done.stdout.strip().splitlines()[-1]
    unpack = into / f".{tree.name}.partial"
    if unpack.exists():
        shutil.rmtree(unpack)
    with tarfile.open(archive) as tar:
        tar.extractall(unpack, filter="data")
    # npm tarballs hold one folder, `package/`: it becomes the tree, named after the package.
    (unpack / "package").rename(tree)
    shutil.rmtree(unpack)
    return tree


def resolve_repo(spec: str, cache: Path) -> Path:
    """A directory for REPO: an existing path, a pinned sdist or a pinned npm package fetched into
    `cache`."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return path.resolve()
    if PINNED.match(spec):
        return fetch_sdist(spec, cache).resolve()
    npm = PINNED_NPM.match(spec)
    if npm:
        return fetch_npm(npm.group(1), npm.group(2), cache).resolve()
    raise FileNotFoundError(
        f"{spec}: not a directory, nor a pinned sdist like `boltons==24.1.0` or npm package like "
        "`npm:zod@3.23.8`"
    )


def is_test_file(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    name = parts[-1]
    if name.startswith("test_") or name.endswith("_test.py") or any(p in ("tests", "test") for p in parts):
        return True
    return not rel.endswith(".py") and (
        OTHER_TEST_NAME.search(name) is not None or any(p in ("__tests__", "spec", "testdata") for p in parts)
    )


def is_case_file(rel: str, languages: Collection[str] = ("python",)) -> bool:
    """Product code in one of `languages`: not tests, docs, examples or packaging scripts (nor,
    outside Python, bundles, declarations, vendored or generated code)."""
    parts = PurePosixPath(rel).parts
    language = language_for_path(rel)
    if language not in languages or is_test_file(rel) or (language == "python" and not rel.endswith(".py")):
        return False  # (type stubs hold no code to complete)
    if parts[-1] in NOT_CASE_FILES or any(p in NOT_CASE_DIRS for p in parts[:-1]):
        return False
    return rel.endswith(".py") or not (
        rel.endswith(NOT_CASE_SUFFIXES) or any(p in NOT_CASE_DIRS_OTHER for p in parts[:-1])
    )


def main_language(files: Iterable[str], size: Callable[[str], int]) -> str | None:
    """The language most of the repository's product code is written in (by bytes)."""
    total: Counter[str] = Counter()
    for rel in files:
        language = language_for_path(rel)
        if language is not None and is_case_file(rel, (language,)):
            total[FAMILIES.get(language, (language,))[0]] += size(rel)
    return total.most_common(1)[0][0] if total else None


def with_family(languages: Iterable[str]) -> tuple[str, ...]:
    """The languages and their families' other members (TypeScript's .tsx files, C++'s headers)."""
    return tuple(dict.fromkeys(m for lang in languages for m in FAMILIES.get(lang, (lang,))))


def copy_tree(src: Path, dst: Path) -> None:
    """The scratch copy (replaced when it exists: a previous run may have died mid-case)."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*SKIP_DIRS), symlinks=True)


# Languages whose files of one folder make one package, sharing names without an import.
SAME_PACKAGE_LANGUAGES = frozenset({"go", "java"})
# A Rust `use` path inside the crate; paths of other crates (`std::`, `serde::`) name nothing here.
RUST_LOCAL_PATH = re.compile(r"^(?:crate|super|self)::")
IDENTIFIERS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _imported_names(module: str, language: str | None) -> list[str]:
    """The names an import path brings in: Rust's `crate::a::{B, c}` -> B, c; Java's
    `org.x.Thing` -> Thing. Empty for paths that can name nothing of this repository."""
    if language == "rust":
        if not RUST_LOCAL_PATH.match(module):
            return []
        tail = module.split("::")[-1] if "{" not in module else module[module.index("{") :]
        return [n for n in IDENTIFIERS.findall(tail) if n not in ("self", "super", "crate", "as")]
    if language == "java":
        last = module.rsplit(".", 1)[-1]
        return [last] if IDENTIFIERS.fullmatch(last) else []
    return []


def _go_package_file(path: str, by_folder: dict[str, list[str]]) -> str | None:
    """A file of the repository folder that Go import path `path` names (the longest folder that
    the import path ends with), or None for another module's package."""
    parts = path.split("/")
    for i in range(len(parts)):
        go = [f for f in by_folder.get("/".join(parts[i:]), ()) if f.endswith(".go")]
        if go:
            return go[0]
    return None


class Workspace:
    """The original tree (read-only for us), its scratch copy and the copy's index."""

    def __init__(
        self, source: Path, scratch: Path, db_path: Path, languages: Sequence[str] | None = None
    ) -> None:
        self.source = source
        # Same folder name as the original: the prompt names the repository. Absolute: the index
        # reads a relative path as already relative to its root, so a relative --out made the
        # completed file a stranger to itself, and retrieval offered its own text as context.
        self.root = scratch.resolve() / source.name
        copy_tree(source, self.root)
        self.index = Index.open(self.root, db_path)
        self.index.refresh()
        self._covering: dict[str, list[str]] = {}
        self._by_folder: dict[str, list[str]] | None = None
        if languages is None:
            main = main_language(self.index.files(), self._size)
            languages = (main,) if main else ("python",)
        # The languages whose files give cases (with their families: TypeScript's .tsx files).
        self.languages = with_family(languages)

    def close(self) -> None:
        self.index.close()

    def files(self) -> list[str]:
        return [rel for rel in self.index.files() if is_case_file(rel, self.languages)]

    def _size(self, rel: str) -> int:
        try:
            return (self.root / rel).stat().st_size
        except OSError:
            return 0

    def read(self, rel: str) -> str | None:
        try:
            return (self.source / rel).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def imported_elsewhere(self, rel: str) -> dict[str, str]:
        """The file's names bound by imports that resolve to another file of the repository."""
        if not rel.endswith(".py"):
            return self._declared_elsewhere(rel)
        out = {}
        for binding in self.index.bindings(rel):
            if not binding.local or binding.local == "*":
                continue
            target = resolve_binding(self.index, rel, binding)
            if target is not None and target.path != rel:
                out[binding.local] = target.path
        return out

    def _folders(self) -> dict[str, list[str]]:
        """The repository's files other than tests, by folder (a Go or Java package), built once:
        every file's cross-file names look up its own folder and its imports'."""
        if self._by_folder is None:
            self._by_folder = {}
            for rel in self.index.files():
                if not is_test_file(rel):
                    self._by_folder.setdefault(PurePosixPath(rel).parent.as_posix(), []).append(rel)
        return self._by_folder

    def _declared_elsewhere(self, rel: str) -> dict[str, str]:
        """Other languages, where an import does not always bind a name (Go's packages, C's
        includes): the top-level names of the repository files that `rel` imports (relative JS/TS
        imports, C includes) or shares a package with (Go, Java: a folder), and the names its
        import paths end with (`use crate::x::{A, b}`, `import org.x.A`) that another file
        defines; for Go, also the repository packages it imports, used as `pkg.Name`."""
        language = language_for_path(rel)
        by_folder = self._folders()
        exists = set(self.index.files())
        sources = [f for f in self.index.resolved_imports(rel) if f != rel]
        if language in SAME_PACKAGE_LANGUAGES:
            package = by_folder.get(PurePosixPath(rel).parent.as_posix(), [])
            sources += [f for f in package if f != rel and language_for_path(f) == language]
        own = {s.name for s in self.index.symbols(rel) if s.top_level}
        out: dict[str, str] = {}
        for source in dict.fromkeys(sources):
            for symbol in self.index.symbols(source):
                if symbol.top_level and symbol.name not in own:
                    out.setdefault(symbol.name, source)
        for binding in self.index.bindings(rel):
            if language == "go":
                found_at = _go_package_file(binding.module, by_folder)
                if found_at is not None and found_at != rel:
                    out.setdefault(PurePosixPath(binding.module).name, found_at)
                continue
            if resolve_script_import(rel, binding.module, exists) is not None:
                continue  # a relative import: its file's names are in already
            for name in _imported_names(binding.module, language):
                if name in own or name in out:
                    continue
                found = [d for d in self.index.definitions_named(name) if d.path != rel and d.top_level]
                if found:
                    out[name] = found[0].path
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
        test files importing it. At most MAX_COVERING_TESTS. Python only: the tests are run with
        pytest (server/eval/execute.py); other languages' files have none."""
        if not rel.endswith(".py"):
            return []
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
