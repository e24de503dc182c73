"""The server over real stdio with pygls's client, a scripted model behind it (tests/lsp_fakes.py).

These check the protocol and the latency machinery as an editor sees them: capabilities, UTF-16
positions, incremental sync, typing-through, the hot streak, following an in-flight generation,
supersede and $/cancelRequest, the completion fallback, settings errors, progress and stats.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pygls.lsp.client import LanguageClient

REPO = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data" / "lsp"
# A scenario that takes longer than this is hung, not slow.
SCENARIO_TIMEOUT_S = 60


def utf16_col(line: str) -> int:
    """UTF-16 length computed independently of the server's code."""
    return len(line.encode("utf-16-le")) // 2


class Session:
    """A started server, an initialized client, and what the server sent us."""

    def __init__(self, root: Path, state: Path) -> None:
        self.root = root
        self.state = state
        self.client = LanguageClient("infiller-tests", "0")
        self.messages: list[types.ShowMessageParams] = []
        self.progress: list[types.ProgressParams] = []
        self.init_result: types.InitializeResult | None = None
        self.versions: dict[str, int] = {}
        self.updated: list[str] = []  # uris of infiller/suggestionUpdated notifications
        self.update_seen = asyncio.Event()
        client = self.client

        @client.feature("infiller/suggestionUpdated")
        def suggestion_updated(ls: Any, params: Any) -> None:
            self.updated.append(params.uri)
            self.update_seen.set()

        @client.feature(types.WINDOW_SHOW_MESSAGE)
        def show(ls: Any, params: types.ShowMessageParams) -> None:
            self.messages.append(params)

        @client.feature(types.WINDOW_LOG_MESSAGE)
        def log(ls: Any, params: types.LogMessageParams) -> None:
            pass

        @client.feature(types.WINDOW_WORK_DONE_PROGRESS_CREATE)
        def create(ls: Any, params: types.WorkDoneProgressCreateParams) -> None:
            return None

        @client.feature(types.PROGRESS)
        def progress(ls: Any, params: types.ProgressParams) -> None:
            self.progress.append(params)

        @client.feature(types.CLIENT_REGISTER_CAPABILITY)
        def register(ls: Any, params: types.RegistrationParams) -> None:
            return None

    async def start(
        self,
        engine: str,
        options: dict[str, Any] | None = None,
        wait_model: bool = True,
        experimental: dict[str, Any] | None = None,
        inline: bool = True,
    ) -> None:
        env = {**os.environ, "INFILLER_STATE_DIR": str(self.state)}
        await self.client.start_io(
            sys.executable,
            "-m",
            "server",
            "serve",
            "--fake-engine",
            f"tests.lsp_fakes:{engine}",
            "--log-file",
            str(self.state / "server.log"),
            env=env,
            cwd=str(REPO),
        )
        caps = types.ClientCapabilities(
            experimental=experimental,
            window=types.WindowClientCapabilities(work_done_progress=True),
            # inline=False: a client without inline completion (Helix, Kate, Sublime's LSP).
            text_document=types.TextDocumentClientCapabilities(
                inline_completion=types.InlineCompletionClientCapabilities() if inline else None
            ),
            workspace=types.WorkspaceClientCapabilities(
                did_change_watched_files=types.DidChangeWatchedFilesClientCapabilities(
                    dynamic_registration=True
                )
            ),
        )
        self.init_result = await self.client.initialize_async(
            types.InitializeParams(
                process_id=os.getpid(),
                root_uri=self.root.as_uri(),
                capabilities=caps,
                initialization_options=options,
            )
        )
        self.client.initialized(types.InitializedParams())
        if wait_model:
            await self.wait_for(lambda s: s["model"] is not None, "the model to load")

    async def stats(self) -> dict[str, Any]:
        result = await self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="infiller.stats")
        )
        return dict(result._asdict()) if hasattr(result, "_asdict") else _plain(result)

    async def wait_for(
        self, check: Callable[[dict[str, Any]], bool], what: str, timeout: float = 20
    ) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            stats = await self.stats()
            if check(stats):
                return stats
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}: {stats}")
            await asyncio.sleep(0.05)

    async def wait_log(self, text: str, timeout: float = 20) -> None:
        """Until the server's log has a line containing `text` (what it is doing, not a guess of
        how long it takes on a loaded machine)."""
        deadline = asyncio.get_running_loop().time() + timeout
        log = self.state / "server.log"
        while not (log.exists() and text in log.read_text()):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {text!r} in the server's log")
            await asyncio.sleep(0.02)

    def open(self, path: Path, text: str | None = None) -> str:
        uri = path.as_uri()
        self.versions[uri] = 1
        self.client.text_document_did_open(
            types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=path.read_text() if text is None else text
                )
            )
        )
        return uri

    def edit(self, uri: str, start: tuple[int, int], end: tuple[int, int], text: str) -> None:
        """An incremental change; positions are (line, UTF-16 character)."""
        self.versions[uri] += 1
        rng = types.Range(start=types.Position(*start), end=types.Position(*end))
        self.client.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=self.versions[uri]),
                content_changes=[types.TextDocumentContentChangePartial(range=rng, text=text)],
            )
        )

    async def inline(
        self, uri: str, line: int, character: int, *, invoked: bool = True
    ) -> list[types.InlineCompletionItem]:
        kind = (
            types.InlineCompletionTriggerKind.Invoked
            if invoked
            else types.InlineCompletionTriggerKind.Automatic
        )
        result = await self.client.text_document_inline_completion_async(
            self.inline_params(uri, line, character, kind)
        )
        if result is None:
            return []
        return list(result.items) if isinstance(result, types.InlineCompletionList) else list(result)

    @staticmethod
    def inline_params(uri: str, line: int, character: int, kind: types.InlineCompletionTriggerKind) -> Any:
        return types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(trigger_kind=kind),
        )

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), timeout=10)
            self.client.exit(None)
        finally:
            await asyncio.wait_for(self.client.stop(), timeout=10)


