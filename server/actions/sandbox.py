"""Running pytest on generated code, isolated from the machine it runs on.

Generated code is untrusted. On Linux it runs under bubblewrap (`bwrap`): a read-only view of the
system, the user's home folders, /run and the real workspace replaced by empty read-only folders
(only the interpreter's own trees are bound back), a private writable copy of the workspace, a
private /tmp and HOME, its own network namespace (no network, loopback included), its own PID
namespace that dies as a whole with the run, an environment built from an allowlist, and resource
limits on CPU, address space, processes, file size and open files. Started as root, it drops to
the unprivileged `nobody` before anything generated runs.

The verdict never comes from a file the tests could rewrite: a pytest plugin streams each
outcome over a pipe only this process reads (`sandbox_runner.py`), and the stream must agree
with pytest's exit status; a run that timed out, ended early or disagrees is never a pass.

Where no isolation is available (no bwrap, no namespaces, not Linux) a Sandbox refuses to run
unless the caller allows unsafe execution explicitly (the `allowUnsafeExecution` setting).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import TracebackType

from server.actions import sandbox_runner

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
# Bytes of output kept while reading (UTF-8 is at most 4 bytes per character).
MAX_OUTPUT_BYTES = 4 * MAX_OUTPUT_CHARS
# The results stream of a run; more than this is not a test suite for one function.
MAX_RESULTS_BYTES = 16_000_000
# After the runner exits (or is killed), how long its pipes may take to reach end-of-file.
DRAIN_S = 2.0
# How often the reading loop wakes up to check whether the runner has exited.
POLL_S = 0.1
# A run that waited for a CPU (a loaded machine, a niced editor) is slow, not hanging: the time
# its processes spent runnable but not running (schedstat) extends its deadline, by at most this
# many timeouts. A loop that really hangs runs, so it gains nothing and dies on time.
MAX_STARVED_EXTENSIONS = 3
# A test its own alarm could not stop (a loop inside a C function holds the interpreter) is
# stopped from outside this long after its time per test; the run is then repeated without it,
# at most this many times (each repeat drops one test, so a file of endless tests ends).
HARD_STOP_GRACE_S = 2.0
MAX_STUCK_TESTS = 3
# How such a test's failure says so (read by bugs.py: no frame tells where it was).
STOPPED_FROM_OUTSIDE = "it was stopped from outside"
# Interpreters of the project, in the order we look for them (relative to the workspace root).
VENV_PYTHONS = (".venv/bin/python", "venv/bin/python", ".venv/Scripts/python.exe", "venv/Scripts/python.exe")
# What infiller lends a project whose environment lacks pytest or coverage: the import names of
# pytest, coverage and their dependencies, copied from infiller's own environment into a folder
# of their own and put at the END of sys.path, so any package the project has wins.
PROVIDED_TOOLS = ("pytest", "coverage")
PROVIDED_MODULES = (
    "pytest",
    "_pytest",
    "py",
    "pluggy",
    "iniconfig",
    "packaging",
    "coverage",
    "exceptiongroup",
    "tomli",
    "pygments",
)
# Where the sandbox sees the lent packages.
INSIDE_TOOLS = "/run/infiller-tools"
# Starts pytest with the lent packages appended to sys.path (`python -m pytest` otherwise).
PYTEST_WITH_TOOLS = (
    "import sys, runpy; sys.path.append({tools!r}); "
    "runpy.run_module('pytest', run_name='__main__', alter_sys=True)"
)

# --- Isolation -------------------------------------------------------------------------------
# The only variables generated code inherits; everything else (tokens, keys, proxies) stays out.
ENV_ALLOWLIST = ("LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ")
# PATH inside: the interpreter's folder first (as an activated venv), then the system's.
SYSTEM_PATH = ("/usr/local/bin", "/usr/bin", "/bin")
# Who runs the generated code when the server runs as root: owns nothing, so reads only what
# everyone may read (not /etc/shadow), and is subject to the process limit, unlike root.
SANDBOX_UID = 65534
SANDBOX_GID = 65534
# Where the sandbox sees its copy, the runner and its home (private mounts, not the host's).
INSIDE_WORK = "/run/sandbox"
INSIDE_RUNNER = "/run/infiller"
INSIDE_HOME = "/tmp/home"
# Host folders replaced by empty read-only ones: homes (keys, tokens, other projects), /run
# (sockets of docker, dbus, ssh-agent), shared temporary folders, removable media.
HIDDEN_DIRS = ("/home", "/root", "/run", "/var/tmp", "/mnt", "/media")
# Resource limits (per process; the process count per sandbox). Tests of one function need
# far less; each bound stops one way of hurting the machine.
CPU_SLACK_S = 5  # CPU seconds beyond the wall-clock timeout (pytest start-up, several threads)
ADDRESS_SPACE_BYTES = 4 << 30  # NumPy and friends fit; mapping 20 GiB does not
MAX_PROCESSES = 256  # processes and threads; a fork bomb stops here
MAX_FILE_BYTES = 256 << 20  # one written file
MAX_OPEN_FILES = 1024
TMP_BYTES = 512 << 20  # the private /tmp is memory: bound it
# How long the start-up check may take before bwrap counts as unusable.
CHECK_TIMEOUT_S = 20.0


class SandboxUnavailable(ValueError):
    """No isolation here and unsafe execution not allowed: the message says why."""


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
    distrust: str = ""  # why reported passes were turned into failures (empty: none were)
    # Executed line arcs per workspace-relative file, for the files asked to be measured, and
    # per test (name as in `outcomes`) over those files.
    arcs: dict[str, set[tuple[int, int]]] = field(default_factory=dict)
    test_arcs: dict[str, set[tuple[int, int]]] = field(default_factory=dict)

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
    """The project's interpreter when it has a virtual environment, else ours."""
    for rel in VENV_PYTHONS:
        candidate = root / rel
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return sys.executable


