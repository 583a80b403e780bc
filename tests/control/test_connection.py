"""The connection's writer: whole lines, in the order they were sent, never waiting for a
client that does not read."""

from __future__ import annotations

import socket

import anyio
import anyio.lowlevel
import anyio.to_thread
import orjson
import pytest
from anyio.abc import UNIXSocketStream

from daemon.control.connection import Connection, Disconnected, Limits

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _read_lines(sock: socket.socket, count: int) -> list[object]:
    """Read until `count` lines have come (or 10 s pass with nothing), then parse them."""
    sock.settimeout(10)

    def read() -> bytes:
        data = b""
        while data.count(b"\n") < count:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        return data

    data = await anyio.to_thread.run_sync(read)
    return [orjson.loads(line) for line in data.splitlines()]


async def test_send_data_whole_after_any_message_already_being_sent() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stream = await UNIXSocketStream.from_socket(ours)
    conn = Connection(1, stream, Limits())
    # Far more than the socket buffers hold: the first send goes out in parts, and the small
    # ones sent meanwhile must wait for its last part instead of landing inside it.
    big = {"big": "x" * 2_000_000}
    async with anyio.create_task_group() as tg:
        tg.start_soon(conn.send, big)
        await anyio.lowlevel.checkpoint()  # the big send has begun, waiting for the reader
        for n in range(3):
            tg.start_soon(conn.send, {"n": n})
        messages = await _read_lines(theirs, 4)
    await stream.aclose()
    theirs.close()
    assert messages == [big, {"n": 0}, {"n": 1}, {"n": 2}]


async def test_a_client_that_does_not_read_is_given_up_on_after_the_send_timeout() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stream = await UNIXSocketStream.from_socket(ours)
    conn = Connection(1, stream, Limits(send_timeout_seconds=0.2))
    with pytest.raises(Disconnected), anyio.fail_after(5):
        while True:
            await conn.send({"pad": "x" * 65536})
    assert conn.close_reason == "send_timeout"
    await stream.aclose()
    theirs.close()