def _plain(value: Any) -> Any:
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def run(
    tmp_path: Path,
    engine: str,
    scenario: Callable[[Session], Awaitable[None]],
    *,
    options: dict[str, Any] | None = None,
    wait_model: bool = True,
    experimental: dict[str, Any] | None = None,
    inline: bool = True,
) -> Session:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'demo'\n")
    for name in ("emoji.py", "adder.py"):
        shutil.copy(DATA / name, root / name)
    session = Session(root, tmp_path / "state")

    async def main() -> None:
        await session.start(engine, options, wait_model, experimental, inline)
        try:
            await scenario(session)
        finally:
            await session.stop()

    asyncio.run(asyncio.wait_for(main(), SCENARIO_TIMEOUT_S))
    return session


def test_initialize_announces_inline_completion_and_incremental_sync(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        assert s.init_result is not None
        caps = s.init_result.capabilities
        assert isinstance(caps.inline_completion_provider, types.InlineCompletionOptions)
        assert caps.completion_provider is not None
        sync = caps.text_document_sync
        assert isinstance(sync, types.TextDocumentSyncOptions)
        assert sync.change == types.TextDocumentSyncKind.Incremental
        assert caps.execute_command_provider is not None
        assert {"infiller.stats", "infiller.accepted"} <= set(caps.execute_command_provider.commands)

    run(tmp_path, "fast", scenario)


def test_inline_completion_at_a_utf16_position_after_emoji(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "emoji.py")
        line = (s.root / "emoji.py").read_text().split("\n")[2]
        assert utf16_col(line) != len(line)  # the case under test: astral characters before the cursor
        items = await s.inline(uri, 2, utf16_col(line))
        assert [i.insert_text for i in items] == ["rmat(label)"]
        item = items[0]
        assert item.range is not None and item.range.start == types.Position(2, utf16_col(line))
        assert item.command is not None and item.command.command == "infiller.accepted"

    run(tmp_path, "fast", scenario)


def test_incremental_edit_after_emoji_lands_where_the_client_meant(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "emoji.py")
        line = (s.root / "emoji.py").read_text().split("\n")[2]
        end = utf16_col(line)
        s.edit(uri, (2, end), (2, end), "rm")  # value = fo -> value = form
        items = await s.inline(uri, 2, end + 2)
        assert [i.insert_text for i in items] == ["at(label)"]
        # Replace "form" (a range measured in UTF-16 units) with "fo" again.
        s.edit(uri, (2, end - 2), (2, end + 2), "fo")
        items = await s.inline(uri, 2, end)
        assert [i.insert_text for i in items] == ["rmat(label)"]

    run(tmp_path, "fast", scenario)


def test_typing_through_a_suggestion_is_served_from_the_cache(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "adder.py")
        col = len("    return a")
        assert [i.insert_text for i in await s.inline(uri, 1, col)] == [" + b"]
        s.edit(uri, (1, col), (1, col), " +")
        assert [i.insert_text for i in await s.inline(uri, 1, col + 2, invoked=False)] == [" b"]
        s.edit(uri, (1, col + 2), (1, col + 2), " ")
        assert [i.insert_text for i in await s.inline(uri, 1, col + 3, invoked=False)] == ["b"]
        stats = await s.stats()
        assert stats["served_by"] == {"model": 1, "cache": 2}
        assert stats["typed_through"] == 1 and stats["cache_hit_rate"] == pytest.approx(2 / 3, abs=0.001)

    run(tmp_path, "fast", scenario)


def test_typing_inside_brackets_the_editor_closed_is_served_from_the_cache(tmp_path: Path) -> None:
    """VS Code closes a bracket as it is typed (`max(|)`): the answer made before it goes on inside
    it and past the `)` the editor put there, which is in the range it replaces (VS Code shows the
    `)` in place, the rest as ghost text around it); after the user types over it, the rest."""

    def shown(items: list[types.InlineCompletionItem]) -> list[tuple[object, int, int]]:
        return [(i.insert_text, i.range.start.character, i.range.end.character) for i in items if i.range]

    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "adder.py")
        s.edit(uri, (1, 11), (1, 12), "max")
        assert shown(await s.inline(uri, 1, 14)) == [("(a, b) + 1", 14, 14)]
        s.edit(uri, (1, 14), (1, 14), "()")
        assert shown(await s.inline(uri, 1, 15, invoked=False)) == [("a, b) + 1", 15, 16)]
        s.edit(uri, (1, 15), (1, 15), "a, b")
        assert shown(await s.inline(uri, 1, 19, invoked=False)) == [(") + 1", 19, 20)]
        # The user types over the `)`: the cursor moves, the text does not change.
        assert shown(await s.inline(uri, 1, 20, invoked=False)) == [(" + 1", 20, 20)]
        stats = await s.stats()
        assert stats["served_by"] == {"model": 1, "cache": 3}

    run(tmp_path, "fast", scenario)


