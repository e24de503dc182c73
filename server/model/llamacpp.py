"""llama.cpp through llama-cpp-python's low-level API: the vocabulary alone, and the full engine.

We build on `llama_cpp._internals` (model, context, batch) rather than the high-level `Llama`
class because `Llama()` does not expose `llama_model_params.use_extra_bufts`: on CPUs that
advertise AMX which the VM does not enable, the extra (weight-repacking) buffer types execute
`ldtilecfg` and the process dies on its first decode. Owning the parameters lets the self-test
(`server/model/selftest.py`) choose them per machine.

`LlamaVocab` loads only the vocabulary (no weights, no compute): the editor-facing process uses it
to tokenize and count tokens locally while the weights live in the model process.
"""

from __future__ import annotations

import ctypes
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.model.runtime import DEFAULT_N_CTX, PROMPT_CHUNK_TOKENS, Cancelled
from server.model.templates import FimTemplate, from_metadata, template_for

log = logging.getLogger(__name__)

# Token-healing candidates remembered per healed text (" ", " self", "retu", ...).
MATCHING_CACHE_SIZE = 256

_backend_ready = False

# llama.cpp's log levels (enum ggml_log_level in ggml.h; DEBUG 1 and INFO 2 are loading chatter);
# CONT continues the previous message. llama-cpp-python's own logger maps an older numbering (it
# printed warnings and dropped errors), so we install ours.
_GGML_WARN, _GGML_ERROR, _GGML_CONT = 3, 4, 5
_llama_log = logging.getLogger("llama.cpp")
_llama_log_level = 0
# The abort flag of this process's engine (a one-byte buffer), read by the log callback.
_abort_flag: Any = None
_log_callback: Any = None  # kept referenced: llama.cpp holds only the C pointer


def _aborting() -> bool:
    try:
        return _abort_flag is not None and _abort_flag[0] != 0
    except ValueError:  # the flag's mapping is closed
        return False


def _on_llama_log(level: int, text: bytes, _user_data: Any) -> None:
    """llama.cpp's warnings and errors into `logging`; its loading chatter is dropped.

    A decode that the abort flag stopped makes llama.cpp report a failed graph, a failed decode
    and the cache entries it removed: a cancel doing its job, once per superseded read, which
    editors would show as server faults. So while the flag is up its messages go to DEBUG; a
    decode that fails for another reason raises, and the caller reports it.
    """
    global _llama_log_level
    if level == _GGML_CONT:
        level = _llama_log_level
    _llama_log_level = level
    message = text.decode("utf-8", "replace").rstrip()
    if level not in (_GGML_WARN, _GGML_ERROR) or not message:
        return  # loading chatter (info, debug)
    if _aborting():
        _llama_log.debug("%s", message)
    else:
        _llama_log.log(logging.ERROR if level == _GGML_ERROR else logging.WARNING, "%s", message)


def _llama() -> Any:
    """The llama_cpp package, imported lazily (protocol tests and `--help` must not pay for it)."""
    global _backend_ready, _log_callback
    import llama_cpp

    if not _backend_ready:
        llama_cpp.llama_backend_init()
        _log_callback = llama_cpp.llama_log_callback(_on_llama_log)
        llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
        _backend_ready = True
    return llama_cpp


@dataclass(frozen=True)
class EngineConfig:
    """How llama.cpp runs on this machine: chosen by the self-test, or by the user's settings."""

    threads: int
    # llama.cpp's extra buffer types (CPU weight repacking, AMX). Off avoids the AMX crash above.
    extra_bufts: bool = True
    # Reads of small_batch+1 .. 2*small_batch tokens go in two batches (0: one batch). On some CPUs
    # a batch of 8 tokens takes a slower kernel than one of 7 (the reference machine, 1.5B, 2
    # threads, after 1,600 cached tokens: 8 tokens 898 ms in one batch, 580 in two; 10: 953 / 714;
    # 12: 918 / 827; 15 tokens in three batches were slower); the self-test measures it. Those are
    # the reads of a typed line after Enter.
    small_batch: int = 0

    def describe(self) -> str:
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        return f"{threads}, repacking {'on' if self.extra_bufts else 'off'}"


def _model_params(*, vocab_only: bool, extra_bufts: bool = True) -> Any:
    llama_cpp = _llama()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = vocab_only
    params.use_extra_bufts = extra_bufts
    params.n_gpu_layers = 0
    return params