def _site_packages(python: str) -> list[Path]:
    env = Path(python).parent.parent
    return [*env.glob("lib/python*/site-packages"), *env.glob("Lib/site-packages")]


def missing_tools(python: str) -> list[str]:
    """Which of PROVIDED_TOOLS the interpreter's environment lacks (read from its folders, not run)."""
    if Path(python) == Path(sys.executable):
        return [t for t in PROVIDED_TOOLS if importlib.util.find_spec(t) is None]
    sites = _site_packages(python)
    return [t for t in PROVIDED_TOOLS if not any((site / t).is_dir() for site in sites)]


@functools.cache
def provided_tools_dir() -> Path:
    """A read-only-able copy of pytest, coverage and their dependencies from infiller's environment.

    Made once per process; only these packages, so a project sees nothing else of infiller's."""
    folder = Path(tempfile.mkdtemp(prefix="infiller-tools-"))
    folder.chmod(0o755)
    for name in PROVIDED_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        if spec.submodule_search_locations:
            shutil.copytree(
                origin.parent, folder / name, ignore=shutil.ignore_patterns("__pycache__"), symlinks=False
            )
        elif origin.suffix == ".py":
            shutil.copyfile(origin, folder / origin.name)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def sandbox_env(
    base: Mapping[str, str],
    root: Path,
    python_path: Sequence[str] = (),
    *,
    seen_as: str | None = None,
    home: str = INSIDE_HOME,
    tmp: str = "/tmp",
    runner: str = INSIDE_RUNNER,
    python: str = sys.executable,
) -> dict[str, str]:
    """The whole environment of a run: the allowlisted variables of `base` and our own.

    `root` is the copy on this machine, `seen_as` where the run sees it (None: the same path);
    the copy, its src/ and `python_path` go on sys.path, with the runner's folder last.
    """
    env = {k: base[k] for k in ENV_ALLOWLIST if k in base}
    where = seen_as or str(root)
    rels = [rel for rel in ("", "src", *python_path) if (root / rel).is_dir()]
    paths = [where if rel in ("", ".") else f"{where}/{rel}" for rel in rels]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([*paths, runner]))
    env["PATH"] = os.pathsep.join(dict.fromkeys([str(Path(python).parent), *SYSTEM_PATH]))
    env["HOME"] = home
    env["TMPDIR"] = tmp
    env["USER"] = env["LOGNAME"] = "sandbox"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONHASHSEED"] = "0"
    return env


def _copy_tree(src: Path, dst: Path, owner: tuple[int, int] | None) -> None:
    total = 0
    python_only = False
    for folder, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS and not d.endswith(".egg-info")]
        rel = Path(folder).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        if owner is not None:
            os.chown(dst / rel, *owner)
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
                if owner is not None:
                    os.chown(dst / rel / name, *owner)
            except OSError as exc:
                log.debug("not copied: %s (%s)", path, exc)