def test_hot_streak_has_the_next_line_ready_after_enter(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "adder.py")
        col = len("    total = a")
        items = await s.inline(uri, 5, col)
        assert [i.insert_text for i in items] == [" + b"]
        await asyncio.sleep(0.3)  # the next line is prepared in the background
        # Accept, then Enter with auto-indent, as an editor would.
        s.edit(uri, (5, col), (5, col), " + b\n    ")
        items = await s.inline(uri, 6, 4, invoked=False)
        assert [i.insert_text for i in items] == ["return total"]
        stats = await s.stats()
        assert stats["served_by"].get("hot-streak") == 1

    run(tmp_path, "fast", scenario)


def test_the_hot_streak_goes_on_while_the_user_takes_its_lines_at_the_indentation_they_go_to(
    tmp_path: Path,
) -> None:
    """A line the hot streak prepared is shown and taken: the line after it is prepared in turn.
    The model writes each line's indentation itself, so a line that goes back a level (after a
    `return`, where editors dedent) is ready too instead of waiting for the model."""

    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "guard.py", "def clamp(x):\n    if x < 0\n")
        col = len("    if x < 0")
        assert [i.insert_text for i in await s.inline(uri, 1, col)] == [":"]
        await asyncio.sleep(0.3)  # the next line is prepared in the background
        s.edit(uri, (1, col), (1, col), ":")
        assert [i.insert_text for i in await s.inline(uri, 1, col + 1, invoked=False)] == [
            "\n        return 0"
        ]
        await asyncio.sleep(0.3)  # ... and, now that the user has it, the one after it
        s.edit(uri, (1, col + 1), (1, col + 1), "\n        return 0\n    ")  # Enter: back a level
        assert [i.insert_text for i in await s.inline(uri, 3, 4, invoked=False)] == ["return x"]
        stats = await s.stats()
        assert stats["served_by"] == {"model": 1, "hot-streak": 2}

    run(tmp_path, "fast", scenario)


