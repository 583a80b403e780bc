"""The client's side of the control protocol without any I/O: request ids and lines, splitting
what arrives into messages, telling notifications from answers, turning error answers into
exceptions, and holding events that arrived before an answer; and `BaseClient`, what both
clients hold.

`MusicdClient` (blocking.py, a plain socket) and `AsyncMusicdClient` (asynchronous.py, anyio) are
thin transports over it: they move bytes, wait with their own timeouts, and leave every decision
about messages to it. Like them it imports neither anyio nor pydantic.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from pathlib import Path
from typing import Any, Final

import orjson

from daemon.errors import DaemonError, NotRunning, RemoteError

DEFAULT_TIMEOUT: Final = 30.0
# An answer (a big album's tracks, a big cached document) may be long, but not unbounded.
MAX_MESSAGE_BYTES: Final = 256 * 1024 * 1024
_UNREACHABLE: Final = frozenset({errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR})

Json = dict[str, Any]


class ClientError(DaemonError):
    """The conversation with the daemon failed (timeout, dropped connection, bad answer)."""


class ClientTimeout(ClientError):
    """No answer (or, while subscribed, no event) came in time."""


class ConnectionClosed(ClientError):
    """The daemon closed the connection (it stopped, or gave up on this client)."""


class SubscriptionDropped(ClientError):
    """The daemon cut this subscriber off because it fell behind; resubscribe and resync."""

    def __init__(self, reason: str, last_seq: int | None) -> None:
        super().__init__(f"the daemon dropped the subscription: {reason}")
        self.reason = reason
        self.last_seq = last_seq


def connect_error(path: Path, err: OSError) -> DaemonError:
    """What a failed connect means to the user: NotRunning, or a ClientError saying why."""
    if isinstance(err, FileNotFoundError | ConnectionRefusedError) or err.errno in _UNREACHABLE:
        return NotRunning(
            f"the daemon is not running (nothing listens on {path}); start it with 'musicd run' "
            "or 'musicd launchd install'"
        )
    if isinstance(err, PermissionError):
        return ClientError(f"cannot connect to {path}: permission denied (another user's musicd?)")
    return ClientError(f"cannot connect to {path}: {err.strerror or err}")


class MessageTooLarge(ClientError):
    """The daemon sent a message larger than MAX_MESSAGE_BYTES; the connection is given up."""


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


# `next_message` found no whole message in what has arrived: read more.
NEED_DATA: Final = _NeedData()


def is_notification(message: Any) -> bool:
    return isinstance(message, dict) and "method" in message and "id" not in message


class Conversation:
    """One connection's protocol state: feed it bytes, ask it for messages and answers."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        # The buffer holds no newline before this offset: a long message is scanned once.
        self._scanned = 0
        self.next_id = 0
        # Notifications that arrived while an answer was awaited (events before `subscribe`'s
        # answer, or during a call on a subscribed connection), oldest first.
        self.pending: deque[Json] = deque()

    def reset(self) -> None:
        """The connection is gone: what was half received belongs to nobody."""
        self.buffer.clear()
        self._scanned = 0

    def request(self, method: str, params: Json) -> tuple[int, bytes]:
        """A new request's id and its line."""
        self.next_id += 1
        message: Json = {"jsonrpc": "2.0", "id": self.next_id, "method": method}
        if params:
            message["params"] = params
        return self.next_id, orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE)

    def receive(self, data: bytes) -> None:
        """Take bytes from the connection."""
        self.buffer += data

    def next_message(self) -> Any:
        """The next whole message, decoded, or NEED_DATA; ClientError if the daemon sent
        something that is not JSON, MessageTooLarge past MAX_MESSAGE_BYTES."""
        while True:
            end = self.buffer.find(b"\n", self._scanned)
            if end < 0:
                if len(self.buffer) > MAX_MESSAGE_BYTES:
                    raise MessageTooLarge("musicd sent a message larger than the client accepts")
                self._scanned = len(self.buffer)
                return NEED_DATA
            line = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            self._scanned = 0
            if line.strip():
                try:
                    return orjson.loads(line)
                except orjson.JSONDecodeError as err:
                    raise ClientError(f"musicd sent something that is not JSON: {err}") from None

    def answer(self, message: Any, req_id: int, method: str) -> tuple[bool, Any]:
        """(True, result) when `message` answers request `req_id`; (False, None) for a
        notification, which is kept in `pending`. RemoteError for an error answer, ClientError
        for anything else."""
        if is_notification(message):
            self.pending.append(message)
            return False, None
        if not isinstance(message, dict) or ("result" not in message and "error" not in message):
            raise ClientError(f"musicd sent an unexpected message: {str(message)[:200]}")
        error = message.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise ClientError(f"musicd sent a malformed error: {str(error)[:200]}")
            raise RemoteError(
                str(error.get("message", "unknown error")),
                int(error.get("code", 0)),
                error.get("data"),
            )
        if message.get("id") != req_id:
            raise ClientError(
                f"musicd answered request {message.get('id')!r} while {method} "
                f"(request {req_id}) was waiting"
            )
        return True, message["result"]

    def note(self, message: Any) -> None:
        """A message read while subscribed: a notification is kept for `next_event`."""
        if is_notification(message):
            self.pending.append(message)

    def next_event(self) -> Json | None:
        """The next event kept in `pending`, or None when there is none; SubscriptionDropped
        when the daemon said it cut this subscriber off."""
        while self.pending:
            message = self.pending.popleft()
            if message.get("method") == "subscription_dropped":
                params = message.get("params") or {}
                raise SubscriptionDropped(
                    str(params.get("reason", "unknown")), params.get("last_seq")
                )
            if message.get("method") == "event":
                event: Json = message["params"]
                return event
        return None


def resolve_socket(path: str | os.PathLike[str] | None) -> Path:
    """The socket to use: `path`, or the platform default (see daemon.paths)."""
    if path is not None:
        return Path(path).expanduser()
    from daemon.paths import default_socket_path

    return default_socket_path()


class BaseClient:
    """What both clients hold: where the daemon is, how long to wait, the conversation."""

    def __init__(
        self,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.socket_path = resolve_socket(socket_path)
        self.timeout = timeout
        self._conversation = Conversation()
        # The daemon's answer to the last `subscribe` (resync, reason, cursor).
        self.subscription: Json | None = None
