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
from daemon.journal.hub import EventHub

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
    conn = Connection(1, stream, Limits(), EventHub())
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
    conn = Connection(1, stream, Limits(send_timeout_seconds=0.2), EventHub())
    with pytest.raises(Disconnected), anyio.fail_after(5):
        while True:
            await conn.send({"pad": "x" * 65536})
    assert conn.close_reason == "send_timeout"
    await stream.aclose()
    theirs.close()


async def test_nothing_is_written_after_the_connection_was_given_up_on() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stream = await UNIXSocketStream.from_socket(ours)
    conn = Connection(1, stream, Limits(), EventHub())
    conn.close("send_timeout")  # as after a line cut short by the send timeout
    with pytest.raises(Disconnected):
        await conn.send({"late": True})
    await stream.aclose()
    theirs.settimeout(5)
    assert theirs.recv(100) == b""  # closed, and nothing was written
    theirs.close()


async def test_a_notice_waits_no_longer_than_its_own_timeout_behind_a_blocked_send() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    stream = await UNIXSocketStream.from_socket(ours)
    conn = Connection(1, stream, Limits(send_timeout_seconds=60), EventHub())
    async with anyio.create_task_group() as tg:
        # An answer the client never reads holds the writer for up to a minute ...
        tg.start_soon(conn.send, {"pad": "x" * 4_000_000})
        await anyio.lowlevel.checkpoint()
        # ... but a notice given 0.2 s gives up long before that.
        with pytest.raises(Disconnected), anyio.fail_after(30):
            await conn.send({"notice": True}, within=0.2)
        assert conn.close_reason == "send_timeout"
        tg.cancel_scope.cancel()
    await stream.aclose()
    theirs.close()