def test_at_the_end_of_a_line_the_model_ended_the_prepared_next_line_is_shown_below_it(
    tmp_path: Path,
) -> None:
    """An answer that ends its line is accepted and the editor asks again there, before Enter: the
    model has already said that the line ends, so the request gets, without a generation of its
    own, the next line the hot streak is preparing, shown below the line for Tab to take too; after
    Enter that line is what is shown."""

    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "adder.py")
        col = len("    total = a")
        assert [i.insert_text for i in await s.inline(uri, 5, col)] == [" + b"]
        s.edit(uri, (5, col), (5, col), " + b")
        # The slow model is still writing it: the request follows it (or finds it cached).
        assert [i.insert_text for i in await s.inline(uri, 5, col + 4, invoked=False)] == [
            "\n    return total"
        ]
        s.edit(uri, (5, col + 4), (5, col + 4), "\n    ")
        assert [i.insert_text for i in await s.inline(uri, 6, 4, invoked=False)] == ["return total"]
        stats = await s.stats()
        assert stats["served_by"]["model"] == 1 and sum(stats["served_by"].values()) == 3, stats["served_by"]
        assert "line-ended" not in stats["no_suggestion"], stats["no_suggestion"]

    run(tmp_path, "slow", scenario)


def test_a_prepared_header_has_its_body_prepared_too(tmp_path: Path) -> None:
    """The hot streak prepared a block's header for the next line: the body below it is prepared
    as soon as the header is, not once the user reaches the header, so taking the header shows
    the body below it at once (a slow model: a line takes ~1.3 s)."""

    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "guard.py", "def clamp(x):\n    x = round\n")
        col = len("    x = round")
        assert [i.insert_text for i in await s.inline(uri, 1, col)] == ["(x)"]
        await asyncio.sleep(3.5)  # the header, then its body, written in the background
        s.edit(uri, (1, col), (1, col), "(x)\n    ")
        assert [i.insert_text for i in await s.inline(uri, 2, 4, invoked=False)] == ["if x < 0:"]
        s.edit(uri, (2, 4), (2, 4), "if x < 0:")
        items = await s.inline(uri, 2, 4 + len("if x < 0:"), invoked=False)
        assert [i.insert_text for i in items] == ["\n        return 0"]
        stats = await s.stats()
        assert stats["served_by"] == {"model": 1, "hot-streak": 2}

    run(tmp_path, "slow", scenario)


def test_no_next_line_is_prepared_in_a_function_the_answer_opened(tmp_path: Path) -> None:
    """An answer at a blank line opens another method: its body would be a new place, a cold
    prompt that the hot streak would read in the background, putting out the prompt of the body
    the user is in from the model's cache. It is not prepared; asked for, it comes from the model."""

    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "ab.py", "class A:\n    def f(self):\n        return 1\n\n")
        assert [i.insert_text for i in await s.inline(uri, 4, 0)] == ["    def g(self):"]
        await asyncio.sleep(0.3)
        s.edit(uri, (4, 0), (4, 0), "    def g(self):\n        ")
        assert [i.insert_text for i in await s.inline(uri, 5, 8, invoked=False)] == ["return 2"]
        stats = await s.stats()
        assert stats["served_by"] == {"model": 2}

    run(tmp_path, "fast", scenario)


def test_at_a_block_headers_end_the_prepared_next_line_is_shown_below_it(tmp_path: Path) -> None:
    """A suggestion that ends a block's header is accepted: the line after it, prepared for the
    Enter to come, is shown below the header at once, without asking the model again."""

    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "guard.py", "def clamp(x):\n    if x < 0\n")
        col = len("    if x < 0")
        assert [i.insert_text for i in await s.inline(uri, 1, col)] == [":"]
        await asyncio.sleep(0.3)  # the next line is prepared in the background
        s.edit(uri, (1, col), (1, col), ":")
        items = await s.inline(uri, 1, col + 1, invoked=False)
        assert [i.insert_text for i in items] == ["\n        return 0"]
        stats = await s.stats()
        assert stats["served_by"] == {"model": 1, "hot-streak": 1}

    run(tmp_path, "fast", scenario)


def test_a_header_typed_while_its_answer_was_written_gets_the_next_line_being_prepared(
    tmp_path: Path,
) -> None:
    """The user types the header's end while the model writes it: the request there follows that
    generation, which ends with nothing left to show, then the hot streak it started, for the
    line below the header, rather than a new generation writing that line again."""

    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "guard.py", "def clamp(x):\n    if x < 0\n")
        col = len("    if x < 0")
        params = Session.inline_params(uri, 1, col, types.InlineCompletionTriggerKind.Automatic)
        first = s.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="typing-1"
        )
        # The model is writing the header's end (a fixed sleep was too short on a loaded machine:
        # the request was still in its debounce, and there was no generation to follow).
        await s.wait_log("generating at guard.py:1")
        s.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="typing-1"))
        s.edit(uri, (1, col), (1, col), ":")
        items = await s.inline(uri, 1, col + 1, invoked=False)
        assert [i.insert_text for i in items] == ["\n        return 0"]
        with pytest.raises(JsonRpcRequestCancelled):
            await first
        stats = await s.stats()
        assert "model" not in stats["served_by"], stats["served_by"]

    run(tmp_path, "slow", scenario)


