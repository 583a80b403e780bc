"""Clients of the control socket: `MusicdClient` (blocking) and `AsyncMusicdClient` (anyio).

Both speak JSON-RPC 2.0, one JSON object per line (see daemon/control/protocol.py), send one
request at a time per client and raise `RemoteError` when the daemon answers with an error,
`NotRunning` when nothing listens on the socket. The synchronous one imports neither anyio nor
pydantic, so a script (and the `musicd` command) starts fast. A client is not thread-safe: give
each thread its own.

Both are thin transports (blocking.py, asynchronous.py): what to send and what an arrived
message means is daemon/client/core.py's (no I/O there), and what each typed call sends and
what its answer becomes is a helper of daemon/client/calls.py that both share.

    with MusicdClient() as musicd:
        musicd.cache_put("Miles Davis", "Kind of Blue", "musicbrainz", data={"year": 1959})
        for event in musicd.subscribe(["track_modified"]):
            print(event["changed"], event["old"], event["new"])
"""

from __future__ import annotations

from daemon.client.asynchronous import AsyncMusicdClient
from daemon.client.blocking import MusicdClient
from daemon.client.core import (
    DEFAULT_TIMEOUT,
    MAX_MESSAGE_BYTES,
    ClientError,
    ClientTimeout,
    ConnectionClosed,
    SubscriptionDropped,
    resolve_socket,
)
from daemon.errors import NotRunning, RemoteError

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_MESSAGE_BYTES",
    "AsyncMusicdClient",
    "ClientError",
    "ClientTimeout",
    "ConnectionClosed",
    "MusicdClient",
    "NotRunning",
    "RemoteError",
    "SubscriptionDropped",
    "resolve_socket",
]