# ---------------------------------------------------------------------------------------------
# The bubblewrap command


@dataclass(frozen=True)
class Mounts:
    """What a sandbox sees: the copy (writable), the runner (read-only) and the hidden folders."""

    copy: Path  # on this machine
    runner_dir: Path  # holds sandbox_runner.py
    hidden: tuple[Path, ...]  # replaced by empty read-only folders
    exposed: tuple[Path, ...]  # bound back read-only (the interpreter's trees)
    tools: Path | None = None  # pytest/coverage lent by infiller, bound at INSIDE_TOOLS

    @property
    def inside(self) -> str:
        return f"{INSIDE_WORK}/{self.copy.name}"


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _interpreter_trees(python: str) -> list[Path]:
    """The folders an interpreter needs: its venv or prefix, the real binary's, the venv's base."""
    exe = Path(python).absolute()
    trees = {exe.parent.parent, exe.resolve().parent.parent}
    cfg = exe.parent.parent / "pyvenv.cfg"
    if cfg.is_file():
        for line in cfg.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                trees |= {Path(value.strip()).parent, Path(value.strip()).resolve().parent}
    return sorted(trees)


def hidden_dirs(workspace: Path) -> list[Path]:
    """Host folders to hide, outermost first: homes, /run, shared temp folders and the workspace."""
    candidates = [Path(p) for p in HIDDEN_DIRS] + [Path.home(), workspace]
    out: list[Path] = []
    for path in sorted({p.resolve() for p in candidates if p.is_dir()}, key=lambda p: len(p.parts)):
        covered = any(path.is_relative_to(h) for h in [*out, Path("/tmp")])
        if path != Path("/") and not covered:
            out.append(path)
    return out


def _mkdirs(top: Path, target: Path) -> list[str]:
    """bwrap arguments creating target's missing parents below top, readable by the sandbox user."""
    args: list[str] = []
    for parent in reversed(target.relative_to(top).parents):
        if parent != Path("."):
            args += ["--perms", "0755", "--dir", str(top / parent)]
    return args


