"""A deterministic fake Engine for protocol tests: scripted output, byte-level tokens, no model.

Never the only proof of a feature: end-to-end tests use the real model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from server.model.templates import QWEN, FimTemplate

# Byte tokens 0..255; control strings of the template get ids from 256 up.
_FIRST_SPECIAL = 256


class FakeEngine:
    """Answers every prompt with `script(prompt_text)`, one byte per token."""

    def __init__(
        self,
        script: Callable[[str], str],
        *,
        template: FimTemplate = QWEN,
        n_ctx: int = 1 << 16,
        delay_s: float = 0.0,
    ) -> None:
        self.name = "fake"
        self.template = template
        self.n_ctx = n_ctx
        self.script = script
        self.delay_s = delay_s
        self._specials = {t: _FIRST_SPECIAL + i for i, t in enumerate(template.special_tokens())}
        self._by_id = {v: k for k, v in self._specials.items()}
        self.stop_ids = frozenset(self._specials[t] for t in template.stop)
        self._cache: list[int] = []
        self._pending: list[int] = []
        self._offered = False  # argmax() was just called: the next eval([token]) feeds our own output
        self.evaluated = 0  # tokens actually evaluated (not reused): lets tests see cache reuse

    def tokenize(self, text: str) -> list[int]:
        out: list[int] = []
        i = 0
        while i < len(text):
            for special, tid in self._specials.items():
                if text.startswith(special, i):
                    out.append(tid)
                    i += len(special)
                    break
            else:
                out.extend(text[i].encode("utf-8"))
                i += 1
        return out

    def detokenize(self, tokens: Sequence[int]) -> str:
        data = bytearray()
        for t in tokens:
            data += self._by_id[t].encode() if t in self._by_id else bytes([t])
        return data.decode("utf-8", errors="replace")

    def token_bytes(self, token: int) -> bytes:
        return b"" if token in self._by_id else bytes([token])

    def cached_tokens(self) -> Sequence[int]:
        return self._cache

    def truncate(self, n: int) -> None:
        del self._cache[n:]
        self._pending = []

    def insert(self, at: int, tokens: Sequence[int], check: Callable[[], None] | None = None) -> None:
        if check is not None:
            check()
        self.evaluated += len(tokens)
        self._cache[at:at] = list(tokens)
        self._pending = []

    def move(self, keep: int, start: int, end: int) -> None:
        self._cache = [*self._cache[:keep], *self._cache[start:end]]
        self._pending = []

    def eval(self, tokens: Sequence[int]) -> None:
        if self.delay_s:
            time.sleep(self.delay_s * len(tokens))
        self.evaluated += len(tokens)
        self._cache.extend(tokens)
        own_output = self._offered and list(tokens) == self._pending[:1]
        self._offered = False
        if not own_output:
            # A new prompt (not one of our own outputs): script the answer for it.
            answer = self.script(self.detokenize(self._cache))
            eos = self._specials[self.template.stop[0]]
            self._pending = [*answer.encode("utf-8"), eos]
        else:
            self._pending.pop(0)

    def logprob(self, token: int) -> float:
        return 0.0  # a script is certain

    def argmax_among(self, tokens: Sequence[int]) -> int:
        best = self.argmax()
        # A healed token is forced, not the script's own choice: script again once it is read.
        self._offered = False
        return best if best in tokens else tokens[0]

    def tokens_matching(self, text: bytes) -> Sequence[int]:
        return [text[0]]  # one byte per token

    def argmax(self) -> int:
        self._offered = True
        return self._pending[0]

    def top_tokens(self, k: int) -> list[int]:
        return [self._pending[0]][:k]  # a script knows one answer


def text_before_cursor(prompt: str, template: FimTemplate = QWEN) -> str:
    """The file text before the cursor as a FIM prompt shows it: the prefix, plus whatever of the
    cursor line follows the middle marker (completion.py's default layout). Healed text is not in
    the prompt: a script that keys on it sees it arrive one forced token at a time."""
    prefix = prompt.split(template.prefix, 1)[-1].split(template.suffix, 1)[0]
    return prefix + (prompt.split(template.middle, 1)[1] if template.middle in prompt else "")