def test_the_next_line_is_prepared_even_when_the_request_that_started_the_generation_was_cancelled(
    tmp_path: Path,
) -> None:
    """While typing, the request that started a generation is almost always cancelled by the next
    key, and a later request follows the generation: its answer must still be cached and the line
    after it prepared, or nothing is ready when the user presses Enter."""

    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "adder.py")
        col = len("    total = a")
        params = Session.inline_params(uri, 5, col, types.InlineCompletionTriggerKind.Automatic)
        first = s.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="typing-1"
        )
        await asyncio.sleep(0.1)
        s.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="typing-1"))
        s.edit(uri, (5, col), (5, col), " ")
        assert [i.insert_text for i in await s.inline(uri, 5, col + 1, invoked=False)] == ["+ b"]
        with pytest.raises(JsonRpcRequestCancelled):
            await first
        await s.wait_for(lambda st: len(st["served_by"]) == 1, "the follower to be counted")
        await asyncio.sleep(2.0)  # the slow model writes the next line (18 tokens) in the background
        s.edit(uri, (5, col + 1), (5, col + 1), "+ b\n    ")
        assert [i.insert_text for i in await s.inline(uri, 6, 4, invoked=False)] == ["return total"]
        stats = await s.stats()
        assert stats["served_by"] == {"inflight": 1, "hot-streak": 1}

    run(tmp_path, "slow", scenario)


def test_a_pause_shows_the_finished_words_at_once_and_the_client_is_told_when_the_line_is_complete(
    tmp_path: Path,
) -> None:
    """A client that announces `infillerSuggestionUpdates` gets, in a pause, the words the model has
    finished (not half a name), then a notification, and asking again gives the whole line."""

    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "twice.py", "def twice(n):\n    \n")
        started = asyncio.get_running_loop().time()
        (early,) = [i.insert_text for i in await s.inline(uri, 1, 4, invoked=False)]
        waited = asyncio.get_running_loop().time() - started
        full = "doubled = n * 2\n    return doubled"
        assert isinstance(early, str) and early and full.startswith(early) and early != full, early
        assert early in ("doubled", "doubled =", "doubled = n", "doubled = n *"), "whole words only"
        # The slow model writes one byte every SLOW_TOKEN_S: the whole block takes ~2.7 s.
        assert waited < 2.0, waited
        await asyncio.wait_for(s.update_seen.wait(), 10)
        assert s.updated == [uri]
        assert [i.insert_text for i in await s.inline(uri, 1, 4, invoked=False)] == [full]
        stats = await s.stats()
        assert stats["served_by"] == {"early": 1, "cache": 1}

    run(tmp_path, "slow", scenario, experimental={"infillerSuggestionUpdates": True})


def test_a_pause_while_following_a_generation_shows_its_finished_words_past_the_typed_text(
    tmp_path: Path,
) -> None:
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "emoji.py", "x = fo")
        first = asyncio.ensure_future(s.inline(uri, 0, 6, invoked=False))
        await asyncio.sleep(0.2)  # the slow model has written "o_" of "o_bar(1)"
        s.edit(uri, (0, 6), (0, 6), "o")
        (early,) = [i.insert_text for i in await s.inline(uri, 0, 7, invoked=False)]
        assert early == "_bar(", "the words finished past the typed `o`, not half a name"
        await asyncio.wait_for(s.update_seen.wait(), 10)
        assert [i.insert_text for i in await s.inline(uri, 0, 7, invoked=False)] == ["_bar(1)"]
        await first
        stats = await s.stats()
        assert stats["served_by"].get("early", 0) >= 1 and stats["served_by"].get("cache") == 1

    run(tmp_path, "slow", scenario, experimental={"infillerSuggestionUpdates": True})


def test_without_the_capability_a_pause_waits_for_the_whole_answer(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "twice.py", "def twice(n):\n    \n")
        items = await s.inline(uri, 1, 4, invoked=False)
        assert [i.insert_text for i in items] == ["doubled = n * 2\n    return doubled"]
        assert s.updated == []

    run(tmp_path, "slow", scenario)


