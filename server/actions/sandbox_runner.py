"""The half of the sandbox that runs inside it: the launcher and the pytest plugin.

This file is mounted read-only into the sandbox and must import nothing from infiller.

As a script (`python -I -S sandbox_runner.py LIMITS [--user UID:GID] -- COMMAND...`) it sets the
resource limits, drops to an unprivileged user when started as root, and execs the command (pytest).
The limits are set here, inside the namespaces, because a process-count limit set before a user
namespace is created would count every process of the user on the machine.

As a pytest plugin (`-p sandbox_runner`) it writes one JSON line as each test starts, one per
test phase, per collection error and one at the end of the session to the file descriptor named in
$INFILLER_RESULTS_FD: a pipe whose read end only the parent holds, so no file inside the sandbox
carries the verdict.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import sys
from typing import Any

RESULTS_FD_ENV = "INFILLER_RESULTS_FD"
# Files (paths as seen inside, os.pathsep-separated) whose branch coverage the run reports.
COVERAGE_ENV = "INFILLER_COVERAGE"
# Seconds one test may run (its setup and call); past them it fails alone with TestTimedOut, so
# that one endless test (`list(iterate(f, 1))`) does not take the whole run, and every verdict
# with it, to the run's timeout.
TEST_TIMEOUT_ENV = "INFILLER_TEST_TIMEOUT"
# Limits on the command line, in this order (resource names without the RLIMIT_ prefix).
LIMIT_NAMES = ("CPU", "AS", "NPROC", "FSIZE", "NOFILE")
# One record's text is cut to this many characters: a traceback's tail is what matters.
MAX_RECORD_TEXT = 8_000

_results_fd: int | None = None
_coverage: Any = None
_test_timeout_s = 0.0


class TestTimedOut(Exception):
    """Raised inside a test that ran past $INFILLER_TEST_TIMEOUT seconds."""


def _timed_out(signum: int, frame: Any) -> None:
    raise TestTimedOut(f"the test ran past {_test_timeout_s:g} s (an endless loop or iterator?)")


def _apply_limits(spec: str) -> None:
    for name, value in zip(LIMIT_NAMES, spec.split(","), strict=True):
        if value != "-":
            limit = int(value)
            resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (limit, limit))


def main(argv: list[str]) -> None:
    """LIMITS [--user UID:GID] -- COMMAND...: limit, drop privileges, exec COMMAND."""
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    _apply_limits(options[0])
    if len(options) == 3 and options[1] == "--user":
        uid, gid = (int(part) for part in options[2].split(":"))
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)  # from root this also empties the capability sets
        if os.getuid() != uid or os.geteuid() != uid:
            raise SystemExit("sandbox: could not drop privileges")
    os.execvp(command[0], command)


# ---------------------------------------------------------------------------------------------
# The pytest plugin (hooks found by name; pytest is not imported so that the launcher stays light)


def _emit(record: dict[str, Any]) -> None:
    if _results_fd is None:
        return
    data = (json.dumps(record) + "\n").encode("utf-8", errors="replace")
    while data:
        data = data[os.write(_results_fd, data) :]


def _clip(text: str) -> str:
    return text if len(text) <= MAX_RECORD_TEXT else "..." + text[-MAX_RECORD_TEXT:]


def pytest_configure(config: Any) -> None:
    global _results_fd
    raw = os.environ.pop(RESULTS_FD_ENV, None)
    if raw is not None and _results_fd is None:
        _results_fd = int(raw)
        os.set_inheritable(_results_fd, False)  # subprocesses of the tests do not get it
    _start_coverage(os.environ.pop(COVERAGE_ENV, ""))
    global _test_timeout_s
    _test_timeout_s = float(os.environ.pop(TEST_TIMEOUT_ENV, "") or 0)
    if _test_timeout_s > 0:
        signal.signal(signal.SIGALRM, _timed_out)


def _start_coverage(files: str) -> None:
    """Measure branch arcs of `files` from before collection (when the module is imported)."""
    global _coverage
    if not files or _coverage is not None:
        return
    try:
        import coverage
    except ImportError:
        _emit({"kind": "coverage-missing"})
        return
    _coverage = coverage.Coverage(
        branch=True, data_file=None, include=files.split(os.pathsep), config_file=False
    )
    _coverage.start()


def pytest_collectreport(report: Any) -> None:
    if report.failed:
        _emit({"kind": "collect", "nodeid": report.nodeid, "text": _clip(report.longreprtext)})


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    # The parent's clock on this test: a loop inside a C function (`list(itertools.count())`)
    # never returns to the interpreter, so the alarm below cannot stop it; the parent can.
    _emit({"kind": "start", "nodeid": nodeid})


def pytest_runtest_setup(item: Any) -> None:
    if _coverage is not None:
        _coverage.switch_context(item.nodeid)  # arcs per test: which test reached which branch
    if _test_timeout_s > 0:
        signal.setitimer(signal.ITIMER_REAL, _test_timeout_s)


def pytest_runtest_teardown(item: Any) -> None:
    if _test_timeout_s > 0:
        signal.setitimer(signal.ITIMER_REAL, 0)


def pytest_runtest_logreport(report: Any) -> None:
    crash = getattr(report.longrepr, "reprcrash", None)
    _emit(
        {
            "kind": "test",
            "nodeid": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "text": _clip(report.longreprtext) if report.failed else "",
            "short": _clip(str(getattr(crash, "message", ""))) if report.failed else "",
        }
    )


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if _coverage is not None:
        _coverage.stop()
        data = _coverage.get_data()
        for context in sorted(data.measured_contexts()):
            # Query contexts are regular expressions matched anywhere: `::test_4` alone would
            # also read the arcs of `::test_494`, and a test would be credited with another's.
            data.set_query_contexts([f"^{re.escape(context)}$"])
            for path in sorted(data.measured_files()):
                arcs = sorted(data.arcs(path) or [])
                if arcs:
                    _emit({"kind": "coverage", "file": path, "context": context, "arcs": arcs})
    _emit({"kind": "finish", "exitstatus": int(exitstatus)})


if __name__ == "__main__":
    main(sys.argv[1:])
