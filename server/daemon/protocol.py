"""The daemon's wire formats: each client's request as a typed query, each answer as that client's JSON.

Shapes follow what the clients really send and read:
- llama.cpp `POST /infill` as llama.vim (autoload/llama.vim) and llama.vscode (src/llama-server.ts)
  send it: `input_prefix`, `input_suffix`, `input_extra` [{filename, text, time}], `prompt` (the
  cursor line before the cursor), `n_predict`, `t_max_predict_ms`, `n_indent`, `stop`,
  `response_fields` (flat "timings/prompt_n" keys in the reply), sampler fields (accepted; decoding
  here is greedy);
- llama.cpp `POST /completion`: `prompt` (text or token ids), `n_predict`, `stop`, `cache_prompt`, `stream`;
- OpenAI `POST /v1/completions` (`suffix` makes it fill-in-the-middle), streamed or not;
- `POST /fim/completions` as Continue sends it (`prompt`, `suffix`, `max_tokens`, `stop`,
  `stream`); it reads chat-completion chunks (`choices[0].delta.content`).
Nothing here touches the network or the model: these are the functions the unit tests pin.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Sampler and server fields clients send that greedy decoding here makes moot; accepted silently.
IGNORED_FIELDS = frozenset(
    {"top_k", "top_p", "min_p", "temperature", "samplers", "seed", "id_slot", "n_probs", "typical_p"}
)


class ProtocolError(ValueError):
    """A malformed request: answered with 400 and this message."""


class TooLarge(ValueError):
    """A request over the prompt size limit: answered with 413."""


@dataclass(frozen=True)
class ExtraChunk:
    """A piece of another (or the same) file the client sends as context (llama.vim's ring buffer)."""

    filename: str
    text: str


@dataclass(frozen=True)
class FimQuery:
    """Fill in the middle at a cursor, with repository context added by the daemon."""

    prefix: str  # everything before the cursor that the client sent (input_prefix + prompt)
    suffix: str
    extra: tuple[ExtraChunk, ...] = ()
    filename: str | None = None  # the current file, for clients that can name it
    max_tokens: int | None = None  # None: infiller's own budgets (line / block)
    deadline_ms: float | None = None  # after this much generation, stop at the next new line
    min_indent: int = 0  # llama.cpp's n_indent: a new line indented less ends the completion
    stop: tuple[str, ...] = ()
    prefill_only: bool = False  # n_predict 0: read the prompt into the cache, generate nothing


@dataclass(frozen=True)
class RawQuery:
    """Plain continuation of a prompt: no retrieval, no post-processing (llama-server semantics)."""

    prompt: str | tuple[int, ...]
    max_tokens: int  # -1: until an end token or the context is full
    stop: tuple[str, ...] = ()
    cache_prompt: bool = True


@dataclass
class Answer:
    """What the core returns for any query; each endpoint formats it its own way."""

    text: str
    model: str
    stop_type: str = "eos"  # llama.cpp's: eos | limit | word | none
    stopping_word: str = ""
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    prompt_ms: float = 0.0
    generation_ms: float = 0.0
    truncated: bool = False
    file: str | None = None  # the file the completion was placed in (FIM)
    context: list[str] = field(default_factory=list)  # files that gave repository context
    reason: str = ""  # infiller's own: why it stopped or was suppressed

    @property
    def finish_reason(self) -> str:
        """OpenAI's name for why generation ended."""
        return "length" if self.stop_type == "limit" else "stop"


# --- field readers -----------------------------------------------------------------------------


def _int(body: Mapping[str, Any], key: str, default: int | None, lo: int | None = None) -> int | None:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ProtocolError(f"'{key}' must be an integer, got {value!r}")
    if lo is not None and value < lo:
        raise ProtocolError(f"'{key}' must be at least {lo}, got {value}")
    return int(value)


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"'{key}' must be a number, got {value!r}")
    return float(value)


def _str(body: Mapping[str, Any], key: str, default: str = "") -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ProtocolError(f"'{key}' must be a string, got {type(value).__name__}")
    return value