def test_typing_with_a_slow_model_gets_a_line_and_asking_gets_the_block(tmp_path: Path) -> None:
    """Once the model is measured slow, an automatic request in an empty body gets the block's
    first line (at a line's cost); an invoked one gets the whole block."""

    async def scenario(s: Session) -> None:
        adder = s.open(s.root / "adder.py")
        assert [i.insert_text for i in await s.inline(adder, 1, len("    return a"))] == [" + b"]
        uri = s.open(s.root / "twice.py", "def twice(n):\n    \n")
        items = await s.inline(uri, 1, 4, invoked=False)
        assert [i.insert_text for i in items] == ["doubled = n * 2"]
        items = await s.inline(uri, 1, 4)
        assert [i.insert_text for i in items] == ["doubled = n * 2\n    return doubled"]

    run(tmp_path, "slow", scenario)


def test_a_long_block_asked_for_from_a_slow_model_shows_its_first_whole_lines(tmp_path: Path) -> None:
    """The deadline (BLOCK_DEADLINE_MS) ends a slow block at a line end: seconds, not the whole."""

    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "steps.py", "def steps(n):\n    \n")
        started = asyncio.get_running_loop().time()
        items = await s.inline(uri, 1, 4)
        elapsed = asyncio.get_running_loop().time() - started
        full = "".join(f"n = n + {i}\n    " for i in range(1, 12)) + "return n"
        (text,) = [i.insert_text for i in items]
        assert isinstance(text, str) and full.startswith(text) and text != full, text
        assert (full[len(text) :]).startswith("\n"), "ends at a line end"
        assert elapsed < 6, elapsed  # the whole block takes over 11 s at SLOW_TOKEN_S

    run(tmp_path, "slow", scenario)


def test_a_prompt_grows_while_idle_to_reach_the_top_of_the_window(tmp_path: Path) -> None:
    """The first answer in a new place comes from a small prompt; while the model is idle the
    prompt grows in place, and the next answer there sees the lines far above."""
    filler = "".join(f"value_{i} = {i}\n" for i in range(60))  # ~700 bytes: beyond the cold window

    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "far.py", f"FAR_ABOVE = 1\n{filler}\n\ndef f():\n    return \n")
        line = filler.count("\n") + 4
        assert [i.insert_text for i in await s.inline(uri, line, 11)] == ["near()"]
        await asyncio.sleep(1.0)  # idle: the growth steps run
        s.edit(uri, (line, 11), (line, 11), "x")
        assert [i.insert_text for i in await s.inline(uri, line, 12)] == ["far()"]

    run(tmp_path, "growing", scenario)


def test_where_the_cursor_rests_the_prompt_is_read_and_grown_before_the_first_key(tmp_path: Path) -> None:
    """A client says where its cursor is outside typing (infiller/cursor). Where it rests, the
    server reads the prompt and grows it while the user looks: the first answer at that place
    already sees the lines far above, where a place nobody rested at first gets a cold prompt's."""
    filler = "".join(f"value_{i} = {i}\n" for i in range(60))  # ~700 bytes: beyond the cold window
    text = f"FAR_ABOVE = 1\n{filler}\n\ndef f():\n    return \n"
    line = filler.count("\n") + 4

    def cursor(uri: str, line: int) -> None:
        position = {"line": line, "character": 4}
        s.client.protocol.notify("infiller/cursor", {"textDocument": {"uri": uri}, "position": position})

    async def scenario(session: Session) -> None:
        nonlocal s
        s = session
        rested, passed = s.open(s.root / "rested.py", text), s.open(s.root / "passed.py", text)
        cursor(passed, line)  # passing through: the cursor moves on before it rests
        await asyncio.sleep(0.05)
        cursor(rested, line - 1)
        await asyncio.sleep(0.05)
        cursor(rested, line)
        await asyncio.sleep(1.5)  # the user looks: the prompt is read, then grown
        s.edit(rested, (line, 11), (line, 11), "x")
        assert [i.insert_text for i in await s.inline(rested, line, 12, invoked=False)] == ["far()"]
        s.edit(passed, (line, 11), (line, 11), "x")
        assert [i.insert_text for i in await s.inline(passed, line, 12, invoked=False)] == ["near()"]
        # A line asked at needs no read (its requests hold the prompt; a read would drop the next
        # line being prepared); a line passed through got none either.
        await s.inline(rested, line - 4, 0)
        cursor(rested, line - 4)
        await asyncio.sleep(0.6)
        cursor(rested, line - 2)
        await asyncio.sleep(0.6)
        log = (s.state / "server.log").read_text()
        reads = [
            m.split(": reading")[0].rsplit(" ", 1)[-1] for m in log.splitlines() if "cursor rests at" in m
        ]
        assert reads == [f"rested.py:{line}", f"rested.py:{line - 2}"], reads
        # A key right after the cursor moved (VS Code reports the moves typing makes): no read.
        cursor(rested, 2)
        s.edit(rested, (line, 12), (line, 12), "y")
        await asyncio.sleep(0.6)
        assert "cursor rests at rested.py:2:" not in (s.state / "server.log").read_text()

    s: Session
    run(tmp_path, "growing", scenario)


