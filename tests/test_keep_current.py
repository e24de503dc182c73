"""The KV cache keeps up with the typist, with the real model.

Keys that come faster than the debounce never reach the model; without help the request after
Enter would first read the whole line just typed. The suggester reads the typed text while
requests wait out their debounce (Suggester.keep_current), so that request reads only the last
few tokens. The same keys with prefilling off are the control: they show the test can fail.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from server.model.loader import load_runtime
from server.request import CompletionContext
from server.session import ModelChoice, Session
from server.suggest import Answer, SuggestSettings
from tests.conftest import TEST_MODEL

HEAD = "import math\n\n\ndef blend(pairs, scale):\n"
# A line the model does not predict (so no key is served from its own answer) and long enough
# (about 20 tokens) that reading it all after Enter would show.
LINE = "    zq = sum(kx * scale for kx, wv in pairs if wv) / max(len(pairs), 3)"
TAIL = "\n\n\nprint(blend([(1, 2)], 3))\n"
KEY_GAP_S = 0.1  # a typist's burst: faster than the debounce (1.25 key gaps)
# After Enter at most this many tokens are read: the line's last token or two, the new line and
# its indentation.
MAX_READ_AFTER_ENTER = 6


def _tokens_read_after_enter(prefill: bool) -> tuple[int, Answer]:
    runtime = load_runtime(TEST_MODEL, n_threads=1)
    session = Session(loader=lambda *_: runtime)
    session.load_model(ModelChoice(TEST_MODEL))
    suggester = session.suggester
    # The adaptive debounce (a setting, on by default) is what keeps a burst's keys from the model.
    suggester.apply_settings(SuggestSettings(hot_streak=False, prefill=prefill, debounce_adaptive=True))
    uri = "file:///blend.py"

    def at(prefix: str) -> CompletionContext:
        return CompletionContext(uri, prefix, TAIL, path=Path("/blend.py"))

    async def main() -> Answer:
        # A warm prompt for the function, as after the editor opened it.
        await suggester.suggest(at(HEAD + "    "), explicit=True)
        pending: asyncio.Task[Answer] | None = None
        for n in range(len("    ") + 1, len(LINE) + 1):
            if pending is not None:
                pending.cancel()  # the editor cancels the previous key's request
            suggester.observe(uri)
            pending = asyncio.ensure_future(suggester.suggest(at(HEAD + LINE[:n])))
            await asyncio.sleep(KEY_GAP_S)
        assert pending is not None
        pending.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pending
        suggester.observe(uri)
        return await suggester.suggest(at(HEAD + LINE + "\n    "))

    try:
        answer = asyncio.run(asyncio.wait_for(main(), 120))
    finally:
        session.close()
    assert answer.result is not None, answer
    tokens = answer.result.tokens
    return tokens["prompt"] - tokens["reused"], answer


def test_the_request_after_enter_reads_only_the_end_of_the_line_typed_in_a_burst() -> None:
    read, answer = _tokens_read_after_enter(prefill=True)
    assert read <= MAX_READ_AFTER_ENTER, (read, answer)
    control, _ = _tokens_read_after_enter(prefill=False)
    assert control > 2 * MAX_READ_AFTER_ENTER, control
