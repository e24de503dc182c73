"""Hostile generated tests, run through `Sandbox.run_pytest`: every escape must be contained.

Each probe is a pytest file a model could have written. It tries one escape and asserts, from the
inside, that it failed; this side checks the effect (the real workspace, the host's /tmp, the
host's process table) and that the probe really ran. The 2,000-process probe is bounded by its
own loop, so a missing limit costs 2,000 sleeping processes, never a fork bomb.
"""

from __future__ import annotations

import os
import socket
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from server.actions.sandbox import DRAIN_S, MAX_PROCESSES, RunResult, Sandbox, isolation_available

AVAILABLE, HOW = isolation_available()
pytestmark = pytest.mark.skipif(not AVAILABLE, reason=f"no sandbox on this machine: {HOW}")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "invoice"
# A probe run that takes longer than this is not contained (the normal ones take 1-3 s).
PROBE_TIMEOUT_S = 20.0


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "tests").mkdir(parents=True)
    (root / "app.py").write_text("def add(a, b):\n    return a + b\n")
    (root / "tests" / "test_app.py").write_text(
        "from app import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n"
    )
    return root


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _probe(root: Path, source: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> RunResult:
    """Run one probe file; the real workspace must be byte-for-byte what it was."""
    before = _snapshot(root)
    with Sandbox(root, timeout_s=timeout_s) as sandbox:
        run = sandbox.run_pytest({"tests/test_probe.py": textwrap.dedent(source)}, ["tests/test_probe.py"])
    assert _snapshot(root) == before, "the real workspace changed"
    return run


def _alive_with(marker: str) -> list[int]:
    """Host processes whose command line holds `marker` (after a short grace for the kernel)."""
    found: list[int] = []
    for _ in range(20):
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker.encode() in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    continue
        if not found:
            return []
        time.sleep(0.1)
    return found


def test_writes_outside_the_copy_fail(workspace: Path, tmp_path: Path) -> None:
    real = str(workspace.resolve())
    host_tmp = tmp_path / "outside.txt"
    run = _probe(
        workspace,
        f"""
        import os

        TARGETS = [
            {real!r} + "/escaped.txt",  # the real workspace, by absolute path
            {real!r} + "/app.py",
            "/etc/infiller-escaped",
            "/usr/infiller-escaped",
            {str(host_tmp)!r},  # the host's /tmp
        ]


        def test_probe():
            for target in TARGETS:
                try:
                    with open(target, "a") as f:
                        f.write("escaped")
                except OSError:
                    continue
                raise AssertionError(f"wrote {{target}}")
            # The copy itself is writable: tests may create files next to them.
            with open("inside.txt", "w") as f:
                f.write("fine")
        """,
    )
    assert run.passed() == ["test_probe"], run.output
    assert not host_tmp.exists()
    assert not Path("/etc/infiller-escaped").exists() and not Path("/usr/infiller-escaped").exists()


def test_proc_parent_cwd_and_pwd_do_not_lead_to_the_workspace(workspace: Path) -> None:
    real = str(workspace.resolve())
    run = _probe(
        workspace,
        f"""
        import os

        REAL = {real!r}


        def test_probe():
            pids = [p for p in os.listdir("/proc") if p.isdigit()]
            assert len(pids) < 10, pids  # its own PID namespace: no host processes in sight
            places = {{os.environ.get("PWD", ""), os.getcwd()}}
            for pid in [os.getppid(), *pids]:  # the parent's is not even readable (root's bwrap)
                try:
                    places.add(os.readlink(f"/proc/{{pid}}/cwd"))
                except OSError:
                    pass
            assert not any(p.startswith(REAL) for p in places), places
            for place in places:
                try:
                    with open(os.path.join(place, "escaped_via_proc.txt"), "w") as f:
                        f.write("escaped")
                except OSError:
                    pass
            assert not os.path.exists(REAL) or os.listdir(REAL) == []  # hidden
        """,
    )
    assert run.passed() == ["test_probe"], run.output


def test_a_workspace_outside_tmp_is_hidden_too() -> None:
    """The demo repository (in the checkout, not under /tmp): an empty read-only folder inside."""
    real = EXAMPLE.resolve()
    run = _probe(
        real,
        f"""
        import os

        import pytest

        REAL = {str(real)!r}


        def test_probe():
            assert os.getcwd() != REAL and os.environ["PWD"] != REAL
            if os.path.exists(REAL):
                assert os.listdir(REAL) == []
            with pytest.raises(OSError):
                open(os.path.join(REAL, "escaped.txt"), "w")
        """,
    )
    assert run.passed() == ["test_probe"], run.output


def test_os_system_runs_only_inside(workspace: Path, tmp_path: Path) -> None:
    real = str(workspace.resolve())
    host_tmp = tmp_path / "escaped_system.txt"
    run = _probe(
        workspace,
        f"""
        import os


        def test_probe():
            assert os.system("touch inside_system.txt") == 0  # a shell does run...
            assert os.system("touch {real}/escaped_system.txt 2>/dev/null") != 0  # ...but not outside
            assert os.system("touch {host_tmp} 2>/dev/null") != 0
            assert os.system("curl -s -m 2 http://example.com >/dev/null 2>&1") != 0
        """,
    )
    assert run.passed() == ["test_probe"], run.output
    assert not host_tmp.exists()


def test_secrets_are_not_readable(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    key = home / ".ssh" / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY----- fake\n")
    monkeypatch.setenv("HOME", str(home))
    real_home = str(Path(os.path.expanduser("~root")))
    run = _probe(
        workspace,
        f"""
        import os
        import sys
        from pathlib import Path


        def test_probe():
            for path in ["/etc/shadow", {str(key)!r}, os.path.expanduser("~/.ssh/id_ed25519")]:
                try:
                    Path(path).read_bytes()
                except OSError:
                    continue
                raise AssertionError(f"read {{path}}")
            assert os.environ["HOME"] != {str(home)!r}
            assert os.listdir(os.environ["HOME"]) == []  # a fresh, empty home
            for hidden in ["/root", {real_home!r}, "/home", "/run"]:
                if os.path.isdir(hidden):
                    assert not Path(hidden, ".ssh").exists(), hidden
            # /root is empty but for the way to the interpreter (pyenv lives there on some machines).
            needed = [sys.prefix, sys.base_prefix, os.path.realpath(sys.executable)]
            for entry in os.listdir("/root"):
                assert any(p.startswith(f"/root/{{entry}}/") for p in needed), entry
        """,
    )
    assert run.passed() == ["test_probe"], run.output


def test_no_network_not_even_loopback(workspace: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]
        run = _probe(
            workspace,
            f"""
            import socket

            import pytest


            def test_probe():
                with pytest.raises(OSError):  # refused: its own network namespace
                    socket.create_connection(("127.0.0.1", {port}), timeout=2)
                with pytest.raises(OSError):  # no route out either
                    socket.create_connection(("1.1.1.1", 53), timeout=2)
            """,
        )
        with pytest.raises(TimeoutError):
            listener.accept()
    assert run.passed() == ["test_probe"], run.output


def test_secret_environment_variables_are_not_inherited(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = f"secret-{uuid.uuid4().hex}"
    for name in ("GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY", "SSH_AUTH_SOCK"):
        monkeypatch.setenv(name, marker)
    run = _probe(
        workspace,
        f"""
        import os
        from pathlib import Path


        def test_probe():
            assert "GITHUB_TOKEN" not in os.environ
            assert {marker!r} not in repr(dict(os.environ))
            for environ in Path("/proc").glob("[0-9]*/environ"):
                try:
                    assert {marker!r}.encode() not in environ.read_bytes()
                except PermissionError:
                    pass
        """,
    )
    assert run.passed() == ["test_probe"], run.output


def test_two_thousand_processes_hit_the_limit(workspace: Path) -> None:
    run = _probe(
        workspace,
        f"""
        import os
        import time


        def test_probe():
            children = []
            try:
                for _ in range(2000):  # bounded: without a limit, 2,000 sleepers, no bomb
                    pid = os.fork()
                    if pid == 0:
                        time.sleep(30)
                        os._exit(0)
                    children.append(pid)
            except OSError:
                pass
            finally:
                for pid in children:
                    os.kill(pid, 9)
                    os.waitpid(pid, 0)
            print("started", len(children))
            assert len(children) < {MAX_PROCESSES}
        """,
    )
    assert run.passed() == ["test_probe"], run.output


def test_mapping_twenty_gib_fails(workspace: Path) -> None:
    run = _probe(
        workspace,
        """
        import mmap

        import pytest


        def test_probe():
            with pytest.raises(MemoryError):
                bytearray(20 << 30)
            with pytest.raises(OSError):
                mmap.mmap(-1, 20 << 30)
        """,
    )
    assert run.passed() == ["test_probe"], run.output


def test_setsid_children_die_with_the_run(workspace: Path) -> None:
    marker = f"infiller-probe-{uuid.uuid4().hex}"
    run = _probe(
        workspace,
        f"""
        import os
        import subprocess
        import sys

        SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)", {marker!r}]


        def test_probe():
            # A new session, holding our stdout, and a double-forked daemon.
            child = subprocess.Popen(SLEEPER, start_new_session=True)
            if os.fork() == 0:
                os.setsid()
                if os.fork() == 0:
                    os.execv(sys.executable, SLEEPER)
                os._exit(0)
            assert child.poll() is None
        """,
    )
    assert run.passed() == ["test_probe"], run.output
    assert run.duration_s < 10  # the daemons held stdout open; the run did not wait for them
    assert _alive_with(marker) == []


def test_stdout_held_open_past_the_timeout_is_a_timeout(workspace: Path) -> None:
    marker = f"infiller-probe-{uuid.uuid4().hex}"
    timeout_s = 3.0
    run = _probe(
        workspace,
        f"""
        import subprocess
        import sys
        import time


        def test_a_passes_first():
            assert True


        def test_b_hangs():
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", {marker!r}],
                             start_new_session=True)
            time.sleep(60)
        """,
        timeout_s=timeout_s,
    )
    assert run.timed_out
    assert run.duration_s < timeout_s + DRAIN_S + 2, run.duration_s
    assert run.passed() == []  # a timed-out run is never a pass, not even for the test before
    assert "timed out" in run.outcomes["test_a_passes_first"].message
    assert _alive_with(marker) == []


def test_a_forged_report_does_not_turn_a_failure_into_a_pass(workspace: Path) -> None:
    run = _probe(
        workspace,
        """
        import glob
        import json
        import os

        XML = '<testsuite><testcase classname="tests.test_probe" name="test_forges"/></testsuite>'
        NODE = "tests/test_probe.py::test_forges"
        FORGED = "".join(json.dumps(r) + "\\n" for r in [
            {"kind": "test", "nodeid": NODE, "when": "call", "outcome": "passed", "text": "", "short": ""},
            {"kind": "finish", "exitstatus": 0},
        ])


        def test_forges():
            # Every JUnit report it can find or guess is rewritten to say "passed"...
            guesses = {"report.xml", "../report.xml", "/tmp/report.xml"}
            for path in guesses | set(glob.glob("/tmp/**/*.xml", recursive=True)):
                try:
                    with open(path, "w") as f:
                        f.write(XML)
                except OSError:
                    pass
            # ...and every inherited descriptor gets forged results.
            for fd in map(int, os.listdir("/proc/self/fd")):
                if fd > 2:
                    try:
                        os.write(fd, FORGED.encode())
                    except OSError:
                        pass
            assert 1 == 2
        """,
    )
    assert run.passed() == []
    [failure] = run.failed()
    assert failure.name == "test_forges" and "assert 1 == 2" in failure.message


def test_a_test_that_ends_pytest_with_status_0_is_no_pass(workspace: Path) -> None:
    run = _probe(
        workspace,
        """
        import os


        def test_a_passes():
            assert True


        def test_b_exits():
            os._exit(0)  # the exit status alone would say "all passed"
        """,
    )
    assert run.returncode == 0 and not run.timed_out
    assert run.passed() == []
    assert "did not finish" in run.distrust


def test_links_left_in_the_copy_are_not_followed_by_the_host(workspace: Path, tmp_path: Path) -> None:
    """The server writes overlays into the copy and restores them: never through a planted link."""
    secret = tmp_path / "secret.txt"
    secret.write_text("host only")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "test_probe.py").write_text("keep")
    plant = f"""
        import os


        def test_plant():
            os.remove("app.py")
            os.symlink({str(secret)!r}, "app.py")
            os.rename("tests", "tests_moved")
            os.symlink({str(victim)!r}, "tests")
        """
    check = "from app import add\n\n\ndef test_overlay():\n    assert add(3, 1) == 2\n"
    with Sandbox(workspace) as sandbox:
        first = sandbox.run_pytest({"tests/test_probe.py": textwrap.dedent(plant)}, ["tests/test_probe.py"])
        assert first.passed() == ["test_plant"], first.output
        overlay = {"app.py": "def add(a, b):\n    return a - b\n", "tests/test_check.py": check}
        second = sandbox.run_pytest(overlay, ["tests/test_check.py"])
        assert second.passed() == ["test_overlay"], second.output
    assert secret.read_text() == "host only"
    assert [p.name for p in victim.iterdir()] == ["test_probe.py"]
    assert (victim / "test_probe.py").read_text() == "keep"
