"""An in-process control server on a daemon made by `app.build` (a real database; the scanner
and the watcher are never started), and a raw client.

The server runs in an anyio blocking portal's thread, so tests can use the synchronous client
and plain sockets against it, and reach into the daemon (`local.call(fn, ...)` runs `fn` on the
event loop thread).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import orjson
from anyio.abc import TaskStatus
from anyio.from_thread import BlockingPortal, start_blocking_portal

from daemon.app import Daemon, build
from daemon.cli.hints import Invocation
from daemon.client import MusicdClient
from daemon.config import Config, config_from_mapping
from daemon.control.server import ControlServer, Limits
from daemon.library.xml_reader import read_library_xml
from daemon.service.core import Service
from daemon.stores import tracks as track_rows
from daemon.stores._atomic import ensure_private_dir
from daemon.stores.database import Database, open_database
from tests.support import sample_library_bytes, short_tempdir

T = TypeVar("T")


class RawConnection:
    """A plain socket speaking lines, for sending what no well-behaved client would."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self._buffer = b""
        self._ids = 0

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> Any:
        """The next message; EOFError when the server closed the connection."""
        while b"\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return orjson.loads(line)

    def request(self, method: str, **params: Any) -> Any:
        self._ids += 1
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": self._ids, "method": method}
        if params:
            message["params"] = params
        self.send(orjson.dumps(message) + b"\n")
        return self.read()

    def exchange(self, line: bytes) -> Any:
        self.send(line + b"\n")
        return self.read()

    def closed_by_server(self) -> bool:
        """Read until the server closes the connection; True if it did (False on timeout)."""
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return True

    def close(self) -> None:
        self.sock.close()


@dataclass
class LocalServer:
    portal: BlockingPortal
    daemon: Service
    server: ControlServer
    root: Path
    socket: Path
    connections: list[RawConnection] = field(default_factory=list)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        return self.portal.call(fn, *args)

    def raw(self, timeout: float = 10.0) -> RawConnection:
        conn = RawConnection(self.socket, timeout)
        self.connections.append(conn)
        return conn

    def client(self, timeout: float = 10.0) -> MusicdClient:
        return MusicdClient(self.socket, timeout=timeout)


async def _serve(
    config: Config, db: Database, limits: Limits | None, *, task_status: TaskStatus[Daemon]
) -> None:
    # The daemon's own objects, run as far as the tests need: the writer, and the sources scope
    # that `shutdown` cancels (which stops the server).
    daemon = build(config, db, Invocation(program="musicd"), limits=limits)
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.writer.run)
        await daemon.writer.submit(
            lambda conn: track_rows.replace_all(
                conn, read_library_xml(config.library.path).tracks.values()
            )
        )
        with daemon.service.stop_sources:
            async with anyio.create_task_group() as sources:
                await sources.start(daemon.server.serve)
                task_status.started(daemon)
        tg.cancel_scope.cancel()


@contextmanager
def local_server(limits: Limits | None = None, **sections: dict[str, Any]) -> Iterator[LocalServer]:
    root = short_tempdir()
    library = root / "Library.xml"
    library.write_bytes(sample_library_bytes())
    data: dict[str, dict[str, Any]] = {
        "library": {"path": str(library)},
        "state": {"dir": str(root / "state")},
        "control": {"socket": str(root / "run" / "c.sock")},
        "log": {"file": str(root / "musicd.log")},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    config = config_from_mapping(data)
    try:
        with start_blocking_portal() as portal:
            ensure_private_dir(config.state.dir)
            db = open_database(config.state.dir)
            future, daemon = portal.start_task(_serve, config, db, limits)
            local = LocalServer(portal, daemon.service, daemon.server, root, config.control.socket)
            try:
                yield local
            finally:
                for conn in local.connections:
                    conn.close()
                future.cancel()
                db.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
