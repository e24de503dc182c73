"""Running pytest on generated code in a throwaway copy of the workspace.

Generated code is untrusted: it runs in a temporary copy (the user's files are never touched),
with the project's own interpreter, a wall-clock timeout that kills the whole process group,
proxy/network variables removed from the environment, and all output captured. Per-test
outcomes come from pytest's JUnit XML, so one failing test never hides the others.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

# Folders never copied: VCS data, environments and caches are large and irrelevant to tests.
SKIP_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".venv",
        "venv",
        "env",
        ".env",
        "node_modules",
        "__pycache__",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".tox",
        ".nox",
        "build",
        "dist",
        ".idea",
        ".vscode",
        ".infiller",
    }
)
# Files above this are data, not code a unit test needs; skipping them keeps the copy fast.
MAX_COPY_FILE_BYTES = 2_000_000
# A workspace bigger than this is not copied whole (a monorepo): only Python sources are.
MAX_COPY_TOTAL_BYTES = 200_000_000
# A generated test suite for one function should finish in seconds; beyond this it is hanging.
DEFAULT_TIMEOUT_S = 30.0
# Captured output kept per run and per failure message (enough for a traceback's tail).
MAX_OUTPUT_CHARS = 20_000
MAX_MESSAGE_CHARS = 1_500
# Environment variables that would let generated code reach the network through a proxy.
NETWORK_ENV_PREFIXES = ("http_proxy", "https_proxy", "ftp_proxy", "all_proxy", "no_proxy", "socks")
NETWORK_ENV_NAMES = frozenset(
    {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"}
)
# Interpreters of the project, in the order we look for them (relative to the workspace root).
VENV_PYTHONS = (".venv/bin/python", "venv/bin/python", ".venv/Scripts/python.exe", "venv/Scripts/python.exe")


@dataclass
class TestOutcome:
    """One test's result: `name` is the function name (class-qualified for methods)."""

    name: str
    passed: bool
    message: str = ""


@dataclass
class RunResult:
    returncode: int
    outcomes: dict[str, TestOutcome] = field(default_factory=dict)
    collection_errors: list[str] = field(default_factory=list)
    output: str = ""
    timed_out: bool = False
    duration_s: float = 0.0

    @property
    def collection_error(self) -> bool:
        """The test file itself failed (syntax, import, module-level code): no test in it ran."""
        return bool(self.collection_errors) or (
            not self.outcomes and not self.timed_out and self.returncode not in (0, 5)
        )

    def passed(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o.passed]

    def failed(self) -> list[TestOutcome]:
        return [o for o in self.outcomes.values() if not o.passed]


def project_python(root: Path) -> str:
    """The project's interpreter when it has a virtual environment with pytest, else ours."""
    for rel in VENV_PYTHONS:
        candidate = root / rel
        if candidate.is_file() and os.access(candidate, os.X_OK):
            lib = candidate.parent.parent / "lib"
            if any(lib.glob("python*/site-packages/pytest")) or (candidate.parent.parent / "Lib").exists():
                return str(candidate)
    return sys.executable


def sandbox_env(base: Mapping[str, str], root: Path, python_path: Sequence[str] = ()) -> dict[str, str]:
    """The environment for a run: no proxies or index URLs, no bytecode, the copy on sys.path."""
    env = {
        k: v
        for k, v in base.items()
        if not k.lower().startswith(NETWORK_ENV_PREFIXES) and k not in NETWORK_ENV_NAMES
    }
    env.pop("PYTHONPATH", None)
    env.pop("PYTEST_ADDOPTS", None)
    paths = [root, root / "src", *(root / p for p in python_path)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(str(p) for p in paths if p.is_dir()))
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONHASHSEED"] = "0"
    env["NO_PROXY"] = "*"
    env["no_proxy"] = "*"
    return env


def _copy_tree(src: Path, dst: Path) -> None:
    total = 0
    python_only = False
    for folder, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        rel = Path(folder).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            path = Path(folder) / name
            if path.is_symlink() or (
                python_only and not name.endswith((".py", ".pyi", ".cfg", ".toml", ".ini"))
            ):
                continue
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if size > MAX_COPY_FILE_BYTES:
                continue
            total += size
            if total > MAX_COPY_TOTAL_BYTES and not python_only:
                log.warning("workspace %s is large; copying only Python sources from here on", src)
                python_only = True
            try:
                shutil.copy2(path, dst / rel / name)
            except OSError as exc:
                log.debug("not copied: %s (%s)", path, exc)