def bwrap_args(bwrap: str, mounts: Mounts) -> list[str]:
    """The bwrap command line (up to the command) for one run."""
    args = [
        bwrap,
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",  # the namespace dies with the bwrap we kill at the timeout
        "--new-session",  # no TIOCSTI into the editor's terminal
    ]
    if _as_root():
        # bwrap runs privileged; the runner needs only these two to become `nobody`.
        args += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        args += ["--unshare-user", "--disable-userns"]
    args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    args += ["--perms", "1777", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    args += ["--perms", "1777", "--dir", INSIDE_HOME]
    for hidden in mounts.hidden:
        args += ["--perms", "0755", "--tmpfs", str(hidden)]
    for tree in mounts.exposed:
        covers = [h for h in (*mounts.hidden, Path("/tmp")) if tree.is_relative_to(h) and tree != h]
        if covers:
            top = max(covers, key=lambda h: len(h.parts))
            args += [*_mkdirs(top, tree), "--ro-bind", str(tree), str(tree)]
    args += ["--perms", "0755", "--dir", INSIDE_WORK, "--bind", str(mounts.copy), mounts.inside]
    args += ["--perms", "0755", "--dir", INSIDE_RUNNER, "--ro-bind", str(mounts.runner_dir), INSIDE_RUNNER]
    if mounts.tools is not None:
        args += ["--perms", "0755", "--dir", INSIDE_TOOLS, "--ro-bind", str(mounts.tools), INSIDE_TOOLS]
    for hidden in mounts.hidden:
        args += ["--remount-ro", str(hidden)]
    args += ["--chdir", mounts.inside]
    return args


def _limits(timeout_s: float, *, isolated: bool) -> str:
    # An unsafe run has neither a user namespace nor a user of its own: a process limit there
    # would count every process of the user, the editor's included.
    nproc = str(MAX_PROCESSES) if isolated else "-"
    values = [str(int(timeout_s) + CPU_SLACK_S), str(ADDRESS_SPACE_BYTES), nproc]
    return ",".join([*values, str(MAX_FILE_BYTES), str(MAX_OPEN_FILES)])


def _runner_command(runner: str, python: str, limits: str, isolated: bool) -> list[str]:
    """The launcher: -I -S so that nothing of the project (.pth files) runs before it drops root."""
    user = ["--user", f"{SANDBOX_UID}:{SANDBOX_GID}"] if isolated and _as_root() else []
    return [python, "-I", "-S", runner, limits, *user, "--"]


def _install_runner(folder: Path) -> Path:
    folder.mkdir(mode=0o755)
    target = folder / "sandbox_runner.py"
    shutil.copyfile(sandbox_runner.__file__, target)
    target.chmod(0o644)
    return folder


@functools.cache
def isolation_available() -> tuple[bool, str]:
    """Whether generated code can run isolated here, and a sentence saying how or why not.

    Runs bwrap once with the real layout (cached for the process)."""
    if sys.platform == "darwin":
        return False, "no sandbox on macOS yet (sandbox-exec is not implemented)"
    if not sys.platform.startswith("linux"):
        return False, f"no sandbox on {sys.platform} yet"
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False, (
            "bubblewrap is not installed (Debian/Ubuntu: `apt-get install bubblewrap`; "
            "`make setup` installs it when run as root)"
        )
    with tempfile.TemporaryDirectory(prefix="infiller-sandbox-check-") as tmp:
        copy = Path(tmp) / "check"
        copy.mkdir()
        if _as_root():
            os.chown(copy, SANDBOX_UID, SANDBOX_GID)
        runner = _install_runner(Path(tmp) / "runner")
        mounts = Mounts(copy, runner, tuple(hidden_dirs(copy)), tuple(_interpreter_trees(sys.executable)))
        limits = _limits(DEFAULT_TIMEOUT_S, isolated=True)
        probe = "import os; open('probe', 'w').write(str(os.getuid()))"
        cmd = [
            *bwrap_args(bwrap, mounts),
            *_runner_command(f"{INSIDE_RUNNER}/sandbox_runner.py", sys.executable, limits, True),
            sys.executable,
            "-I",
            "-c",
            probe,
        ]
        try:
            proc = subprocess.run(
                cmd,
                env=sandbox_env({}, copy, seen_as=mounts.inside),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=CHECK_TIMEOUT_S,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"bubblewrap could not start a sandbox: {exc}"
        written = (copy / "probe").read_text() if (copy / "probe").is_file() else ""
        if proc.returncode != 0 or not written:
            why = proc.stderr.decode("utf-8", errors="replace").strip()[-300:] or f"exit {proc.returncode}"
            return False, f"bubblewrap cannot create a sandbox here: {why}"
    version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout.strip()
    return True, f"{version or 'bubblewrap'}: namespaces for mounts, PIDs, network; runs as uid {written}"


# ---------------------------------------------------------------------------------------------
# Reading a run: bounded in time and size


@dataclass
class _Capture:
    output: bytearray = field(default_factory=bytearray)
    results: bytearray = field(default_factory=bytearray)
    results_overflow: bool = False
    timed_out: bool = False


@dataclass
class _TestClock:
    """The parent's clock on the test running now, read from the runner's "start" records.

    The runner's alarm stops a test looping in Python; one looping inside a C function never
    sees it. This clock sees both, and names the test that ran `limit_s` without reporting."""

    limit_s: float
    current: str | None = None
    since: float = 0.0
    scanned: int = 0  # bytes of the results stream already read

    def read(self, results: bytearray, now: float) -> None:
        end = results.rfind(b"\n") + 1
        for line in bytes(results[self.scanned : end]).splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if not isinstance(record, dict):
                    continue
                kind, nodeid = record.get("kind"), record.get("nodeid")
                if kind == "start":
                    self.current, self.since = str(nodeid or ""), now
                elif kind == "test" and record.get("when") == "teardown" and nodeid == self.current:
                    self.current = None
        self.scanned = end

    def overdue(self, now: float) -> str | None:
        """The test past its limit (its node id), or None."""
        if self.current is not None and now - self.since > self.limit_s:
            return self.current
        return None


def _read_until(
    proc: subprocess.Popen[bytes], results_fd: int, deadline: float, clock: _TestClock | None = None
) -> tuple[_Capture, str | None]:
    """Read output and results until both pipes close, or the deadline, whichever comes first;
    with the test that `clock` found overdue (the run was stopped there), or None.

    A child that keeps a pipe open cannot hold the run: past the deadline the whole process group
    (and with it the sandbox's PID namespace) is killed and the pipes are drained for a moment."""
    assert proc.stdout is not None
    cap = _Capture()
    latest = deadline + MAX_STARVED_EXTENSIONS * max(0.0, deadline - time.monotonic())
    waited = 0.0  # CPU-wait seconds already granted
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout.fileno(), selectors.EVENT_READ, cap.output)
    sel.register(results_fd, selectors.EVENT_READ, cap.results)
    exited_at: float | None = None
    killed_at: float | None = None
    stuck: str | None = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if clock is not None and exited_at is None and killed_at is None:
                clock.read(cap.results, now)
                stuck = clock.overdue(now)
                if stuck is not None:
                    killed_at = now
                    _kill_group(proc)
            end = deadline if exited_at is None else min(deadline, exited_at + DRAIN_S)
            if killed_at is not None:
                end = killed_at + DRAIN_S
            if now >= end:
                if killed_at is not None or exited_at is not None:
                    break  # pipes held past the end: stop reading, the verdict is already formed
                wait = _tree_wait_s(proc.pid)
                if wait > waited and deadline < latest:
                    deadline, waited = min(latest, deadline + wait - waited), wait
                    continue
                cap.timed_out = True
                killed_at = now
                _kill_group(proc)
                continue
            for key, _ in sel.select(timeout=min(end - now, POLL_S)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fd)
                    continue
                _keep(cap, key.data, chunk)
        if exited_at is None and killed_at is None:
            # Both pipes closed while the runner is still going: it gets the rest of its time.
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                cap.timed_out = True
                _kill_group(proc)
    finally:
        sel.close()
    try:
        proc.wait(timeout=DRAIN_S)
    except subprocess.TimeoutExpired:
        log.error("sandbox runner %d did not die after SIGKILL", proc.pid)
    return cap, stuck


def _tree_wait_s(root: int) -> float:
    """Seconds the processes under `root` (itself included) spent runnable but waiting for a
    CPU, from /proc/<pid>/schedstat; 0 where the kernel does not say."""
    children: dict[int, list[int]] = {}
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name may hold spaces
                children.setdefault(ppid, []).append(int(entry))
    total_ns = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        with contextlib.suppress(OSError, ValueError, IndexError):
            total_ns += int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])
    return total_ns / 1e9


