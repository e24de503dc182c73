"""A model on another machine: the Backend protocol over HTTP (llama.cpp's llama-server, or any
OpenAI-compatible completion server: vLLM, Ollama, infiller's own daemon).

Retrieval and prompt assembly stay local; only the finished prompt crosses the network. Two kinds:

- `http://host:port` (or `llama+http://…`): llama-server's `POST /completion` with the prompt as a
  token array, `cache_prompt` and greedy sampling (`temperature: 0`, `samplers: []` is not enough
  on older servers, so `top_k: 1` too), streamed as server-sent events;
- `openai+http://host:port/v1`: `POST {base}/completions` with the prompt as text.

Tokenizing and counting prefer the registry model's own vocabulary when it is pulled (vocab-only
load: no weights), then llama-server's `/tokenize`, then an estimate (see `EstimateTokenizer`).
Generation streams: every piece goes to `on_text`; when it returns False or the CancelToken fires
(checked between events) the response is closed, and the server stops generating.

The API key comes from the environment variable the settings name and is never logged.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from server.model.loader import BackendTarget, Kind
from server.model.registry import ModelSpec
from server.model.runtime import DEFAULT_N_CTX, CancelToken, GenerationStats, OnText
from server.model.templates import FimTemplate, template_for

log = logging.getLogger(__name__)

# Connecting is quick or hopeless; reading waits out the longest healthy silence of a server (a
# long prompt on a busy CPU server sends nothing until its first token).
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 120.0
# Probing the server when the backend is created: it must answer at once.
PROBE_TIMEOUT_S = 5.0
# Prompts tokenized recently, to send the text of a prompt to a text-only (OpenAI) server.
TEXT_MEMO_ENTRIES = 16
# Counts asked of llama-server's /tokenize: the Completer counts the same windows repeatedly.
COUNT_CACHE_ENTRIES = 512
# A string tokenized both locally and by the server at connection: a mismatch means the local
# vocabulary is not the server's model, and the server's /tokenize is used instead.
VOCAB_PROBE = "def fibonacci(n: int) -> list[int]:\n    return [0, 1]  # ok ✓"


class RemoteError(RuntimeError):
    """The remote server cannot be reached or refused the request; the message says which and why."""


# --- tokenizers --------------------------------------------------------------------------------


class Tokenizer(Protocol):
    exact: bool  # token ids are the server model's own

    def tokenize(self, text: str) -> list[int]: ...

    def count(self, text: str) -> int: ...


class VocabTokenizer:
    """The registry model's vocabulary, loaded locally without weights."""

    exact = True

    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab

    def tokenize(self, text: str) -> list[int]:
        return list(self.vocab.tokenize(text))

    def count(self, text: str) -> int:
        return len(self.vocab.tokenize(text)) if text else 0


class ServerTokenizer:
    """llama-server's `/tokenize` (special tokens parsed, no BOS): exact, one round trip per call."""

    exact = True

    def __init__(self, client: httpx.Client, base_url: str, headers: dict[str, str]) -> None:
        self._client = client
        self._url = f"{base_url}/tokenize"
        self._headers = headers
        self._counts: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def tokenize(self, text: str) -> list[int]:
        if not text:
            return []
        body = {"content": text, "add_special": False, "parse_special": True}
        response = _post(self._client, self._url, body, self._headers)
        tokens = response.json().get("tokens")
        if not isinstance(tokens, list):
            raise RemoteError(f"{self._url}: unexpected reply (no token list)")
        return [int(t["id"]) if isinstance(t, dict) else int(t) for t in tokens]

    def count(self, text: str) -> int:
        with self._lock:
            if text in self._counts:
                self._counts.move_to_end(text)
                return self._counts[text]
        n = len(self.tokenize(text))
        with self._lock:
            self._counts[text] = n
            while len(self._counts) > COUNT_CACHE_ENTRIES:
                self._counts.popitem(last=False)
        return n


# One estimated token per this many UTF-8 bytes: BPE code vocabularies average 3-4 bytes a token
# on source code, so 2 over-counts by 1.5-2x and keeps every prompt inside its token budget.
ESTIMATE_BYTES_PER_TOKEN = 2
# Pieces of text that stand in for tokens when no vocabulary is at hand: short runs of word
# characters, of spaces, single newlines or single other characters. Joined they give back the text.
_PIECE = re.compile(r"\w{1,4}|[ \t]{1,4}|\n|.", re.DOTALL)
# Interned pieces kept at most (the table is only ever short strings; this bounds a pathological
# stream of distinct ones).
MAX_PIECES = 1 << 20