class Sandbox:
    """A temporary copy of a workspace; each run overlays files, runs pytest, then restores them."""

    def __init__(
        self, root: Path, *, python: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.source = root.resolve()
        self.python = python or project_python(self.source)
        self.timeout_s = timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="infiller-sandbox-")
        self.root = Path(self._tmp.name) / self.source.name
        _copy_tree(self.source, self.root)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._tmp.cleanup()

    def run_pytest(
        self,
        files: Mapping[str, str],
        targets: Sequence[str],
        *,
        extra_args: Sequence[str] = (),
        python_path: Sequence[str] = (),
    ) -> RunResult:
        """Write `files` (workspace-relative path -> text), run pytest on `targets`, restore the copy.

        `python_path` holds workspace-relative folders to import from besides the root and src/.
        """
        saved: dict[Path, bytes | None] = {}
        try:
            for rel, text in files.items():
                path = self._inside(rel)
                saved[path] = path.read_bytes() if path.is_file() else None
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
            return self._pytest(targets, extra_args, python_path)
        finally:
            for path, data in saved.items():
                if data is None:
                    path.unlink(missing_ok=True)
                else:
                    path.write_bytes(data)

    def _inside(self, rel: str) -> Path:
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"{rel!r} is outside the sandbox")
        return path

    def _pytest(
        self, targets: Sequence[str], extra_args: Sequence[str], python_path: Sequence[str]
    ) -> RunResult:
        report = Path(self._tmp.name) / "report.xml"
        report.unlink(missing_ok=True)
        cmd = [
            self.python,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--tb=short",
            "--color=no",
            f"--junitxml={report}",
            *extra_args,
            *targets,
        ]
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=self.root,
            env=sandbox_env(os.environ, self.root, python_path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a timeout kills everything it spawned
        )
        timed_out = False
        try:
            out, _ = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        output = out.decode("utf-8", errors="replace")[-MAX_OUTPUT_CHARS:]
        result = RunResult(
            returncode=proc.returncode,
            output=output,
            timed_out=timed_out,
            duration_s=time.perf_counter() - start,
        )
        if report.is_file():
            result.outcomes, result.collection_errors = parse_junit(
                report.read_text(encoding="utf-8", errors="replace")
            )
        log.info(
            "sandbox pytest %s: rc=%s, %d passed, %d failed%s in %.1fs",
            " ".join(targets),
            proc.returncode,
            len(result.passed()),
            len(result.failed()),
            " (timed out)" if timed_out else "",
            result.duration_s,
        )
        return result


def parse_junit(xml_text: str) -> tuple[dict[str, TestOutcome], list[str]]:
    """Per-test outcomes from pytest's JUnit XML (skipped tests left out), and collection errors."""
    outcomes: dict[str, TestOutcome] = {}
    collection: list[str] = []
    try:
        tree = ET.fromstring(xml_text)
    except ET.ParseError:
        return outcomes, collection
    for case in tree.iter("testcase"):
        error = case.find("error")
        if error is not None and error.get("message") == "collection failure":
            collection.append(_tail((error.text or "").strip()))
            continue
        name = case.get("name", "")
        classname = case.get("classname", "")
        last = classname.rsplit(".", 1)[-1] if classname else ""
        if last[:1].isupper() and last.startswith("Test"):
            name = f"{last}.{name}"
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if case.find("skipped") is not None and problem is None:
            continue
        if problem is None:
            outcomes[name] = TestOutcome(name, True)
        else:
            detail = (problem.get("message") or "").strip()
            body = (problem.text or "").strip()
            message = body if len(body) < MAX_MESSAGE_CHARS or not detail else detail
            outcomes[name] = TestOutcome(name, False, _tail(message or detail))
    return outcomes, collection


def _tail(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else "..." + text[-MAX_MESSAGE_CHARS:]


__all__ = ["RunResult", "Sandbox", "TestOutcome", "parse_junit", "project_python", "sandbox_env"]
