"""VS Code end to end: the extension from clients/vscode, packaged as a .vsix and installed into a
real code-server (VS Code in the browser), driven by Playwright in a headless Chromium the way a
user drives it (keys typed into the page, what is on screen read back), against the real
`infiller serve` with the real 0.5B model.

Opt-in (`slow`: INFILLER_SLOW=1; minutes on a shared 2-core CPU). `make test-vscode` installs what
it needs (the `e2e` extra: Playwright for Python; Debian's chromium and ripgrep; code-server from
the npm registry into ~/.cache/infiller/e2e, see clients/vscode/e2e/install-code-server.sh) and
runs it. Asked for but not provisioned, it fails and names that target.

One user session: open shapes/report.py from Quick Open, wait until the server has loaded the model
(infiller: Show Statistics), type `return sum(` into a function body (VS Code auto-closes the
bracket, as it does for everyone), wait for the ghost text, check that it continues the line
sensibly, accept it with Tab, save, and check the file on disk; then infiller: Show Statistics
again must count the acceptance (the item's `infiller.accepted` command ran).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bench.replay.procs import free_port
from tests.conftest import TEST_MODEL

REPO = Path(__file__).resolve().parent.parent
EXTENSION = REPO / "clients" / "vscode"
INSTALL_CODE_SERVER = EXTENSION / "e2e" / "install-code-server.sh"
PROJECT = REPO / "tests" / "data" / "nvim" / "shapes"
CODE_SERVER_VERSION = "4.100.3"  # also in install-code-server.sh
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "infiller" / "e2e"
CODE_SERVER_DIR = CACHE / f"code-server-{CODE_SERVER_VERSION}"
CODE_SERVER = CODE_SERVER_DIR / "node_modules" / "code-server" / "out" / "node" / "entry.js"
PROVISION = "run `make test-vscode` (it installs them, Node excepted, and runs this test)"

# The workbench loading in a headless browser on a busy machine.
UI_TIMEOUT_S = 120
# Loading the model, then reading a cold prompt and generating, on a shared 2-core CPU.
MODEL_TIMEOUT_S = 300
# Between keystrokes: a quick typist.
KEY_DELAY_MS = 60

TOTAL_LINE = 13  # 1-based: `    return 0.0  # TODO` in total_area(rects)
TYPED = "return sum("
NOT_RUNNING = "infiller is not running"  # the extension's answer to Show Statistics meanwhile

pytestmark = [pytest.mark.slow, pytest.mark.model]

T = TypeVar("T")

# The active editor's lines as drawn (Monaco renders every line of a short file), without ghost
# text: inline suggestions are spans with class `ghost-text-decoration` inside the cursor's line.
# (`ghost-text-hidden` marks real text that a suggestion is drawn over: it is kept.)
EDITOR_LINES_JS = """() => {
  const editor = document.querySelector('.editor-group-container.active .monaco-editor');
  if (!editor) return null;
  const rows = [...editor.querySelectorAll('.view-lines .view-line')];
  rows.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
  const text = (row) => [...row.querySelectorAll('span > span')]
    .filter((s) => !s.classList.contains('ghost-text-decoration'))
    .map((s) => s.textContent).join('');
  return rows.map((r) => text(r).replace(/\\u00a0/g, ' '));
}"""

# The ghost text on screen, or null: its first line is drawn inside the cursor's line
# (`.ghost-text-decoration` spans), further lines in a view zone below it (`.ghost-text` spans in
# `.suggest-preview-text` lines; other spans there are the real rest of the cursor's line).
GHOST_JS = """() => {
  const editor = document.querySelector('.editor-group-container.active .monaco-editor');
  if (!editor) return null;
  const first = [...editor.querySelectorAll('.view-lines .ghost-text-decoration')];
  const zones = [...editor.querySelectorAll('[monaco-view-zone] .suggest-preview-text')];
  if (!first.length && !zones.length) return null;
  const lines = [first.map((s) => s.textContent).join('')];
  zones.sort((a, b) => parseFloat(a.parentElement.style.top) - parseFloat(b.parentElement.style.top));
  for (const zone of zones) {
    const rows = [...zone.querySelectorAll('.view-line')];
    rows.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
    for (const row of rows) {
      lines.push([...row.querySelectorAll('.ghost-text')].map((s) => s.textContent).join(''));
    }
  }
  return lines.join('\\n').replace(/\\u00a0/g, ' ');
}"""


# The ghost text's parts on the cursor's line, in order (VS Code draws a suggestion that replaces
# text after the cursor around that text: one part before it, one after).
GHOST_PARTS_JS = """() => [...document.querySelectorAll(
  '.editor-group-container.active .monaco-editor .view-lines .ghost-text-decoration')]
  .map((s) => s.textContent.replace(/\\u00a0/g, ' '))"""

# VS Code's completion menu (the suggest widget), when open. infiller gives it no items in a client
# that shows inline completions: the item would hold an early part of the suggestion and take Tab.
MENU_OPEN_JS = """() => document.querySelectorAll(
  '.editor-group-container.active .monaco-editor .suggest-widget.visible').length > 0"""


def _completes_sum(ghost: str) -> bool:
    """`sum(` + the ghost's first line + VS Code's auto-closed `)` is a complete expression."""
    try:
        compile(f"sum({ghost.split(chr(10), 1)[0]})", "<ghost>", "eval")
    except SyntaxError:
        return False
    return True


def chromium_path() -> str | None:
    """Debian's chromium (Playwright's own browser builds cannot be downloaded here)."""
    for candidate in (os.environ.get("INFILLER_CHROMIUM"), "chromium", "chromium-browser"):
        found = shutil.which(candidate) if candidate else None
        if found:
            return found
    return None


def run(cmd: list[str], cwd: Path, what: str, timeout: float = 600) -> None:
    done = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        output = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        pytest.fail(f"{what} failed ({done.returncode}): {' '.join(cmd)}\n{output}")


def provisioned() -> str:
    """Chromium's path, once everything outside the repo that the test needs is there."""
    missing = []
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the Python package playwright (pip install -e '.[e2e]')")
    chromium = chromium_path()
    if chromium is None:
        missing.append("chromium (apt-get install chromium)")
    for tool, how in (
        ("node", "Node 20"),
        ("npm", "npm (with Node)"),
        ("rg", "ripgrep (apt-get install ripgrep)"),
    ):
        if shutil.which(tool) is None:
            missing.append(how)
    if missing:
        pytest.fail(f"the VS Code end-to-end test needs {', '.join(missing)}: {PROVISION}")
    assert chromium is not None
    # code-server itself comes from the npm registry into the cache (a no-op once installed).
    run(["sh", str(INSTALL_CODE_SERVER), str(CODE_SERVER_DIR)], REPO, f"installing code-server ({PROVISION})")
    return chromium


