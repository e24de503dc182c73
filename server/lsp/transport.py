"""JSON-RPC framing on a byte stream: `Content-Length` frames in, resynchronised after a bad one.

pygls 2 expects each header line to *start* with `Content-Length:` and then reads exactly that
many bytes. After one frame with a wrong length it reads from the middle of a body, every later
header ends up glued to the tail of a body line and never matches again: the server stays alive
but deaf. This reader finds the next `Content-Length:` header wherever it starts, and cuts a
declared body short where a header appears inside it. That is safe because valid JSON can never
contain a header line: raw CR/LF are not allowed inside JSON strings, and header text is not JSON
outside them. So a length too large no longer swallows the following messages; a body that does
not end like a JSON object (a length too small) runs on to the next header, which usually
recovers it whole; and anything between frames is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO

log = logging.getLogger(__name__)

# A header line as clients send it; \r\n-terminated, digits only (12 digits: far above any limit).
HEADER = re.compile(rb"Content-Length:[ \t]*(\d{1,12})[ \t]*\r\n")
HEADER_END = b"\r\n\r\n"
# Longest possible header match: bytes kept between reads so a header split across two is found.
HEADER_TAIL_BYTES = 64
# Header bytes without a blank line after them are garbage past this size (real headers are ~60).
MAX_HEADER_BYTES = 8192
# A frame above this is skipped, never buffered: a 10 MB document escaped as \uXXXX is ~60 MB.
MAX_FRAME_BYTES = 64 << 20
# Bytes asked for per read: big enough that a 10 MB document needs ten reads, small enough to
# bound what one read holds.
READ_CHUNK_BYTES = 1 << 20

ReadSome = Callable[[int], Awaitable[bytes]]
"""Returns up to n bytes as soon as any are available; b"" at end of stream."""


@dataclass(frozen=True)
class Frame:
    """One frame: its body, or None when it had to be dropped; `problem` says what was wrong."""

    body: bytes | None
    problem: str | None = None
    head: bytes = b""  # the start of a dropped body, as far as it had arrived (to find its id)


class FrameReader:
    """Reads frames from `read_some`, skipping garbage and resynchronising on the next header."""

    def __init__(self, read_some: ReadSome, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._read_some = read_some
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._eof = False
        self.skipped_bytes = 0  # garbage dropped between frames, for the log and the tests

    async def _fill(self) -> bool:
        """Read more; False at end of stream."""
        if self._eof:
            return False
        data = await self._read_some(READ_CHUNK_BYTES)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def _drop(self, n: int) -> None:
        if n > 0:
            self.skipped_bytes += n
            del self._buf[:n]

    async def next(self) -> Frame | None:
        """The next frame; None at end of stream."""
        buf = self._buf
        while True:
            match = HEADER.search(buf)
            if match is None:
                # Garbage so far; keep a tail that may hold the start of a header.
                self._drop(len(buf) - HEADER_TAIL_BYTES)
                if not await self._fill():
                    return None
                continue
            if match.start():
                log.warning("skipping %d bytes before a Content-Length header", match.start())
                self._drop(match.start())
                continue
            end = buf.find(HEADER_END, match.end() - 2, MAX_HEADER_BYTES)
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    self._drop(match.end())  # a header never followed by a blank line: not one
                    continue
                if not await self._fill():
                    return None
                continue
            # Several Content-Length lines in one block: the last one is the frame's.
            last = match
            while (again := HEADER.search(buf, last.end(), end + 2)) is not None:
                last = again
            length = int(last.group(1))
            start = end + len(HEADER_END)
            if last is not match:
                self._drop(last.start())
                continue
            if length > self.max_frame_bytes:
                # Not buffered: the body is dropped as garbage until the next header.
                head = bytes(buf[start : start + 256])
                self._drop(start)
                return Frame(
                    None, f"a frame of {length} bytes is over the {self.max_frame_bytes} limit", head
                )
            return await self._body(start, length)

    async def _body(self, start: int, length: int) -> Frame:
        buf = self._buf
        need = start + length
        scan = start
        while True:
            # A header starting inside the declared body: the length was too large; cut there.
            inside = HEADER.search(buf, scan, min(len(buf), need + HEADER_TAIL_BYTES))
            if inside is not None and inside.start() < need:
                return self._take(
                    start, inside.start(), f"declared {length} bytes, the next header came first"
                )
            if len(buf) >= need:
                if _ends_an_object(buf, start, need):
                    return self._take(start, need, None)
                # Not the end of a JSON object: a wrong length. Too small, the rest of the body is
                # usually here already: take what came up to the next header (or a partial one).
                nxt = HEADER.search(buf, need)
                end = nxt.start() if nxt is not None else _partial_header_at_end(buf, start)
                return self._take(start, end, f"declared {length} bytes, the body ran on to {end - start}")
            scan = max(start, len(buf) - HEADER_TAIL_BYTES)
            if not await self._fill():
                return self._take(start, len(buf), f"declared {length} bytes but the stream ended")

    def _take(self, start: int, end: int, problem: str | None) -> Frame:
        body = bytes(self._buf[start:end])
        del self._buf[:end]
        return Frame(body, problem)


def _ends_an_object(buf: bytearray, start: int, end: int) -> bool:
    """Whether buf[start:end] ends like a JSON-RPC message (a `}` and maybe whitespace)."""
    i = end - 1
    while i >= start and buf[i] in b" \t\r\n":
        i -= 1
    return i >= start and buf[i] == ord("}")


def _partial_header_at_end(buf: bytearray, start: int) -> int:
    """Where an incomplete `Content-Length` header at the end of buf begins (len(buf) if none)."""
    word = b"Content-Length:"
    for p in range(max(start, len(buf) - HEADER_TAIL_BYTES), len(buf)):
        tail = bytes(buf[p:])
        if word.startswith(tail) or _PARTIAL_HEADER.fullmatch(tail):
            return p
    return len(buf)


_PARTIAL_HEADER = re.compile(rb"Content-Length:[ \t]*\d*[ \t]*\r?")


class BlockingStreamReader:
    """`read_some` for a blocking binary stream (stdin), served by a daemon thread.

    A daemon thread because a read pending when the client says `exit` must not keep the process
    alive; one request at a time so that nothing is read ahead without bound.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._read = getattr(stream, "read1", None) or stream.read
        self._requests: queue.SimpleQueue[tuple[int, asyncio.Future[bytes], asyncio.AbstractEventLoop]] = (
            queue.SimpleQueue()
        )
        thread = threading.Thread(target=self._run, name="infiller-stdin", daemon=True)
        thread.start()

    def _run(self) -> None:
        while True:
            n, future, loop = self._requests.get()
            try:
                data = self._read(n)
            except (OSError, ValueError) as exc:  # closed or broken pipe: the same as end of stream
                log.info("reading the client stream failed: %s", exc)
                data = b""
            try:
                loop.call_soon_threadsafe(_resolve, future, data)
            except RuntimeError:  # the loop is closed: the server is exiting
                return

    def read_some(self, n: int) -> Awaitable[bytes]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        self._requests.put((n, future, loop))
        return future


def _resolve(future: asyncio.Future[bytes], data: bytes) -> None:
    if not future.done():
        future.set_result(data)


__all__ = ["MAX_FRAME_BYTES", "BlockingStreamReader", "Frame", "FrameReader"]