class EstimateTokenizer:
    """No vocabulary, no /tokenize: counts are a conservative estimate (see ESTIMATE_BYTES_PER_TOKEN).

    Token ids are indices into a table of short text pieces, so a prompt "tokenized" here is sent
    to the server as its exact text; only the counting is approximate. Budgets in prompts built
    this way are conservative: prompts come out shorter than the budget, never longer.
    """

    exact = False

    def __init__(self, specials: Sequence[str] = ()) -> None:
        self._pieces: list[str] = []
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()
        # Control strings (FIM markers) stay whole, as a real tokenizer keeps them one token.
        specials = sorted((s for s in specials if s), key=len, reverse=True)
        self._split = (
            re.compile("|".join(re.escape(s) for s in specials) + "|" + _PIECE.pattern, re.DOTALL)
            if specials
            else _PIECE
        )

    def tokenize(self, text: str) -> list[int]:
        out = []
        with self._lock:
            if len(self._pieces) > MAX_PIECES:
                self._pieces.clear()
                self._ids.clear()
            for piece in self._split.findall(text):
                token = self._ids.get(piece)
                if token is None:
                    token = self._ids[piece] = len(self._pieces)
                    self._pieces.append(piece)
                out.append(token)
        return out

    def detokenize(self, tokens: Sequence[int]) -> str:
        with self._lock:
            try:
                return "".join(self._pieces[t] for t in tokens)
            except IndexError:
                raise RemoteError("prompt tokens were not made by this backend's tokenizer") from None

    def count(self, text: str) -> int:
        return estimate_tokens(text)