def _keep(cap: _Capture, buffer: bytearray, chunk: bytes) -> None:
    if buffer is cap.output:
        buffer += chunk
        if len(buffer) > 2 * MAX_OUTPUT_BYTES:
            del buffer[:-MAX_OUTPUT_BYTES]
    elif len(buffer) + len(chunk) <= MAX_RESULTS_BYTES:
        buffer += chunk
    else:
        cap.results_overflow = True


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _spawn(
    command: list[str], cwd: Path, env: Mapping[str, str], deadline: float, clock: _TestClock | None
) -> tuple[_Capture, int, str | None]:
    """Run the sandboxed pytest once, with a fresh results pipe: what it wrote, its exit status,
    and the test `clock` stopped it at (or None)."""
    read_end, write_end = os.pipe()
    env = {**env, sandbox_runner.RESULTS_FD_ENV: str(write_end)}
    try:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(write_end,),
            start_new_session=True,  # its own process group: a timeout kills all of it
        )
    except BaseException:
        os.close(read_end)
        raise
    finally:
        os.close(write_end)
    try:
        capture, stuck = _read_until(proc, read_end, deadline, clock)
    finally:
        os.close(read_end)
        if proc.stdout is not None:
            proc.stdout.close()
    returncode = proc.returncode if proc.returncode is not None else -signal.SIGKILL
    return capture, returncode, stuck


# ---------------------------------------------------------------------------------------------
# The verdict


def _test_name(nodeid: str) -> str:
    """`path::Class::test[param]` -> `Class.test[param]`; a module-level test keeps its name."""
    parts = nodeid.split("::")
    return f"{parts[-2]}.{parts[-1]}" if len(parts) > 2 else parts[-1]


