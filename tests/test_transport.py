"""JSON-RPC framing (server/lsp/transport.py): frames in any chunking, resynchronised after bad ones."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from server.lsp.protocol import guess_id
from server.lsp.transport import FrameReader


def frame(body: bytes, length: int | None = None) -> bytes:
    return b"Content-Length: %d\r\n\r\n" % (len(body) if length is None else length) + body


def message(n: int) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": n, "method": "m", "params": {"text": "é😋\n" * n}}).encode()


def read_all(
    chunks: Iterable[bytes], max_frame_bytes: int = 1 << 20
) -> list[tuple[bytes | None, str | None]]:
    """Every frame read from `chunks` (delivered one per read), as (body, problem)."""
    pending = list(chunks)

    async def read_some(n: int) -> bytes:
        return pending.pop(0) if pending else b""

    async def main() -> list[tuple[bytes | None, str | None]]:
        reader = FrameReader(read_some, max_frame_bytes)
        out = []
        while (f := await reader.next()) is not None:
            out.append((f.body, f.problem))
        return out

    return asyncio.run(main())


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if data[a:b]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=6), st.lists(st.integers(0, 10**6), max_size=12))
def test_frames_survive_any_chunking(sizes: list[int], cuts: list[int]) -> None:
    bodies = [message(n) for n in sizes]
    data = b"".join(frame(b) for b in bodies)
    assert read_all(split(data, cuts)) == [(b, None) for b in bodies]


@settings(max_examples=200, deadline=None)
@given(st.integers(-60, 200).filter(lambda d: d != 0), st.lists(st.integers(0, 10**6), max_size=8))
def test_a_wrong_length_costs_at_most_its_own_frame(delta: int, cuts: list[int]) -> None:
    first, second, third = message(1), message(2), message(3)
    data = frame(first, max(0, len(first) + delta)) + frame(second) + frame(third)
    bodies = [body for body, _ in read_all(split(data, cuts))]
    # The frames after the broken one are read intact, whatever its length said.
    assert bodies[-2:] == [second, third]
    if delta > 0:
        assert bodies == [first, second, third]  # too long: cut at the next header, still whole


def test_garbage_before_and_between_frames_is_skipped() -> None:
    one, two = message(1), message(2)
    data = b"\x00junk{}\r\n\r\n" + frame(one) + b"Content-Type: x\r\n\r\nnoise" + frame(two)
    assert [body for body, _ in read_all([data])] == [one, two]


def test_a_frame_over_the_limit_is_dropped_unbuffered() -> None:
    big, small = message(40), message(1)
    frames = read_all([frame(big), frame(small)], max_frame_bytes=len(big) - 1)
    assert frames[0][0] is None and "over the" in (frames[0][1] or "")
    assert frames[-1] == (small, None)


def test_the_stream_ending_inside_a_body_returns_what_came() -> None:
    body = message(3)
    [(got, problem)] = read_all([frame(body)[:-5]])
    assert got == body[:-5] and problem is not None and "ended" in problem


def test_the_id_of_a_broken_request_is_found_when_it_leads() -> None:
    assert guess_id(b'{"jsonrpc": "2.0", "id": 17, "method": "x", "par') == 17
    assert guess_id(b'{"id":"abc","method"') == "abc"
    assert guess_id(b'{"method": "x", "params": {"id": 3}') is None
    assert guess_id(b"[[[") is None