def estimate_tokens(text: str) -> int:
    """Conservative token count of text without a vocabulary (over-counts source code 1.5-2x)."""
    if not text:
        return 0
    return -(-len(text.encode("utf-8", errors="replace")) // ESTIMATE_BYTES_PER_TOKEN)


# --- streaming ---------------------------------------------------------------------------------


def sse_events(lines: Iterator[str]) -> Iterator[str]:
    """The data of each server-sent event (multi-line data joined with newlines; comments skipped)."""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


@dataclass
class Event:
    """One streamed event, normalised across the two kinds of server."""

    text: str = ""
    final: bool = False
    stop_reason: str = ""
    timings: dict[str, Any] | None = None
    tokens_cached: int | None = None


# llama-server's stop_type / OpenAI's finish_reason -> GenerationStats.stop_reason.
_LLAMA_STOPS = {"eos": "end-token", "limit": "max-tokens", "word": "stop-word"}
_OPENAI_STOPS = {"stop": "end-token", "length": "max-tokens"}


def parse_event(kind: Kind, data: str) -> Event:
    """One SSE payload of either server as an Event; `[DONE]` is final."""
    if data.strip() == "[DONE]":
        return Event(final=True)
    try:
        payload = json.loads(data)
    except json.JSONDecodeError:
        raise RemoteError(f"the server sent a malformed event: {data[:120]!r}") from None
    if not isinstance(payload, dict):
        raise RemoteError(f"the server sent an unexpected event: {data[:120]!r}")
    if "error" in payload:
        raise RemoteError(f"the server failed: {_error_text(payload['error'])}")
    if kind == "llama-server":
        stop = bool(payload.get("stop"))
        return Event(
            text=str(payload.get("content") or ""),
            final=stop,
            stop_reason=_LLAMA_STOPS.get(str(payload.get("stop_type", "")), "end-token") if stop else "",
            timings=payload.get("timings") if isinstance(payload.get("timings"), dict) else None,
            tokens_cached=payload.get("tokens_cached")
            if isinstance(payload.get("tokens_cached"), int)
            else None,
        )
    choices = payload.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    finish = choice.get("finish_reason")
    return Event(
        text=str(choice.get("text") or ""),
        # An OpenAI stream ends with [DONE]; the finish_reason chunk carries the reason.
        final=False,
        stop_reason=_OPENAI_STOPS.get(str(finish), str(finish)) if finish else "",
    )


def _error_text(error: object) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def _post(client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    try:
        response = client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise RemoteError(f"{url}: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise RemoteError(f"{url}: HTTP {response.status_code}: {_reply_text(response)}")
    return response


def _reply_text(response: httpx.Response) -> str:
    try:
        return _error_text(response.json().get("error", response.text))[:300]
    except (ValueError, AttributeError):
        return response.text[:300]


# --- the backend -------------------------------------------------------------------------------


class RemoteBackend:
    """The Backend protocol over HTTP. Thread-safe; the caller's worker serialises generations."""

    def __init__(
        self,
        target: BackendTarget,
        *,
        spec: ModelSpec | None = None,
        template: FimTemplate | None = None,
        vocab: Any = None,
        n_ctx: int | None = None,
        client: httpx.Client | None = None,
        probe: bool = True,
    ) -> None:
        self.target = target
        self.spec = spec
        self.restarts = 0  # no process of ours to restart; kept for the daemon's metrics
        self._headers = self._auth_headers(target)
        self._client = client or httpx.Client(
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            # The model is a remote service, not a web page: never pick up a proxy for loopback.
            trust_env=False,
        )
        if template is None:
            template = vocab.template if vocab is not None else template_for(spec.family if spec else "qwen")
        self._template = template
        self._name = spec.name if spec else target.base_url
        self._n_ctx = n_ctx or min(DEFAULT_N_CTX, spec.context_length if spec else DEFAULT_N_CTX)
        self._cold_next = False
        self._texts: OrderedDict[tuple[int, ...], str] = OrderedDict()
        self._texts_lock = threading.Lock()
        if probe:
            self._probe()
        self._tokenizer: Tokenizer = self._choose_tokenizer(vocab, probe=probe)
        log.info("remote backend %s (%s): tokens from %s", self._name, target.describe(), self.tokenizer_name)

    @staticmethod
    def _auth_headers(target: BackendTarget) -> dict[str, str]:
        if not target.api_key_env:
            return {}
        key = os.environ.get(target.api_key_env)
        if not key:
            raise RemoteError(f"backendApiKeyEnv names ${target.api_key_env}, which is not set")
        return {"Authorization": f"Bearer {key}"}

    def _probe(self) -> None:
        """Fail early and clearly when the server is unreachable, and learn its context size."""
        base = self.target.base_url
        url = f"{base}/health" if self.target.kind == "llama-server" else f"{base}/models"
        try:
            response = self._client.get(url, headers=self._headers, timeout=PROBE_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach the model server {self.target.describe()}: {exc}") from None
        if response.status_code in (401, 403):
            raise RemoteError(
                f"{url}: HTTP {response.status_code}: the server wants an API key (backendApiKeyEnv)"
            )
        if response.status_code != 200:
            raise RemoteError(f"{url}: HTTP {response.status_code}: {_reply_text(response)}")
        if self.target.kind == "llama-server":
            try:
                props = self._client.get(f"{base}/props", headers=self._headers, timeout=PROBE_TIMEOUT_S)
                n_ctx = props.json().get("default_generation_settings", {}).get("n_ctx")
                if isinstance(n_ctx, int) and n_ctx > 0:
                    self._n_ctx = min(self._n_ctx, n_ctx)
            except (httpx.HTTPError, ValueError, AttributeError):
                pass  # older servers: keep the registry's figure

    def _choose_tokenizer(self, vocab: Any, *, probe: bool) -> Tokenizer:
        server = (
            ServerTokenizer(self._client, self.target.base_url, self._headers)
            if self.target.kind == "llama-server"
            else None
        )
        if vocab is not None:
            local = VocabTokenizer(vocab)
            if server is None or not probe:
                return local
            try:
                if server.tokenize(VOCAB_PROBE) == local.tokenize(VOCAB_PROBE):
                    return local
                log.warning(
                    "the server's model does not share %s's vocabulary: using its /tokenize", self._name
                )
                return server
            except RemoteError:
                return local
        if server is not None:
            try:
                if probe:
                    server.tokenize("x")
                return server
            except RemoteError as exc:
                log.warning("no /tokenize on %s (%s): estimating token counts", self.target.base_url, exc)
        return EstimateTokenizer(self._template.special_tokens())

    @property
    def tokenizer_name(self) -> str:
        return {VocabTokenizer: "the local vocabulary", ServerTokenizer: "the server's /tokenize"}.get(
            type(self._tokenizer), "an estimate"
        )

    # --- Backend -----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def template(self) -> FimTemplate:
        return self._template

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def tokenize(self, text: str) -> list[int]:
        tokens = self._tokenizer.tokenize(text)
        if self.target.kind == "openai" and not isinstance(self._tokenizer, EstimateTokenizer):
            with self._texts_lock:
                self._texts[tuple(tokens)] = text
                while len(self._texts) > TEXT_MEMO_ENTRIES:
                    self._texts.popitem(last=False)
        return tokens

    def count_tokens(self, text: str) -> int:
        return self._tokenizer.count(text) if text else 0

    def reset(self) -> None:
        """The next request ignores the server's prompt cache (servers offer no portable 'forget')."""
        self._cold_next = True

    def prefill(self, tokens: Sequence[int], cancel: CancelToken | None = None) -> GenerationStats:
        stats = GenerationStats(prompt_tokens=len(tokens), stop_reason="prefill")
        if self.target.kind != "llama-server" or not tokens:
            return stats  # OpenAI servers have no prompt-only request
        if cancel is not None:
            cancel.check()
        start = time.perf_counter()
        body = {**self._prompt_body(tokens), "n_predict": 0, "cache_prompt": True, "stream": False}
        reply = _post(self._client, f"{self.target.base_url}/completion", body, self._headers).json()
        stats.prompt_ms = (time.perf_counter() - start) * 1000
        _fill_timings(stats, reply.get("timings"), reply.get("tokens_cached"))
        return stats

    def generate(
        self,
        prompt: Sequence[int],
        *,
        max_tokens: int,
        on_text: OnText,
        cancel: CancelToken | None = None,
        heal: str = "",
    ) -> GenerationStats:
        """Stream a greedy completion; closes the response when on_text says stop or cancel fires.

        A server cannot constrain its first tokens: the prompt goes without `heal`, and the healed
        text is taken off the answer when the answer begins with it (appended to the prompt, a
        trailing space made the model answer ` fibonacci(...)` with a second space).
        """
        if cancel is not None:
            cancel.check()
        if heal:
            on_text = _StripLeading(heal, on_text)
        stats = GenerationStats(prompt_tokens=len(prompt), stop_reason="max-tokens")
        url, body = self._request(prompt, max_tokens)
        start = time.perf_counter()
        first: float | None = None
        pieces = 0
        final_seen = False
        try:
            with self._client.stream("POST", url, json=body, headers=self._headers) as response:
                if response.status_code != 200:
                    response.read()
                    raise RemoteError(f"{url}: HTTP {response.status_code}: {_reply_text(response)}")
                for data in sse_events(response.iter_lines()):
                    if cancel is not None:
                        cancel.check()  # raising here leaves the `with`: the response is closed
                    event = parse_event(self.target.kind, data)
                    if event.text:
                        if first is None:
                            first = time.perf_counter()
                        pieces += 1
                        if not on_text(event.text):
                            stats.stop_reason = "postprocess"
                            break
                    if event.stop_reason:
                        stats.stop_reason = event.stop_reason
                    if event.timings is not None or event.tokens_cached is not None:
                        _fill_timings(stats, event.timings, event.tokens_cached)
                    if event.final:
                        final_seen = True
                        break
        except httpx.HTTPError as exc:
            raise RemoteError(f"{url}: {type(exc).__name__}: {exc}") from None
        end = time.perf_counter()
        if not stats.generated_tokens:
            stats.generated_tokens = pieces
        if not stats.prompt_ms:
            stats.prompt_ms = ((first or end) - start) * 1000
            stats.generation_ms = (end - (first or end)) * 1000
        if not final_seen and stats.stop_reason == "max-tokens" and pieces < max_tokens:
            stats.stop_reason = "end-token"  # the stream simply ended
        return stats

    def first_tokens(
        self, prompt: Sequence[int], k: int, cancel: CancelToken | None = None
    ) -> list[tuple[str, float]]:
        """One token's probabilities: llama-server's `n_probs`, an OpenAI server's `logprobs`
        (either reply shape); [] when the server gives none."""
        if cancel is not None:
            cancel.check()
        # Not `_request`'s body: its `top_k: 1` sampler leaves older servers one probability.
        if self.target.kind == "llama-server":
            url = f"{self.target.base_url}/completion"
            body: dict[str, Any] = {
                **self._prompt_body(prompt),
                "n_predict": 1,
                "n_probs": k,
                "cache_prompt": True,
                "stream": False,
                "temperature": 0.0,
            }
        else:
            url = f"{self.target.base_url}/completions"
            body = {
                "model": self._name,
                "prompt": self._text_of(prompt),
                "max_tokens": 1,
                "logprobs": k,
                "temperature": 0.0,
            }
        reply = _post(self._client, url, body, self._headers).json()
        return top_token_probabilities(reply)[:k]

    def close(self) -> None:
        self._client.close()

    # --- requests ----------------------------------------------------------------------------

    def _prompt_body(self, tokens: Sequence[int]) -> dict[str, Any]:
        if self.target.kind == "llama-server" and self._tokenizer.exact:
            return {"prompt": list(tokens)}
        return {"prompt": self._text_of(tokens)}

    def _text_of(self, tokens: Sequence[int]) -> str:
        if isinstance(self._tokenizer, EstimateTokenizer):
            return self._tokenizer.detokenize(tokens)
        with self._texts_lock:
            text = self._texts.get(tuple(tokens))
        if text is None:
            raise RemoteError(
                "a text-only server needs the prompt's text: tokenize it with this backend first"
            )
        return text

    def _request(self, prompt: Sequence[int], max_tokens: int) -> tuple[str, dict[str, Any]]:
        cold, self._cold_next = self._cold_next, False
        if self.target.kind == "llama-server":
            body = {
                **self._prompt_body(prompt),
                "n_predict": max_tokens,
                "cache_prompt": not cold,
                "stream": True,
                "temperature": 0.0,
                "top_k": 1,
                "samplers": ["top_k"],
            }
            return f"{self.target.base_url}/completion", body
        body = {
            "model": self._name,
            "prompt": self._text_of(prompt),
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "stream": True,
        }
        return f"{self.target.base_url}/completions", body


def top_token_probabilities(reply: Any) -> list[tuple[str, float]]:
    """(text, probability) of the first token's alternatives, most likely first, from a
    llama-server reply (`completion_probabilities`: `top_logprobs` since late 2024, `probs`
    before) or an OpenAI completion (`choices[0].logprobs.top_logprobs[0]`)."""
    pairs: list[tuple[str, float]] = []
    if not isinstance(reply, dict):
        return pairs
    first = (reply.get("completion_probabilities") or [None])[0]
    if isinstance(first, dict):
        for entry in first.get("top_logprobs") or []:
            pairs.append((str(entry.get("token", "")), math.exp(float(entry.get("logprob", -math.inf)))))
        for entry in first.get("probs") or []:
            pairs.append((str(entry.get("tok_str", "")), float(entry.get("prob", 0.0))))
    choices = reply.get("choices") or []
    logprobs = choices[0].get("logprobs") if choices and isinstance(choices[0], dict) else None
    tops = logprobs.get("top_logprobs") if isinstance(logprobs, dict) else None
    if tops and isinstance(tops[0], dict):
        pairs.extend((str(text), math.exp(float(lp))) for text, lp in tops[0].items())
    return sorted((p for p in pairs if p[0]), key=lambda p: -p[1])


def _fill_timings(stats: GenerationStats, timings: object, tokens_cached: object) -> None:
    if isinstance(timings, dict):
        prompt_n = timings.get("prompt_n")
        if isinstance(prompt_n, int):
            stats.reused_tokens = max(0, stats.prompt_tokens - prompt_n)
        if isinstance(timings.get("prompt_ms"), int | float):
            stats.prompt_ms = float(timings["prompt_ms"])
        if isinstance(timings.get("predicted_ms"), int | float):
            stats.generation_ms = float(timings["predicted_ms"])
        if isinstance(timings.get("predicted_n"), int):
            stats.generated_tokens = int(timings["predicted_n"])


def connect(
    target: BackendTarget, spec: ModelSpec | None, *, vocab_path: Any = None, n_ctx: int | None = None
) -> RemoteBackend:
    """A RemoteBackend for a registry model served elsewhere; its vocabulary is used when pulled."""
    vocab = None
    if vocab_path is not None and spec is not None:
        from server.model.llamacpp import LlamaVocab

        vocab = LlamaVocab(vocab_path, spec.family)
    return RemoteBackend(target, spec=spec, vocab=vocab, n_ctx=n_ctx)


class _StripLeading:
    """on_text for an answer that should begin with `heal`: that much is held back and dropped.

    A heal ending in a new line asks for an answer that starts on the next line (a block header's
    body, the hot streak's next line); an answer that goes on with the cursor's line instead has
    what it writes there dropped, up to its first new line: the rest is the next line on."""

    def __init__(self, heal: str, on_text: OnText) -> None:
        self.heal = heal
        self.on_text = on_text
        self.held: str | None = ""  # None once the start of the answer is decided
        self.skipping = False  # dropping the cursor's line (see above)

    def __call__(self, piece: str) -> bool:
        if self.skipping:
            end = piece.find("\n")
            if end < 0:
                return True
            self.skipping = False
            return self.on_text(piece[end + 1 :]) if piece[end + 1 :] else True
        if self.held is None:
            return self.on_text(piece)
        held = self.held + piece
        if len(held) < len(self.heal) and self.heal.startswith(held):
            self.held = held
            return True
        self.held = None
        if held.startswith(self.heal):
            rest = held[len(self.heal) :]
        elif self.heal.endswith("\n"):
            self.skipping = True
            return self(held)
        else:
            rest = held
        return self.on_text(rest) if rest else True