def read_results(
    stream: bytes, returncode: int, *, timed_out: bool, overflow: bool = False
) -> tuple[dict[str, TestOutcome], list[str], str]:
    """Per-test outcomes, collection errors and the reason to distrust the passes (or "").

    A test fails when any record of any phase says so (a forged "passed" line cannot hide a real
    failure). Passes count only when the run ended by itself, the session's final record matches
    the exit status, and the exit status agrees with the outcomes; otherwise they become failures.
    """
    order: dict[str, None] = {}  # names in order of first appearance
    failed: dict[str, tuple[str, str]] = {}
    passed: set[str] = set()
    skipped: set[str] = set()
    collection: list[str] = []
    finishes: list[object] = []
    junk = 0
    for line in stream.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            junk += 1
            continue
        if not isinstance(record, dict):
            junk += 1
            continue
        kind = record.get("kind")
        if kind == "collect":
            collection.append(_tail(str(record.get("text", "")).strip()))
        elif kind == "finish":
            finishes.append(record.get("exitstatus"))
        elif kind in ("coverage", "coverage-missing", "start"):
            pass  # measurements and the parent's clock; never part of the verdict
        elif kind == "test":
            name = _test_name(str(record.get("nodeid", "")))
            order[name] = None
            outcome = record.get("outcome")
            if outcome == "failed":
                failed.setdefault(name, (str(record.get("text", "")), str(record.get("short", ""))))
            elif outcome == "skipped":
                skipped.add(name)
            elif outcome == "passed" and record.get("when") == "call":
                passed.add(name)
        else:
            junk += 1
    outcomes: dict[str, TestOutcome] = {}
    for name in order:
        if name in failed:
            body, short = (part.strip() for part in failed[name])
            message = body if len(body) < MAX_MESSAGE_CHARS or not short else short
            outcomes[name] = TestOutcome(name, False, _tail(message or short))
        elif name in passed and name not in skipped:
            outcomes[name] = TestOutcome(name, True)
    distrust = _distrust(returncode, timed_out, overflow, junk, finishes, outcomes, collection)
    if distrust:
        for outcome in outcomes.values():
            if outcome.passed:
                outcome.passed, outcome.message = False, distrust
    return outcomes, collection, distrust


def read_coverage(
    stream: bytes, seen_root: str
) -> tuple[dict[str, set[tuple[int, int]]], dict[str, set[tuple[int, int]]]]:
    """Executed arcs per workspace-relative file, and per test, from a run's coverage records.

    Coverage data comes from inside the sandbox, so it only ever measures (never judges): a
    forged record can inflate a coverage figure, not turn a failing test into a passing one."""
    by_file: dict[str, set[tuple[int, int]]] = {}
    by_test: dict[str, set[tuple[int, int]]] = {}
    prefix = seen_root.rstrip("/") + "/"
    for line in stream.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or record.get("kind") != "coverage":
            continue
        path = str(record.get("file", ""))
        arcs = record.get("arcs")
        if not path.startswith(prefix) or not isinstance(arcs, list):
            continue
        pairs = {
            (int(a[0]), int(a[1]))
            for a in arcs
            if isinstance(a, list) and len(a) == 2 and all(isinstance(x, int) for x in a)
        }
        by_file.setdefault(path[len(prefix) :], set()).update(pairs)
        context = str(record.get("context", ""))
        if context:
            by_test.setdefault(_test_name(context), set()).update(pairs)
    return by_file, by_test


def _distrust(
    returncode: int,
    timed_out: bool,
    overflow: bool,
    junk: int,
    finishes: list[object],
    outcomes: Mapping[str, TestOutcome],
    collection: list[str],
) -> str:
    if timed_out:
        return "the test run timed out (killed): no result of it counts as a pass"
    if overflow or junk:
        return "the results channel carried data that pytest did not write"
    if not finishes:
        return f"pytest did not finish its session (exit status {returncode})"
    if any(status != returncode for status in finishes):
        return f"the reported results disagree with pytest's exit status {returncode}"
    any_failure = bool(collection) or any(not o.passed for o in outcomes.values())
    if returncode == 5 and outcomes:
        return "pytest exited with 'no tests collected' but tests reported results"
    if returncode not in (0, 5) and not any_failure:
        return f"pytest exited with status {returncode} but no test reported a failure"
    return ""