def build_vsix(out: Path) -> Path:
    """The extension as a user installs it: npm install, tsc, vsce package."""
    run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], EXTENSION, "npm install")
    run(["npx", "tsc", "-p", "."], EXTENSION, "tsc")
    vsix = out / "infiller.vsix"
    # No LICENSE file or repository field in the extension folder: vsce would ask interactively.
    run(
        ["npx", "vsce", "package", "--skip-license", "--allow-missing-repository", "-o", str(vsix)],
        EXTENSION,
        "vsce package",
    )
    return vsix


@dataclass
class CodeServer:
    """A code-server on a throwaway profile, the extension installed, a copy of the test project."""

    url: str
    workspace: Path
    workdir: Path
    proc: subprocess.Popen[bytes]
    chromium: str

    def logs(self) -> list[Path]:
        logs = sorted((self.workdir / "user-data" / "logs").glob("*/exthost*/infiller.infiller/*.log"))
        logs += sorted((self.workdir / "user-data" / "logs").glob("*/exthost*/remoteexthost.log"))
        return [p for p in (self.workdir / "code-server.log", *logs) if p.exists()]

    def log_text(self) -> str:
        """The whole of code-server's and the extension's logs (the server's stderr is in them)."""
        return "\n".join(path.read_text(errors="replace") for path in self.logs())

    def log_tail(self) -> str:
        return "\n".join(f"--- {p}\n" + p.read_text(errors="replace")[-3000:] for p in self.logs())


def user_settings(server_path: Path) -> dict[str, Any]:
    return {
        "infiller.server.path": str(server_path),
        "infiller.model": TEST_MODEL,
        # A quiet, offline workbench: no trust prompt, welcome page, tips or update checks.
        "security.workspace.trust.enabled": False,
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "telemetry.telemetryLevel": "off",
        "update.mode": "none",
        "extensions.autoCheckUpdates": False,
        "extensions.autoUpdate": False,
        "extensions.ignoreRecommendations": True,
    }