def test_typing_with_a_fast_model_gets_the_block(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        adder = s.open(s.root / "adder.py")
        assert [i.insert_text for i in await s.inline(adder, 1, len("    return a"))] == [" + b"]
        uri = s.open(s.root / "twice.py", "def twice(n):\n    \n")
        items = await s.inline(uri, 1, 4, invoked=False)
        assert [i.insert_text for i in items] == ["doubled = n * 2\n    return doubled"]

    run(tmp_path, "fast", scenario)


def test_a_request_typed_along_an_in_flight_generation_follows_it(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "emoji.py", "x = fo")
        first = asyncio.ensure_future(s.inline(uri, 0, 6))
        # Wait until the slow model has written a few tokens ("o_b..."), then type the "o".
        await asyncio.sleep(0.45)
        s.edit(uri, (0, 6), (0, 6), "o")
        second = await s.inline(uri, 0, 7, invoked=False)
        assert [i.insert_text for i in second] == ["_bar(1)"]  # the fresh answer would be "_baz(2)"
        assert [i.insert_text for i in await first] == ["o_bar(1)"]
        stats = await s.stats()
        assert stats["served_by"] == {"model": 1, "inflight": 1}

    run(tmp_path, "slow", scenario)


def test_a_request_typed_while_the_prompt_is_read_follows_it_blind(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "emoji.py", "x = fo")
        first = asyncio.ensure_future(s.inline(uri, 0, 6))
        await asyncio.sleep(0.2)  # the model is still reading the prompt: no output to compare yet
        s.edit(uri, (0, 6), (0, 6), "o")
        second = await s.inline(uri, 0, 7, invoked=False)
        assert [i.insert_text for i in second] == ["_bar(1)"]  # restarting would have given "_baz(2)"
        assert [i.insert_text for i in await first] == ["o_bar(1)"]
        stats = await s.stats()
        assert stats["served_by"] == {"model": 1, "inflight": 1}

    run(tmp_path, "slow_reader", scenario)


def test_a_newer_request_supersedes_a_running_generation(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "adder.py")
        col = len("    return a")
        first = asyncio.ensure_future(s.inline(uri, 1, col))
        await asyncio.sleep(0.2)
        s.edit(uri, (1, 0), (1, col), "    items.ap")  # diverges from the running generation
        second = await s.inline(uri, 1, len("    items.ap"))
        assert [i.insert_text for i in second] == ["pend(item)"]
        assert await first == []
        stats = await s.stats()
        assert stats["cancelled"] >= 1 and stats["no_suggestion"].get("superseded", 0) >= 1

    run(tmp_path, "slow", scenario)


def test_cancel_request_ends_the_request_and_is_counted(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "adder.py")
        params = Session.inline_params(uri, 1, len("    return a"), types.InlineCompletionTriggerKind.Invoked)
        future = s.client.protocol.send_request_async(
            types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id="req-1"
        )
        await asyncio.sleep(0.15)
        s.client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="req-1"))
        with pytest.raises(JsonRpcRequestCancelled):
            await future
        await s.wait_for(lambda st: st["cancelled"] >= 1, "the cancellation to be counted")

    run(tmp_path, "slow", scenario)