def _tail(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else "..." + text[-MAX_MESSAGE_CHARS:]


# ---------------------------------------------------------------------------------------------
# Files in the copy: written and restored without following links the tests may have planted


def _relative(rel: str) -> PurePosixPath:
    path = PurePosixPath(rel.replace("\\", "/"))
    if path.is_absolute() or not path.parts or ".." in path.parts:
        raise ValueError(f"{rel!r} is outside the sandbox")
    return path


def _unlink_links(root: Path, rel: PurePosixPath) -> Path:
    """root/rel with every symbolic link (or non-folder) on the way to it removed."""
    current = root
    for part in rel.parts[:-1]:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            current.unlink()
    target = current / rel.parts[-1]
    if target.is_symlink():
        target.unlink()
    return target


def _read_regular(root: Path, rel: PurePosixPath) -> bytes | None:
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            return None
    return current.read_bytes() if current.is_file() else None


class Sandbox:
    """A temporary copy of a workspace; each run overlays files, runs pytest, then restores them."""

    def __init__(
        self,
        root: Path,
        *,
        python: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        allow_unsafe: bool = False,
    ) -> None:
        self.isolated, how = isolation_available()
        if not self.isolated and not allow_unsafe:
            raise SandboxUnavailable(
                f"refusing to run generated code without a sandbox: {how}. "
                "Set `infiller.allowUnsafeExecution` to run it with your own permissions."
            )
        if not self.isolated:
            log.warning("running generated code WITHOUT isolation (allowUnsafeExecution): %s", how)
        self.source = root.resolve()
        self.python = python or project_python(self.source)
        # pytest/coverage the project's environment lacks are lent from infiller's (see notes).
        self.provided = missing_tools(self.python)
        self._tools = provided_tools_dir() if self.provided else None
        self.timeout_s = timeout_s
        self._tmp = tempfile.TemporaryDirectory(prefix="infiller-sandbox-")
        top = Path(self._tmp.name)
        self.root = top / "work" / self.source.name
        self._owner = (SANDBOX_UID, SANDBOX_GID) if self.isolated and _as_root() else None
        _copy_tree(self.source, self.root, self._owner)
        self._runner_dir = _install_runner(top / "runner")
        if not self.isolated:
            (top / "home").mkdir()
            (top / "tmp").mkdir()
        self._mounts = Mounts(
            self.root,
            self._runner_dir,
            tuple(hidden_dirs(self.source)),
            tuple(_interpreter_trees(self.python)),
            self._tools,
        )

    @property
    def notes(self) -> list[str]:
        """What the user should know about how tests run here (lent tools), one sentence each."""
        if not self.provided:
            return []
        return [
            f"{' and '.join(self.provided)} provided by infiller: the project's environment "
            f"({self.python}) lacks {'them' if len(self.provided) > 1 else 'it'}"
        ]

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
        coverage: Sequence[str] = (),
        test_timeout_s: float = 0.0,
    ) -> RunResult:
        """Write `files` (workspace-relative path -> text), run pytest on `targets`, restore the copy.

        `python_path` holds workspace-relative folders to import from besides the root and src/;
        `coverage` workspace-relative files whose executed branch arcs the result carries;
        `test_timeout_s` (when set) fails a single test that runs longer, and the run goes on (a
        test deaf to its alarm is stopped from outside and the others are run again without it).
        Between runs nothing of the sandbox is alive, so links it left in the copy are removed
        before this process writes there (it would otherwise write through them).
        """
        saved: dict[PurePosixPath, bytes | None] = {}
        try:
            for rel, text in files.items():
                path = _relative(rel)
                saved[path] = _read_regular(self.root, path)
                self._write(path, text.encode("utf-8"))
            return self._pytest(targets, extra_args, python_path, coverage, test_timeout_s)
        finally:
            for path, data in saved.items():
                target = _unlink_links(self.root, path)
                if data is None:
                    if target.is_file():
                        target.unlink()
                else:
                    self._write(path, data)

    def _write(self, rel: PurePosixPath, data: bytes) -> None:
        target = _unlink_links(self.root, rel)
        for parent in reversed(rel.parents):
            folder = self.root / parent
            if not folder.is_dir():
                folder.mkdir()
                if self._owner is not None:
                    os.chown(folder, *self._owner)
        if target.is_dir():
            shutil.rmtree(target)
        target.unlink(missing_ok=True)
        with open(target, "xb") as out:  # exclusive: never through a link or a hard link
            out.write(data)
        if self._owner is not None:
            os.chown(target, *self._owner)

    def _command(self, targets: Sequence[str], extra_args: Sequence[str]) -> list[str]:
        if self._tools is None:
            launch = ["-m", "pytest"]
        else:
            tools = INSIDE_TOOLS if self.isolated else str(self._tools)
            launch = ["-c", PYTEST_WITH_TOOLS.format(tools=tools)]
        pytest = [
            self.python,
            *launch,
            "-p",
            "sandbox_runner",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--tb=short",
            "--color=no",
            *extra_args,
            *targets,
        ]
        limits = _limits(self.timeout_s, isolated=self.isolated)
        if not self.isolated:
            runner = str(self._runner_dir / "sandbox_runner.py")
            return [*_runner_command(runner, self.python, limits, False), *pytest]
        bwrap = shutil.which("bwrap") or "bwrap"
        runner = f"{INSIDE_RUNNER}/sandbox_runner.py"
        return [
            *bwrap_args(bwrap, self._mounts),
            *_runner_command(runner, self.python, limits, True),
            *pytest,
        ]

    def _seen_root(self) -> str:
        return self._mounts.inside if self.isolated else str(self.root)

    def _pytest(
        self,
        targets: Sequence[str],
        extra_args: Sequence[str],
        python_path: Sequence[str],
        coverage: Sequence[str] = (),
        test_timeout_s: float = 0.0,
    ) -> RunResult:
        if self.isolated:
            env = sandbox_env(
                os.environ, self.root, python_path, seen_as=self._mounts.inside, python=self.python
            )
        else:
            top = Path(self._tmp.name)
            env = sandbox_env(
                os.environ,
                self.root,
                python_path,
                home=str(top / "home"),
                tmp=str(top / "tmp"),
                runner=str(self._runner_dir),
                python=self.python,
            )
        if coverage:
            seen = self._seen_root()
            env[sandbox_runner.COVERAGE_ENV] = os.pathsep.join(f"{seen}/{_relative(r)}" for r in coverage)
        if test_timeout_s > 0:
            env[sandbox_runner.TEST_TIMEOUT_ENV] = f"{test_timeout_s:g}"
        start = time.perf_counter()
        deadline = time.monotonic() + self.timeout_s
        stuck: list[str] = []  # node ids of tests stopped from outside, in order
        while True:
            clock = _TestClock(test_timeout_s + HARD_STOP_GRACE_S) if test_timeout_s > 0 else None
            deselect = [f"--deselect={nodeid}" for nodeid in stuck]
            command = self._command(targets, [*extra_args, *deselect])
            capture, returncode, overdue = _spawn(command, self.root, env, deadline, clock)
            if overdue is None:
                break
            if len(stuck) == MAX_STUCK_TESTS:
                capture.timed_out = True  # one endless test too many: the run as a whole failed
                break
            stuck.append(overdue)
        outcomes, collection, distrust = read_results(
            bytes(capture.results),
            returncode,
            timed_out=capture.timed_out,
            overflow=capture.results_overflow,
        )
        for nodeid in stuck:
            name = _test_name(nodeid)
            outcomes[name] = TestOutcome(
                name,
                False,
                f"TestTimedOut: the test ran past {test_timeout_s:g} s and did not stop at its alarm "
                f"(a loop inside a C function?): {STOPPED_FROM_OUTSIDE}, and the other tests were "
                "run again without it",
            )
        result = RunResult(
            returncode=returncode,
            outcomes=outcomes,
            collection_errors=collection,
            output=capture.output.decode("utf-8", errors="replace")[-MAX_OUTPUT_CHARS:],
            timed_out=capture.timed_out,
            duration_s=time.perf_counter() - start,
            distrust=distrust,
        )
        if coverage:
            result.arcs, result.test_arcs = read_coverage(bytes(capture.results), self._seen_root())
        log.info(
            "sandbox pytest %s: rc=%s, %d passed, %d failed%s in %.1fs",
            " ".join(targets),
            returncode,
            len(result.passed()),
            len(result.failed()),
            f" ({distrust})" if distrust else "",
            result.duration_s,
        )
        return result


__all__ = [
    "RunResult",
    "Sandbox",
    "SandboxUnavailable",
    "TestOutcome",
    "isolation_available",
    "missing_tools",
    "project_python",
    "read_coverage",
    "read_results",
    "sandbox_env",
]