def _bool(body: Mapping[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ProtocolError(f"'{key}' must be true or false, got {value!r}")
    return value


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    value = body.get("stop")
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(s for s in value if s)
    raise ProtocolError("'stop' must be a string or a list of strings")


def _object(body: object) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise ProtocolError("the request body must be a JSON object")
    return body


def _max_tokens(value: int | None) -> int | None:
    """n_predict / max_tokens: negative means "no limit of the client's" (infiller's budgets apply)."""
    return None if value is None or value < 0 else value


def _check_size(max_chars: int, *texts: str) -> None:
    total = sum(len(t) for t in texts)
    if total > max_chars:
        raise TooLarge(f"the prompt has {total:,} characters; this daemon accepts at most {max_chars:,}")


# --- parsing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InfillOptions:
    stream: bool = False
    response_fields: tuple[str, ...] | None = None


def parse_infill(raw: object, max_chars: int) -> tuple[FimQuery, InfillOptions]:
    """llama.cpp's /infill body (llama.vim, llama.vscode) as a FimQuery."""
    body = _object(raw)
    extra_raw = body.get("input_extra") or []
    if not isinstance(extra_raw, list):
        raise ProtocolError("'input_extra' must be a list of {filename, text}")
    extra = []
    for item in extra_raw:
        if not isinstance(item, Mapping):
            raise ProtocolError("'input_extra' items must be objects with 'filename' and 'text'")
        extra.append(ExtraChunk(_str(item, "filename"), _str(item, "text")))
    prefix = _str(body, "input_prefix") + _prompt_text(body.get("prompt"))
    suffix = _str(body, "input_suffix")
    _check_size(max_chars, prefix, suffix, *(c.text for c in extra))
    n_predict = _int(body, "n_predict", None)
    fields = body.get("response_fields")
    if fields is not None and not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
        raise ProtocolError("'response_fields' must be a list of strings")
    query = FimQuery(
        prefix=prefix,
        suffix=suffix,
        extra=tuple(extra),
        filename=_str(body, "filename") or _str(body, "path") or None,
        max_tokens=_max_tokens(n_predict),
        deadline_ms=_positive(_number(body, "t_max_predict_ms")),
        min_indent=_int(body, "n_indent", 0, lo=0) or 0,
        stop=_stop(body),
        prefill_only=n_predict == 0,
    )
    return query, InfillOptions(
        stream=_bool(body, "stream", False), response_fields=tuple(fields) if fields is not None else None
    )


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


def _prompt_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    raise ProtocolError("'prompt' must be a string here")


def parse_completion(raw: object, max_chars: int) -> tuple[RawQuery, bool]:
    """llama.cpp's /completion body as a RawQuery, and whether to stream."""
    body = _object(raw)
    prompt = body.get("prompt")
    parsed: str | tuple[int, ...]
    if isinstance(prompt, str):
        _check_size(max_chars, prompt)
        parsed = prompt
    elif isinstance(prompt, list) and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        if len(prompt) > max_chars:
            raise TooLarge(
                f"the prompt has {len(prompt):,} tokens; this daemon accepts at most {max_chars:,}"
            )
        parsed = tuple(prompt)
    else:
        raise ProtocolError("'prompt' must be a string or a list of token ids")
    query = RawQuery(
        prompt=parsed,
        max_tokens=_int(body, "n_predict", -1) or 0,
        stop=_stop(body),
        cache_prompt=_bool(body, "cache_prompt", True),
    )
    return query, _bool(body, "stream", False)


# OpenAI's documented default for max_tokens on /v1/completions.
OPENAI_DEFAULT_MAX_TOKENS = 16


@dataclass(frozen=True)
class OpenAIOptions:
    stream: bool
    model: str | None


def parse_openai(raw: object, max_chars: int) -> tuple[FimQuery | RawQuery, OpenAIOptions]:
    """OpenAI /v1/completions: with `suffix` a fill-in-the-middle query, without one a plain continuation."""
    body = _object(raw)
    prompt = body.get("prompt", "")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]  # the SDK sends a list of one string for batch-of-one
    if not isinstance(prompt, str):
        raise ProtocolError("'prompt' must be a string (batches of prompts are not supported)")
    if body.get("n") not in (None, 1):
        raise ProtocolError("'n' must be 1: decoding is greedy, every choice would be the same")
    options = OpenAIOptions(stream=_bool(body, "stream", False), model=_str(body, "model") or None)
    max_tokens = _int(body, "max_tokens", OPENAI_DEFAULT_MAX_TOKENS, lo=0)
    if "suffix" in body and body["suffix"] is not None:
        suffix = _str(body, "suffix")
        _check_size(max_chars, prompt, suffix)
        return FimQuery(prefix=prompt, suffix=suffix, max_tokens=max_tokens, stop=_stop(body)), options
    _check_size(max_chars, prompt)
    return RawQuery(
        prompt=prompt, max_tokens=max_tokens if max_tokens is not None else -1, stop=_stop(body)
    ), options


def parse_fim(raw: object, max_chars: int) -> tuple[FimQuery, OpenAIOptions]:
    """Continue's /fim/completions (Mistral/DeepSeek FIM API): `prompt` before the cursor, `suffix` after."""
    body = _object(raw)
    prefix = _str(body, "prompt")
    suffix = _str(body, "suffix")
    _check_size(max_chars, prefix, suffix)
    max_tokens = _int(body, "max_tokens", None, lo=0)
    if max_tokens is None:
        max_tokens = _int(body, "max_completion_tokens", None, lo=0)
    query = FimQuery(
        prefix=prefix,
        suffix=suffix,
        filename=_str(body, "filename") or None,
        max_tokens=max_tokens,
        stop=_stop(body),
    )
    return query, OpenAIOptions(stream=_bool(body, "stream", False), model=_str(body, "model") or None)


# --- formatting --------------------------------------------------------------------------------


def timings(answer: Answer) -> dict[str, float | int]:
    """llama.cpp's `timings` object (prompt_n counts the prompt tokens actually evaluated)."""
    prompt_n = max(0, answer.prompt_tokens - answer.reused_tokens)
    return {
        "prompt_n": prompt_n,
        "prompt_ms": round(answer.prompt_ms, 3),
        "prompt_per_token_ms": round(answer.prompt_ms / prompt_n, 3) if prompt_n else 0.0,
        "prompt_per_second": round(prompt_n / answer.prompt_ms * 1000, 2) if answer.prompt_ms else 0.0,
        "predicted_n": answer.generated_tokens,
        "predicted_ms": round(answer.generation_ms, 3),
        "predicted_per_token_ms": round(answer.generation_ms / answer.generated_tokens, 3)
        if answer.generated_tokens
        else 0.0,
        "predicted_per_second": round(answer.generated_tokens / answer.generation_ms * 1000, 2)
        if answer.generation_ms
        else 0.0,
    }


def completion_json(answer: Answer) -> dict[str, Any]:
    """The full llama.cpp completion reply (/completion, /infill)."""
    return {
        "content": answer.text,
        "tokens": [],
        "id_slot": 0,
        "stop": True,
        "model": answer.model,
        "tokens_predicted": answer.generated_tokens,
        "tokens_evaluated": answer.prompt_tokens,
        "truncated": answer.truncated,
        "stop_type": answer.stop_type,
        "stopping_word": answer.stopping_word,
        "tokens_cached": answer.prompt_tokens + answer.generated_tokens,
        "timings": timings(answer),
        # infiller's own, for clients that look: where the completion was placed and with what.
        "infiller": {"file": answer.file, "context": answer.context, "reason": answer.reason},
    }


def select_fields(reply: Mapping[str, Any], paths: Sequence[str] | None) -> dict[str, Any]:
    """llama.cpp's `response_fields`: only these slash-separated paths, as flat keys ("timings/prompt_n")."""
    if paths is None:
        return dict(reply)
    out: dict[str, Any] = {}
    for path in paths:
        node: Any = reply
        for key in path.split("/"):
            if not isinstance(node, Mapping) or key not in node:
                break
            node = node[key]
        else:
            out[path] = node
    return out


def completion_chunk(piece: str) -> dict[str, Any]:
    """One streamed piece of a llama.cpp completion."""
    return {"content": piece, "tokens": [], "stop": False, "id_slot": 0}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def openai_completion(answer: Answer, ident: str, created: int) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "text_completion",
        "created": created,
        "model": answer.model,
        "choices": [
            {"text": answer.text, "index": 0, "logprobs": None, "finish_reason": answer.finish_reason}
        ],
        "usage": usage(answer),
    }