def _load_model(path: Path, params: Any) -> Any:
    from llama_cpp import _internals

    return _internals.LlamaModel(path_model=str(path), params=params, verbose=False)


class LlamaVocab:
    """Tokenizer, FIM template and stop tokens of a GGUF model, without its weights."""

    def __init__(self, path: Path, family: str, *, model: Any = None) -> None:
        template_for(family)  # fail early with a clear message on an unknown family
        self.name = path.stem
        self._model = model if model is not None else _load_model(path, _model_params(vocab_only=True))
        self._pieces: dict[int, bytes] = {}
        metadata = {str(k): str(v) for k, v in self._model.metadata().items()}
        template, meta_stops = from_metadata(family, metadata, self._token_text)
        stop_ids = set(meta_stops)
        stop_ids.add(self._model.token_eos())
        for text in template.stop:
            ids = self.tokenize(text)
            if len(ids) == 1:  # only genuine single special tokens are stop ids
                stop_ids.add(ids[0])
        self.template: FimTemplate = template
        self.stop_ids = frozenset(stop_ids)
        self.n_vocab: int = self._model.n_vocab()

    def _piece(self, token: int, special: bool) -> bytes:
        # llama-cpp-python's token_to_piece returns its whole 32-byte buffer, padding included.
        llama_cpp = _llama()
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(self._model.vocab, token, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def _token_text(self, token: int) -> str:
        return self._piece(token, special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str) -> list[int]:
        """Tokens of text, control strings (FIM markers) parsed as special tokens, no BOS."""
        if not text:
            return []
        # Lone surrogates (from a client's broken UTF-16) cannot be encoded: they become U+FFFD.
        data = text.encode("utf-8", errors="replace")
        return list(self._model.tokenize(data, add_bos=False, special=True))

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._piece(token, special=False)
        return piece

    def close(self) -> None:
        self._model.close()


class LlamaEngine:
    """A loaded model and one context: the per-token Engine the generation loop drives.

    `abort`: a one-byte buffer (the model process's flag, see server/model/process.py); while its
    byte is not 0, llama.cpp stops the decode it is computing (checked between the graph's
    nodes), and the read raises Cancelled with the cache as it was before that batch.
    """

    def __init__(
        self,
        path: Path,
        family: str,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        config: EngineConfig,
        abort: Any = None,
    ) -> None:
        from llama_cpp import _internals

        llama_cpp = _llama()
        self.config = config
        self._model = _load_model(path, _model_params(vocab_only=False, extra_bufts=config.extra_bufts))
        self.vocab = LlamaVocab(path, family, model=self._model)
        self.name = self.vocab.name
        self.template = self.vocab.template
        self.stop_ids = self.vocab.stop_ids
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = PROMPT_CHUNK_TOKENS
        params.n_ubatch = PROMPT_CHUNK_TOKENS
        params.n_threads = config.threads
        params.n_threads_batch = config.threads
        # A second sequence reads text inserted into the cached prompt (insert), in one KV buffer.
        params.n_seq_max = 2
        params.kv_unified = True
        self._ctx = _internals.LlamaContext(model=self._model, params=params, verbose=False)
        self.n_ctx = self._ctx.n_ctx()
        self._batch = _internals.LlamaBatch(n_tokens=PROMPT_CHUNK_TOKENS, embd=0, n_seq_max=1, verbose=False)
        self._tokens: list[int] = []
        self._texts: list[bytes] = []  # every token's bytes, built on the first token healing
        self._matching: dict[bytes, list[int]] = {}
        self._np = __import__("numpy")
        self._abort = abort
        if abort is not None:
            global _abort_flag
            _abort_flag = abort
            # Kept referenced: llama.cpp holds only the C pointer. Called by one compute thread.
            self._abort_callback = llama_cpp.ggml_abort_callback(lambda _: abort[0] != 0)
            llama_cpp.llama_set_abort_callback(self._ctx.ctx, self._abort_callback, None)
        log.info("loaded %s: n_ctx=%d %s", path.name, self.n_ctx, config.describe())

    def _decode(self) -> None:
        """Decode the batch; a decode the abort flag stopped raises Cancelled (llama.cpp has
        removed what it had cached of the batch)."""
        try:
            self._ctx.decode(self._batch)
        except RuntimeError:
            if self._abort is not None and self._abort[0] != 0:
                raise Cancelled("aborted") from None
            raise

    def tokenize(self, text: str) -> list[int]:
        return self.vocab.tokenize(text)

    def token_bytes(self, token: int) -> bytes:
        return self.vocab.token_bytes(token)

    def cached_tokens(self) -> Sequence[int]:
        return self._tokens

    def truncate(self, n: int) -> None:
        n = max(0, min(n, len(self._tokens)))
        del self._tokens[n:]
        self._ctx.kv_cache_seq_rm(-1, n, -1)

    def move(self, keep: int, start: int, end: int) -> None:
        self._ctx.kv_cache_seq_rm(-1, end, -1)
        self._ctx.kv_cache_seq_rm(-1, keep, start)
        self._ctx.kv_cache_seq_shift(0, start, end, keep - start)
        self._tokens = [*self._tokens[:keep], *self._tokens[start:end]]

    def insert(self, at: int, tokens: Sequence[int], check: Callable[[], None] | None = None) -> None:
        """Read `tokens` at position `at`; the cached tokens from `at` on move up to follow them.

        llama.cpp wants each sequence's new positions to follow its last one, so the new text is
        read in sequence 1, which shares the cache's first `at` entries, then joins sequence 0.
        `check` runs between chunks; if it raises, the cache is left as it was.
        """
        ctx, n = self._ctx, len(tokens)
        ctx.kv_cache_seq_rm(1, -1, -1)
        ctx.kv_cache_seq_cp(0, 1, 0, at)
        try:
            for start in range(0, n, PROMPT_CHUNK_TOKENS):
                if check is not None:
                    check()
                chunk = list(tokens[start : start + PROMPT_CHUNK_TOKENS])
                self._fill_batch(chunk, at + start, seq=1)
                self._decode()
        except BaseException:
            ctx.kv_cache_seq_rm(1, -1, -1)
            raise
        ctx.kv_cache_seq_shift(0, at, -1, n)
        ctx.kv_cache_seq_cp(1, 0, at, at + n)
        ctx.kv_cache_seq_rm(1, -1, -1)
        self._tokens[at:at] = list(tokens)

    def _fill_batch(self, tokens: list[int], pos: int, *, seq: int) -> None:
        """The batch for `tokens` at positions pos.. in sequence `seq`, logits for the last one only."""
        batch = self._batch.batch
        batch.n_tokens = len(tokens)
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = pos + i
            batch.seq_id[i][0] = seq
            batch.n_seq_id[i] = 1
            batch.logits[i] = i == len(tokens) - 1

    def eval(self, tokens: Sequence[int]) -> None:
        step, small = PROMPT_CHUNK_TOKENS, self.config.small_batch
        if small and small < len(tokens) <= 2 * small:
            step = -(-len(tokens) // 2)  # two batches of at most `small`
        for start in range(0, len(tokens), step):
            chunk = list(tokens[start : start + step])
            self._batch.set_batch(batch=chunk, n_past=len(self._tokens), logits_all=False)
            self._decode()
            self._tokens.extend(chunk)

    def _logits(self) -> Any:
        return self._np.ctypeslib.as_array(self._ctx.get_logits(), shape=(self.vocab.n_vocab,))

    def argmax(self) -> int:
        return int(self._logits().argmax())

    def argmax_among(self, tokens: Sequence[int]) -> int:
        logits = self._logits()
        return max(tokens, key=lambda t: float(logits[t])) if tokens else self.argmax()

    def top_tokens(self, k: int) -> list[int]:
        logits = self._logits()
        k = min(k, len(logits))
        best = self._np.argpartition(-logits, k - 1)[:k]
        return [int(t) for t in sorted(best, key=lambda t: -float(logits[t]))]

    def tokens_matching(self, text: bytes) -> Sequence[int]:
        found = self._matching.get(text)
        if found is None:
            if not self._texts:
                self._texts = [self.vocab.token_bytes(t) for t in range(self.vocab.n_vocab)]
            found = [
                t
                for t, piece in enumerate(self._texts)
                if piece and t not in self.stop_ids and (piece.startswith(text) or text.startswith(piece))
            ]
            if len(self._matching) >= MATCHING_CACHE_SIZE:
                self._matching.clear()
            self._matching[text] = found
        return found

    def logprob(self, token: int) -> float:
        logits = self._logits()
        top = float(logits.max())
        return float(logits[token]) - top - math.log(float(self._np.exp(logits - top).sum()))

    def close(self) -> None:
        self._batch.close()
        self._ctx.close()
        self._model.close()


def system_info() -> str:
    """llama.cpp's own summary of the CPU features it was built with and detects."""
    return bytes(_llama().llama_print_system_info()).decode("utf-8", errors="replace").strip()