def test_completion_fallback_is_one_preselected_item_first(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "adder.py", "items.ap")
        result = await s.client.text_document_completion_async(
            types.CompletionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(0, 8),
                context=types.CompletionContext(trigger_kind=types.CompletionTriggerKind.Invoked),
            )
        )
        assert isinstance(result, types.CompletionList)
        assert len(result.items) == 1
        item = result.items[0]
        assert item.preselect is True and item.sort_text is not None and item.sort_text < "0"
        # It replaces the word before the cursor, so client-side filtering on "ap" keeps it.
        assert isinstance(item.text_edit, types.TextEdit)
        assert item.text_edit.new_text == "append(item)" and item.filter_text == "append(item)"
        assert item.text_edit.range == types.Range(types.Position(0, 6), types.Position(0, 8))

    run(tmp_path, "fast", scenario, inline=False)


def test_a_client_with_inline_completion_gets_no_completion_menu_item(tmp_path: Path) -> None:
    # VS Code asks for both as the user types: the menu would open on `(` with an early part of the
    # suggestion (which Tab then takes), and each key would ask the model twice.
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "adder.py", "items.ap")
        for trigger in (types.CompletionTriggerKind.Invoked, types.CompletionTriggerKind.TriggerCharacter):
            result = await s.client.text_document_completion_async(
                types.CompletionParams(
                    text_document=types.TextDocumentIdentifier(uri=uri),
                    position=types.Position(0, 8),
                    context=types.CompletionContext(trigger_kind=trigger, trigger_character="("),
                )
            )
            assert isinstance(result, types.CompletionList) and not result.items
        assert (await s.stats())["requests"] == 0
        inline = await s.client.text_document_inline_completion_async(
            Session.inline_params(uri, 0, 8, types.InlineCompletionTriggerKind.Invoked)
        )
        assert isinstance(inline, types.InlineCompletionList)
        assert [item.insert_text for item in inline.items] == ["pend(item)"]

    run(tmp_path, "fast", scenario)


def test_bad_settings_are_reported_and_defaults_used(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        await s.wait_for(lambda st: True, "the server")
        texts = [m.message for m in s.messages]
        assert any("maxTokens" in t and "expected int" in t for t in texts), texts
        assert any("debounce.minMs" in t and "below the minimum" in t for t in texts), texts
        uri = s.open(s.root / "adder.py")
        assert [i.insert_text for i in await s.inline(uri, 1, len("    return a"))] == [" + b"]
        # Disabling through didChangeConfiguration takes effect at once.
        s.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"infiller": {"enable": False}})
        )
        await asyncio.sleep(0.1)
        assert await s.inline(uri, 1, len("    return a")) == []
        stats = await s.stats()
        assert stats["no_suggestion"].get("disabled") == 1

    run(tmp_path, "fast", scenario, options={"infiller": {"maxTokens": "lots", "debounce": {"minMs": -1}}})


def test_model_loading_and_indexing_report_progress(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        await s.wait_for(lambda st: st["index_ready"], "indexing to finish")
        await asyncio.sleep(0.1)
        values = [_plain(p.value) for p in s.progress]
        begins = [v for v in values if v.get("kind") == "begin"]
        ends = [v for v in values if v.get("kind") == "end"]
        titles = " ".join(str(v.get("title")) for v in begins)
        assert "loading" in titles and "indexing" in titles
        assert len(ends) == 2

    run(tmp_path, "fast", scenario)


def test_missing_model_is_reported_and_requests_say_why(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        for _ in range(100):
            if any("not pulled" in m.message for m in s.messages):
                break
            await asyncio.sleep(0.05)
        assert any(m.type == types.MessageType.Error and "not pulled" in m.message for m in s.messages)
        uri = s.open(s.root / "adder.py")
        assert await s.inline(uri, 1, 5) == []
        stats = await s.stats()
        assert stats["no_suggestion"] == {"model-unavailable": 1}

    run(tmp_path, "missing", scenario, wait_model=False)


def test_accept_command_and_stats_persist(tmp_path: Path) -> None:
    async def scenario(s: Session) -> None:
        uri = s.open(s.root / "adder.py")
        items = await s.inline(uri, 1, len("    return a"))
        command = items[0].command
        assert command is not None
        await s.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command=command.command, arguments=command.arguments)
        )
        stats = await s.stats()
        assert stats["accepted"] == 1 and stats["shown"] == 1 and stats["acceptance_rate"] == 1.0

    session = run(tmp_path, "fast", scenario)
    import json
    import subprocess

    out = subprocess.run(
        [sys.executable, "-m", "server", "stats", "--json"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "INFILLER_STATE_DIR": str(session.state)},
        check=True,
    )
    saved = json.loads(out.stdout)
    assert saved["accepted"] == 1 and saved["served_by"] == {"model": 1}