def openai_chunk(
    text: str, model: str, ident: str, created: int, finish: str | None = None
) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
    }


def usage(answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.generated_tokens,
        "total_tokens": answer.prompt_tokens + answer.generated_tokens,
    }


def fim_completion(answer: Answer, ident: str, created: int) -> dict[str, Any]:
    """Mistral's FIM reply (a chat completion), which Continue reads when not streaming."""
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": answer.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text},
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": usage(answer),
    }


def fim_chunk(text: str, model: str, ident: str, created: int, finish: str | None = None) -> dict[str, Any]:
    """A chat-completion chunk: Continue yields `choices[0].delta.content`."""
    delta: dict[str, str] = {"role": "assistant", "content": text} if finish is None else {}
    return {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def models_json(model: str, created: int | None = None) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": model, "object": "model", "created": created or int(time.time()), "owned_by": "infiller"}
        ],
    }


def error_json(status: int, message: str) -> dict[str, Any]:
    """llama.cpp's and OpenAI's error shape."""
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        413: "invalid_request_error",
        503: "unavailable_error",
    }.get(status, "server_error")
    return {"error": {"code": status, "message": message, "type": kind}}


def sse(data: Mapping[str, Any] | str) -> bytes:
    """One server-sent event."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {text}\n\n".encode()