@pytest.fixture(scope="module")
def code_server() -> Iterator[CodeServer]:
    """The extension running the real `infiller serve` with the test model."""
    yield from _code_server(lambda workdir: Path(sys.executable).parent / "infiller")


@pytest.fixture(scope="module")
def scripted_code_server() -> Iterator[CodeServer]:
    """The extension running `infiller serve` with the scripted model of the Neovim tests
    (tests/nvim_fakes.py), through a wrapper set as its `infiller.server.path`."""

    def wrapper(workdir: Path) -> Path:
        script = workdir / "infiller-scripted"
        script.write_text(
            f"#!/bin/sh\ncd {REPO} || exit 1\n"
            f'exec {sys.executable} -m server "$@" --fake-engine tests.nvim_fakes:fast\n'
        )
        script.chmod(0o755)
        return script

    yield from _code_server(wrapper)


def _code_server(server_path: Callable[[Path], Path]) -> Iterator[CodeServer]:
    chromium = provisioned()
    workdir = Path(tempfile.mkdtemp(prefix="infiller-vscode-"))
    try:
        vsix = build_vsix(workdir)
        workspace = workdir / "shapes"
        shutil.copytree(PROJECT, workspace)
        user_data = workdir / "user-data"
        (user_data / "User").mkdir(parents=True)
        settings = user_settings(server_path(workdir))
        (user_data / "User" / "settings.json").write_text(json.dumps(settings, indent=2))
        config = workdir / "config.yaml"  # else code-server writes one with a password into ~/.config
        config.write_text("auth: none\ncert: false\n")
        env = {
            **os.environ,
            # The server's statistics start at zero, kept apart from the user's own.
            "INFILLER_STATE_DIR": str(workdir / "state"),
            # The server's INFO lines on its stderr, which the extension's output channel logs.
            "INFILLER_LOG_LEVEL": "20",
            "XDG_CONFIG_HOME": str(workdir / "xdg-config"),
            "XDG_DATA_HOME": str(workdir / "xdg-data"),
        }
        base = [
            "node",
            str(CODE_SERVER),
            "--config",
            str(config),
            "--user-data-dir",
            str(user_data),
            "--extensions-dir",
            str(workdir / "extensions"),
        ]
        run([*base, "--install-extension", str(vsix)], workdir, "code-server --install-extension")
        port = free_port()
        with (workdir / "code-server.log").open("wb") as log:
            proc = subprocess.Popen(
                [
                    *base,
                    "--bind-addr",
                    f"127.0.0.1:{port}",
                    "--auth",
                    "none",
                    "--disable-telemetry",
                    "--disable-update-check",
                    "--disable-workspace-trust",
                    "--disable-getting-started-override",
                    str(workspace),
                ],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its extension host and `infiller serve` go with it
            )
        server = CodeServer(
            f"http://127.0.0.1:{port}/?folder={workspace}", workspace, workdir, proc, chromium
        )
        try:
            wait_until(lambda: listening(port), bool, "code-server to listen", 60, server)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever it left running
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    get: Callable[[], T], ok: Callable[[T], bool], what: str, timeout: float, server: CodeServer
) -> T:
    """Poll get() until ok(value) holds; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        if server.proc.poll() is not None:
            raise AssertionError(
                f"code-server exited ({server.proc.returncode}) waiting for {what}\n{server.log_tail()}"
            )
        value = get()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}; last: {value!r}\n{server.log_tail()}"
            )
        time.sleep(0.25)


class Workbench:
    """The VS Code page, driven with the keyboard and read from the screen."""

    def __init__(self, page: Any, server: CodeServer) -> None:
        self.page = page
        self.server = server

    def lines(self) -> list[str]:
        """The active editor's lines as drawn, ghost text left out ([] when no editor is open)."""
        lines: list[str] | None = self.page.evaluate(EDITOR_LINES_JS)
        return lines or []

    def ghost(self) -> str | None:
        ghost: str | None = self.page.evaluate(GHOST_JS)
        return ghost

    def wait_until(
        self, get: Callable[[], T], ok: Callable[[T], bool], what: str, timeout: float = UI_TIMEOUT_S
    ) -> T:
        try:
            return wait_until(get, ok, what, timeout, self.server)
        except AssertionError as exc:
            shot = Path(tempfile.gettempdir()) / f"{self.server.workdir.name}-failure.png"
            self.page.screenshot(path=str(shot))
            menu = self.page.evaluate(MENU_OPEN_JS)
            raise AssertionError(
                f"{exc}\nlines on screen: {self.lines()}\ncompletion menu open: {menu}\nscreenshot: {shot}"
            ) from None

    def keys(self, *keys: str) -> None:
        for key in keys:
            self.page.keyboard.press(key)

    def quick_open(self, text: str) -> None:
        """Ctrl+P, type (a leading `>`: the command palette), pick the entry that says it."""
        self.keys("Control+p")
        box = self.page.locator(".quick-input-widget input")
        box.wait_for(state="visible")
        box.fill(text)
        wanted = text.lstrip(">").strip()
        entries = self.page.locator(".quick-input-list .monaco-list-row").filter(has_text=wanted)
        self.wait_until(entries.count, lambda n: n > 0, f"Quick Open to offer {wanted!r}")
        entries.first.click()

    def toasts(self) -> list[str]:
        texts: list[str] = self.page.locator(".notifications-toasts .notification-toast").all_inner_texts()
        return texts

    def stats(self) -> dict[str, Any] | None:
        """infiller: Show Statistics, read from the JSON document it opens (then closed unsaved);
        None while the extension says that the server is not running (yet)."""
        self.quick_open(">infiller: Show Statistics")
        # The document is short enough to be drawn whole; its last line is the closing brace.
        lines = self.wait_until(
            lambda: self.lines() if not any(NOT_RUNNING in t for t in self.toasts()) else None,
            lambda ls: ls is None or (ls[:1] == ["{"] and "}" in ls),
            "the statistics document",
        )
        if lines is None:
            self.quick_open(">Notifications: Clear All Notifications")
            return None
        self.quick_open(">View: Revert and Close Editor")
        stats: dict[str, Any] = json.loads("\n".join(lines[: lines.index("}") + 1]))
        return stats


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (Playwright's sync API runs one instance at a time)."""
    from playwright.sync_api import sync_playwright

    chromium = provisioned()
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def workbench(browser: Any, code_server: CodeServer) -> Iterator[Workbench]:
    yield from _workbench(browser, code_server)


@pytest.fixture(scope="module")
def scripted_workbench(browser: Any, scripted_code_server: CodeServer) -> Iterator[Workbench]:
    yield from _workbench(browser, scripted_code_server)


def _workbench(browser: Any, code_server: CodeServer) -> Iterator[Workbench]:
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    try:
        page.set_default_timeout(UI_TIMEOUT_S * 1000)
        page.goto(code_server.url)
        page.locator(".explorer-folders-view").wait_for(state="visible")
        yield Workbench(page, code_server)
    finally:
        page.close()


def test_real_model_ghost_text_is_shown_accepted_with_tab_and_counted(workbench: Workbench) -> None:
    wb = workbench
    path = wb.server.workspace / "shapes" / "report.py"
    original = path.read_text()
    lines = original.split("\n")
    assert lines[TOTAL_LINE - 1] == "    return 0.0  # TODO"
    wb.quick_open("report.py")
    wb.wait_until(wb.lines, lambda ls: ls[:1] == lines[:1], "report.py to open")

    # The extension has started `infiller serve`, which loads the model in the background and
    # answers "model-loading" until then: wait for it as a user would, with the statistics.
    started = time.monotonic()
    stats = wb.wait_until(
        wb.stats, lambda s: s is not None and s["model"] is not None, "the model to load", MODEL_TIMEOUT_S
    )
    assert stats is not None
    print(f"\n{stats['model']} loaded {time.monotonic() - started:.1f}s after opening report.py")
    assert stats["accepted"] == 0
    wb.wait_until(wb.lines, lambda ls: ls[:1] == lines[:1], "report.py in front again")

    # Retype the body of total_area(): go to the line, select it after its indentation, type.
    wb.keys("Control+g")
    wb.page.keyboard.type(str(TOTAL_LINE))
    wb.keys("Enter")
    # Where the cursor rests the extension says so (infiller/cursor) and the server reads ahead.
    wb.wait_until(
        wb.server.log_text,
        lambda log: f"cursor rests at report.py:{TOTAL_LINE - 1}:" in log,
        "the server to read the prompt where the cursor rests",
    )
    wb.keys("End", "Shift+Home")
    started = time.monotonic()
    wb.page.keyboard.type(TYPED, delay=KEY_DELAY_MS)
    typed_line = f"    {TYPED})"  # the closing bracket is VS Code's own auto-closing
    wb.wait_until(wb.lines, lambda ls: ls[TOTAL_LINE - 1 : TOTAL_LINE] == [typed_line], "the typed line")
    # Its first words may come early (the server shows them in a pause and the extension asks
    # again on infiller/suggestionUpdated): wait for the whole suggestion, one that closes the call.
    wb.wait_until(
        wb.ghost,
        lambda g: bool(g) and _completes_sum(g),
        f"a whole suggestion after `{TYPED}`",
        MODEL_TIMEOUT_S,
    )
    time.sleep(1.0)  # a suggestion still streaming in is drawn again: take the settled one
    ghost = wb.ghost()
    print(f"real model: ghost text {time.monotonic() - started:.1f}s after typing: {ghost!r}")
    assert ghost and "area()" in ghost, f"expected the summed areas of the rectangles, got {ghost!r}"
    assert not wb.page.evaluate(MENU_OPEN_JS), (
        "a completion menu is open over the ghost text (Tab would take it)"
    )
    assert wb.lines()[TOTAL_LINE - 1] == typed_line, "ghost text only drawn, not written into the file"

    typed = "\n".join([*lines[: TOTAL_LINE - 1], typed_line, *lines[TOTAL_LINE:]])
    cursor = typed.index(typed_line) + len(f"    {TYPED}")
    accepted = typed[:cursor] + ghost + typed[cursor:]
    wb.keys("Tab")
    wb.wait_until(wb.lines, lambda ls: ls == accepted.split("\n"), "Tab to insert what the ghost text showed")
    wb.keys("Control+s")
    saved = wb.wait_until(path.read_text, lambda text: text == accepted, "report.py to be saved")
    compile(saved, "report.py", "exec")  # and valid Python

    stats = wb.wait_until(
        wb.stats, lambda s: s is not None and s["accepted"] >= 1, "the acceptance to be counted"
    )
    assert stats is not None and stats["accepted"] == 1 and stats["shown"] >= 1, stats


GREET_LINE = 9  # 1-based: `    greeting = ` in greetings.py


def test_a_suggestion_through_the_bracket_vs_code_closed_is_drawn_around_it_and_replaces_it(
    scripted_workbench: Workbench,
) -> None:
    """`str(` becomes `str(|)`. The scripted model writes the `)` itself and goes on (`name).upper()`):
    the server puts the `)` in the item's range, VS Code draws the ghost text around the `)` on
    screen, and Tab leaves one `)`, not two."""
    wb = scripted_workbench
    lines = (wb.server.workspace / "shapes" / "greetings.py").read_text().split("\n")
    assert lines[GREET_LINE - 1] == "    greeting = "
    wb.quick_open("greetings.py")
    wb.wait_until(wb.lines, lambda ls: ls[:1] == lines[:1], "greetings.py to open")
    # Keys typed before the extension's server is up get no inline completion, and VS Code does not
    # ask again where the cursor then rests: wait for the server, as in the test above.
    wb.wait_until(wb.stats, lambda s: s is not None and s["model"] is not None, "the server to start")
    wb.wait_until(wb.lines, lambda ls: ls[:1] == lines[:1], "greetings.py in front again")
    wb.keys("Control+g")
    wb.page.keyboard.type(str(GREET_LINE))
    wb.keys("Enter", "End")
    wb.page.keyboard.type("str(", delay=KEY_DELAY_MS)
    wb.wait_until(
        wb.lines, lambda ls: ls[GREET_LINE - 1] == "    greeting = str()", "VS Code to close the bracket"
    )
    parts = wb.wait_until(
        lambda: wb.page.evaluate(GHOST_PARTS_JS),
        lambda p: "".join(p) == "name.upper()",
        "the suggestion drawn around the `)`",
    )
    assert parts == ["name", ".upper()"], parts
    assert wb.lines()[GREET_LINE - 1] == "    greeting = str()", "ghost text only drawn, not written"
    wb.keys("Tab")
    wb.wait_until(
        wb.lines,
        lambda ls: ls[GREET_LINE - 1] == "    greeting = str(name).upper()",
        "Tab to replace the `)`",
    )
