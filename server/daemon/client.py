"""How `infiller complete` uses a running daemon: a quick /health probe, then one request.

A warm daemon answers in milliseconds where a fresh process spends seconds loading the model;
when none answers within the probe timeout, the CLI loads the model itself as before.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from server.daemon.security import TOKEN_ENV

URL_ENV = "INFILLER_DAEMON_URL"
DEFAULT_URL = "http://127.0.0.1:8012"
# The probe must cost nothing noticeable when no daemon runs (connection refused is immediate;
# this bounds a port held by something that never answers).
PROBE_TIMEOUT_S = 0.1
# A completion through the daemon: the model may be busy with another client's request first.
REQUEST_TIMEOUT_S = 300.0


class DaemonError(RuntimeError):
    """The daemon answered, but with an error; the message is its own."""


def _open(request: urllib.request.Request, timeout: float) -> Any:
    # No proxies: the daemon is on this machine (or named explicitly).
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return opener.open(request, timeout=timeout)


def _headers() -> dict[str, str]:
    token = os.environ.get(TOKEN_ENV)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def find_daemon(url: str | None = None, model: str | None = None) -> str | None:
    """The base URL of a ready daemon (serving `model`, when one is named), or None."""
    base = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
    try:
        with _open(urllib.request.Request(f"{base}/health"), PROBE_TIMEOUT_S) as reply:
            health = json.loads(reply.read())
    except (OSError, ValueError):
        return None
    if health.get("status") != "ok" or (model and health.get("model") != model):
        return None
    return base


def complete(
    base: str,
    path: Path,
    text: str,
    line: int,
    column: int,
    *,
    root: Path | None,
    context: bool,
    reset_cache: bool,
) -> dict[str, Any]:
    """One completion by the daemon: the same JSON as `CompletionResult.as_json()`."""
    body = {
        "path": str(path),
        "text": text,
        "line": line,
        "column": column,
        "root": str(root) if root else None,
        "context": context,
        "reset_cache": reset_cache,
    }
    request = urllib.request.Request(
        f"{base}/infiller/complete", data=json.dumps(body).encode(), headers=_headers(), method="POST"
    )
    try:
        with _open(request, REQUEST_TIMEOUT_S) as reply:
            result: dict[str, Any] = json.loads(reply.read())
            return result
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = str(exc)
        raise DaemonError(f"the daemon at {base} refused the request: {message}") from None
    except OSError as exc:
        raise DaemonError(f"the daemon at {base} did not answer: {exc}") from None
