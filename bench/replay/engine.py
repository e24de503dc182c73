"""The simulated user: types each region with the key model into a `Driver` and takes suggestions.

The engine owns the document (text, cursor, version) and the clock. After every edit it tells the
driver, which talks to its engine (infiller over LSP, the peer over HTTP) and calls `show` when a
suggestion becomes visible. Between keys the user watches: a visible suggestion that matches what
they are about to type is taken as soon as it has been readable for `REACTION_S`, even in the middle
of a pause; otherwise the next key is typed when the key model says. An accepted suggestion is one
edit, as an editor inserts it. As editors do, the rest of a suggestion stays on screen after a
partial accept and while the user types what it says (it is then the same suggestion, not a new one).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.replay.accept import REACTION_S, Take, choose
from bench.replay.corpus import Region
from bench.replay.editor import Editor
from bench.replay.keys import key_delays
from bench.replay.metrics import Accept, Edit, Show
from context.syntax import LANGUAGES, language_for_path

# Placing the cursor in a new region, the user reads the surroundings until the first suggestion
# appears (and they have read it), but no longer than this; then they type.
LOOK_MAX_S = 20.0
# After the region's last key the user lingers this long (late answers still land, and are ignored).
LINGER_S = 1.0


class Driver(Protocol):
    """One engine under test, as an editor plugin would talk to it."""

    label: str

    async def start(self, workspace: Path) -> None: ...

    async def open(self, path: Path, text: str, version: int, cursor: int) -> None:
        """The file is opened with the cursor at `cursor` (the driver may ask for a suggestion)."""

    def change(self, version: int, text: str, cursor: int, at: int, insert: str, removed: int = 0) -> None:
        """`insert` replaced the `removed` characters at offset `at` (a taken suggestion that typed
        over closers the editor had put there; else an insertion); the document is now `text`, the
        cursor at `cursor`. An empty `insert`: only the cursor moved (over a closer the editor had
        put there)."""

    async def accepted(self, token: Any, take: Take) -> None:
        """The user took `take` of the suggestion shown with `token`."""

    async def close(self, path: Path) -> None: ...

    def pids(self) -> dict[str, int]:
        """Processes to measure: "server" (the engine's own) and "model" (where the model runs)."""

    async def stop(self) -> dict[str, Any]:
        """Shut down; the driver's own counters (requests, cancellations, ...)."""


@dataclass
class Log:
    edits: list[Edit] = field(default_factory=list)
    shows: list[Show] = field(default_factory=list)
    accepts: list[Accept] = field(default_factory=list)
    # Per region: seconds from opening to the first suggestion (None: none within LOOK_MAX_S).
    first_suggestion_s: dict[str, float | None] = field(default_factory=dict)


@dataclass
class _Visible:
    text: str
    at: float
    show: int
    token: Any
    # Characters after the cursor the suggestion replaces: closers the editor put there that it
    # writes itself (an LSP item's range), drawn around them.
    replaces: int = 0


class User:
    """Plays the regions against one driver and writes the log."""

    def __init__(self, driver: Driver, autoclose: bool = False) -> None:
        self.driver = driver
        self.autoclose = autoclose  # the editor closes brackets and quotes (VS Code), see editor.py
        self.log = Log()
        self.text = ""
        self.cursor = 0
        self.version = 0
        self._visible: _Visible | None = None
        self._shown = asyncio.Event()
        self._answered: set[int] = set()  # versions the engine has answered
        self._t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter() - self._t0

    # --- called by drivers -----------------------------------------------------------------

    def show(self, version: int, text: str, token: Any = None, replaces: int = 0) -> None:
        """The engine shows `text` at the cursor of document `version` (stale or empty: ignored),
        replacing the `replaces` characters after the cursor."""
        if version != self.version or not text:
            return
        visible = self._visible
        if visible is not None and visible.text == text and visible.replaces == replaces:
            # The engine answers with what is already on screen: its latency counts, but it is the
            # same suggestion (recorded once per version).
            if version not in self._answered:
                self._answered.add(version)
                self.log.shows.append(Show(version, self.now(), text, origin=visible.show))
            return
        self._answered.add(version)
        if visible is not None and text.startswith(visible.text) and visible.replaces == replaces:
            # The suggestion on screen grew (an early answer completed): the same suggestion, whose
            # new part the user has yet to read.
            self.log.shows.append(Show(version, self.now(), text, origin=visible.show))
            self._visible = _Visible(text, self.now(), visible.show, token, replaces)
            self._shown.set()
            return
        sid = token[0] if token and isinstance(token[0], int) else None
        self.log.shows.append(Show(version, self.now(), text, sid=sid))
        self._visible = _Visible(text, self.now(), len(self.log.shows) - 1, token, replaces)
        self._shown.set()

    # --- the user ----------------------------------------------------------------------------

    def _edit(
        self,
        insert: str,
        kind: str,
        planned_gap: float | None,
        keep: _Visible | None = None,
        seen: str | None = None,
        advance: int | None = None,
        chars: int | None = None,
        removed: int = 0,
    ) -> None:
        """`insert` at the cursor in place of the `removed` characters after it; the cursor then
        moves `advance` (default: past the insert); `chars`: the region's characters this edit
        types (default: the insert's)."""
        at = self.cursor
        self._visible = keep
        self.text = self.text[:at] + insert + self.text[at + removed :]
        self.cursor += len(insert) if advance is None else advance
        self.version += 1
        now = self.now()
        if (
            self.log.edits
            and self.log.edits[-1].next_at is None
            and self.log.edits[-1].planned_gap is not None
        ):
            self.log.edits[-1].next_at = now
        typed = len(insert) if chars is None else chars
        self.log.edits.append(Edit(self.version, now, kind, typed, planned_gap, seen=seen))
        if keep is not None:
            self.log.shows.append(Show(self.version, now, keep.text, origin=keep.show, kept=True))
        self.driver.change(self.version, self.text, self.cursor, at, insert, removed)

    async def _wait(self, until: float) -> None:
        """Sleep until `until` (engine clock) or until a suggestion is shown, whichever is first."""
        self._shown.clear()
        delay = until - self.now()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._shown.wait(), delay)

    def _offer(self, target: str, i: int, editor: Editor) -> Take | None:
        """What the user takes of the suggestion on screen at region offset `i`: as far as the
        region goes before the next closer the editor put there, past the closers it replaces."""
        visible = self._visible
        if visible is None:
            return None
        return choose(visible.text, target[i : editor.limit(i, through=visible.replaces)])

    def _replaced_end(self, visible: _Visible) -> int | None:
        """Where the text the suggestion replaces ends in its text (None: it replaces none)."""
        if not visible.replaces:
            return None
        replaced = self.text[self.cursor : self.cursor + visible.replaces]
        found = visible.text.find(replaced)
        return None if found < 0 else found + len(replaced)

    async def _take(self, take: Take, delays: list[float], i: int, editor: Editor) -> None:
        visible = self._visible
        assert visible is not None
        self.log.accepts.append(Accept(self.now(), visible.show, take.kind, len(take.text), take.keys))
        await self.driver.accepted(visible.token, take)
        end = i + len(take.text)
        rest = visible.text[len(take.text) :]
        # A part that writes the closers the suggestion replaces replaces them (they are the
        # editor's, right after the cursor); a part before them is inserted.
        replaced_end = self._replaced_end(visible)
        through = replaced_end is not None and len(take.text) >= replaced_end
        removed = visible.replaces if through else 0
        if through:
            editor.typed_over(removed)
        # The editor keeps showing the rest of a partly accepted suggestion.
        keep = (
            _Visible(rest, visible.at, visible.show, visible.token, visible.replaces - removed)
            if rest
            else None
        )
        self._edit(take.text, "accept", delays[end] if end < len(delays) else None, keep, removed=removed)

    async def type_region(self, region: Region, text: str) -> None:
        self.text, self.cursor = text, region.start
        self.version += 1
        self._visible = None
        opened = self.now()
        await self.driver.open(region.path, self.text, self.version, self.cursor)
        look_until = opened + LOOK_MAX_S
        while self._visible is None and self.now() < look_until:
            await self._wait(look_until)
        self.log.first_suggestion_s[region.spec.id] = (
            None if self._visible is None else round(self._visible.at - opened, 3)
        )
        target = region.text
        delays = key_delays(target, region.spec.id)
        language = LANGUAGES.get(language_for_path(region.path) or "")
        editor = Editor(target, language.comment if language else "", self.autoclose)
        i = 0
        last = self.now()
        while i < len(target):
            deadline = last + delays[i]
            while True:
                take = self._offer(target, i, editor)
                readable_at = self._visible.at + REACTION_S if self._visible is not None else 0.0
                if take is not None and self.now() >= readable_at:
                    break
                if self.now() >= deadline:
                    take = None
                    break
                await self._wait(min(deadline, readable_at) if take is not None else deadline)
            if take is not None:
                await self._take(take, delays, i, editor)
                i += len(take.text)
            else:
                offered = self._offer(target, i, editor)
                seen = "none" if self._visible is None else "unread" if offered else "wrong"
                key = editor.key(i, self.text[self.cursor :])
                typed = target[i : i + key.consumed]
                i += key.consumed
                # Typing what the suggestion says keeps the rest of it on screen (the editor does this).
                shown = self._visible
                keep = None
                if shown is not None and len(shown.text) > len(typed) and shown.text.startswith(typed):
                    # Typed up to the closers it replaces it still replaces them; typed over, no more.
                    replaced_end = self._replaced_end(shown)
                    still = key.kind == "key" and replaced_end is not None and len(typed) < replaced_end
                    keep = _Visible(
                        shown.text[len(typed) :],
                        shown.at,
                        shown.show,
                        shown.token,
                        shown.replaces if still else 0,
                    )
                gap = delays[i] if i < len(target) else None
                self._edit(key.insert, key.kind, gap, keep, seen, advance=key.advance, chars=key.consumed)
            last = self.now()
        if editor.leftover():
            raise AssertionError(f"the editor's {editor.leftover()!r} in {region.spec.id} was never reached")
        await asyncio.sleep(LINGER_S)
        expected = region.original
        if self.text != expected:
            raise AssertionError(f"the replay of {region.spec.id} did not rebuild the file")
        await self.driver.close(region.path)
