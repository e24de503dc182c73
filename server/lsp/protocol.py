"""Message-level robustness on top of pygls: every bad request gets an error response, never silence.

pygls decodes a frame with `json.loads(..., object_hook=structure_message)`, so a request whose
params do not match the LSP types (a string for a line, a negative position) raises before its id
is known and is dropped with a log line: the client waits forever. `InfillerProtocol.receive`
decodes first, then structures, and answers each failure with the JSON-RPC error a client can act
on: -32700 unparsable, -32600 not a request, -32602 invalid params, -32002 before `initialize`.
It also keeps one copy of each open document: pygls mirrors every buffer into its own workspace,
which nothing here reads (server.documents is the authoritative store).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Generator
from typing import Any

import cattrs
from cattrs.v import format_exception
from lsprotocol import types
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

log = logging.getLogger(__name__)

# Longest error detail sent back: enough for the first few field errors.
MAX_ERROR_DETAIL_CHARS = 400
# The id of a request whose JSON is broken, when it is written before the params (as editors'
# JSON-RPC libraries do): answering it spares the client a request that never completes.
_LEADING_ID = re.compile(
    rb'\A\s*\{\s*(?:"jsonrpc"\s*:\s*"2\.0"\s*,\s*)?"id"\s*:\s*(-?\d{1,15}|"[^"\\]{0,200}")'
)


def guess_id(body: bytes) -> int | str | None:
    """The request id at the start of an unparsable body, else None."""
    match = _LEADING_ID.match(body)
    if match is None:
        return None
    raw = match.group(1)
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, int | str) else None


def _valid_id(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def describe(exc: BaseException) -> str:
    """A short, client-readable account of why params did not structure."""
    cause: BaseException = exc
    while cause.__cause__ is not None and not isinstance(cause, cattrs.BaseValidationError):
        cause = cause.__cause__
    if isinstance(cause, cattrs.BaseValidationError):
        text = "; ".join(cattrs.transform_error(cause, format_exception=_field_error))
    else:
        text = f"{type(cause).__name__}: {cause}"
    return text[:MAX_ERROR_DETAIL_CHARS]


def _field_error(exc: BaseException, type_: Any) -> str:
    # cattrs says only "invalid value" for a failed validator; its message names the range.
    text = format_exception(exc, type_)
    return f"{text} ({exc})" if type(exc) is ValueError else text


class InfillerProtocol(LanguageServerProtocol):
    """pygls's LSP protocol with checked decoding, the initialize gate and a single document store."""

    def __init__(self, server: Any, converter: Any) -> None:
        super().__init__(server, converter)
        self.initialize_received = False

    # --- decoding --------------------------------------------------------------------------

    def reply_error(self, msg_id: int | str | None, code: int, message: str) -> None:
        """Send an error response (msg_id None: the request could not be identified)."""
        log.warning("answering %s with error %d: %s", msg_id, code, message)
        self._send_data(
            types.ResponseErrorMessage(id=msg_id, error=types.ResponseError(code=code, message=message))
        )

    def receive(self, body: bytes) -> None:
        """Decode and handle one frame body; every failure is an error response or a logged skip."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError) as exc:
            self.reply_error(guess_id(body), types.ErrorCodes.ParseError, f"Parse error: {exc}"[:200])
            return
        if not isinstance(data, dict):
            kind = "batches are not supported" if isinstance(data, list) else "not a JSON-RPC message"
            self.reply_error(None, types.ErrorCodes.InvalidRequest, f"Invalid request: {kind}")
            return
        has_id = "id" in data
        msg_id = data.get("id")
        method = data.get("method")
        if has_id and msg_id is not None and not _valid_id(msg_id):
            self.reply_error(None, types.ErrorCodes.InvalidRequest, "Invalid request: bad id")
            return
        if data.get("jsonrpc") != "2.0" or ("method" in data and not isinstance(method, str)):
            if has_id:
                self.reply_error(msg_id, types.ErrorCodes.InvalidRequest, "Invalid request")
            else:
                log.warning("dropped a message that is not JSON-RPC 2.0")
            return
        is_request = has_id and isinstance(method, str)
        if isinstance(method, str) and not self._admit(method, msg_id if is_request else None, is_request):
            return
        try:
            message = self.structure_message(data)
        except Exception as exc:
            detail = describe(exc)
            if is_request:
                self.reply_error(
                    msg_id, types.ErrorCodes.InvalidParams, f"Invalid params for {method}: {detail}"
                )
            else:
                log.warning("dropped %s: %s", method or f"a response to {msg_id}", detail)
            return
        if is_request and method == types.INITIALIZE:
            self.initialize_received = True
        try:
            self.handle_message(message)
        except Exception as exc:
            log.exception("handling %s failed", method or "a response")
            if is_request:
                self.reply_error(msg_id, types.ErrorCodes.InternalError, f"{type(exc).__name__}: {exc}"[:200])

    def _admit(self, method: str, msg_id: Any, is_request: bool) -> bool:
        """The lifecycle gate: False when the message was answered or dropped here."""
        if method == types.EXIT:
            return True
        if method == types.INITIALIZE:
            if not is_request:
                log.warning("dropped initialize sent as a notification")
                return False
            if self.initialize_received:
                self.reply_error(msg_id, types.ErrorCodes.InvalidRequest, "initialize was already received")
                return False
            return True
        if not self.initialize_received:
            if is_request:
                self.reply_error(msg_id, types.ErrorCodes.ServerNotInitialized, f"{method} before initialize")
            else:
                log.info("dropped %s before initialize", method)
            return False
        if self._shutdown:
            if is_request:
                self.reply_error(msg_id, types.ErrorCodes.InvalidRequest, f"{method} after shutdown")
            else:
                log.info("dropped %s after shutdown", method)
            return False
        return True

    # --- document sync: the server's own store only ----------------------------------------

    def _forward(self, method: str, params: Any) -> Generator[Any, Any, None]:
        if (handler := self.fm.features.get(method)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(
        self, params: types.DidOpenTextDocumentParams
    ) -> Generator[Any, Any, None]:
        yield from self._forward(types.TEXT_DOCUMENT_DID_OPEN, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(
        self, params: types.DidChangeTextDocumentParams
    ) -> Generator[Any, Any, None]:
        yield from self._forward(types.TEXT_DOCUMENT_DID_CHANGE, params)

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(
        self, params: types.DidCloseTextDocumentParams
    ) -> Generator[Any, Any, None]:
        yield from self._forward(types.TEXT_DOCUMENT_DID_CLOSE, params)


__all__ = ["InfillerProtocol", "describe", "guess_id"]
