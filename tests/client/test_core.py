"""The clients' protocol core without a socket: ids, framing, notifications, error answers."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from daemon.client import ClientError, SubscriptionDropped
from daemon.client import core as client_core
from daemon.client.core import NEED_DATA, Conversation, MessageTooLarge
from daemon.control.protocol import INVALID_PARAMS
from daemon.errors import RemoteError


def messages(conversation: Conversation) -> list[Any]:
    found = []
    while (message := conversation.next_message()) is not NEED_DATA:
        found.append(message)
    return found


def test_requests_get_increasing_ids_and_params_only_when_given() -> None:
    conversation = Conversation()
    first, line = conversation.request("ping", {})
    second, other = conversation.request("cache.get", {"artist": "a"})
    assert (first, second) == (1, 2)
    assert orjson.loads(line) == {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    assert orjson.loads(other)["params"] == {"artist": "a"}
    assert line.endswith(b"\n") and other.endswith(b"\n")


def test_messages_split_at_newlines_whatever_the_chunks() -> None:
    conversation = Conversation()
    data = b'{"a": 1}\n\n{"b":' + b" 2}\n" + b'{"c": 3}'
    for byte in range(len(data)):
        conversation.receive(data[byte : byte + 1])
    assert messages(conversation) == [{"a": 1}, {"b": 2}]
    conversation.receive(b"\n")
    assert messages(conversation) == [{"c": 3}]


def test_a_message_larger_than_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_core, "MAX_MESSAGE_BYTES", 16)
    conversation = Conversation()
    conversation.receive(b'{"a": "' + b"x" * 8)
    assert conversation.next_message() is NEED_DATA
    conversation.receive(b"x" * 8)
    with pytest.raises(MessageTooLarge, match="larger than the client accepts"):
        conversation.next_message()
    assert issubclass(MessageTooLarge, ClientError)


def test_a_line_that_is_not_json_is_a_client_error() -> None:
    conversation = Conversation()
    conversation.receive(b"{nope\n")
    with pytest.raises(ClientError, match="not JSON"):
        conversation.next_message()


def test_notifications_are_kept_until_the_answer_comes() -> None:
    conversation = Conversation()
    req_id, _ = conversation.request("subscribe", {})
    event = {"jsonrpc": "2.0", "method": "event", "params": {"seq": 1}}
    assert conversation.answer(event, req_id, "subscribe") == (False, None)
    reply = {"jsonrpc": "2.0", "id": req_id, "result": {"subscribed": True}}
    assert conversation.answer(reply, req_id, "subscribe") == (True, {"subscribed": True})
    assert conversation.next_event() == {"seq": 1}
    assert conversation.next_event() is None


def test_an_error_answer_is_a_remote_error_with_code_and_data() -> None:
    conversation = Conversation()
    req_id, _ = conversation.request("cache.put", {})
    error = {"code": INVALID_PARAMS, "message": "cache.put: bad", "data": {"errors": []}}
    with pytest.raises(RemoteError, match=r"cache\.put: bad") as caught:
        conversation.answer({"jsonrpc": "2.0", "id": req_id, "error": error}, req_id, "cache.put")
    assert caught.value.rpc_code == INVALID_PARAMS


@pytest.mark.parametrize(
    ("message", "says"),
    [
        ([1], "unexpected message"),
        ({"jsonrpc": "2.0", "id": 1}, "unexpected message"),
        ({"jsonrpc": "2.0", "id": 1, "error": "bad"}, "malformed error"),
        ({"jsonrpc": "2.0", "id": 7, "result": 1}, "answered request 7 while ping"),
    ],
)
def test_an_answer_that_is_not_one_is_a_client_error(message: Any, says: str) -> None:
    conversation = Conversation()
    req_id, _ = conversation.request("ping", {})
    with pytest.raises(ClientError, match=says):
        conversation.answer(message, req_id, "ping")


def test_a_dropped_subscription_is_raised_after_the_events_before_it() -> None:
    conversation = Conversation()
    conversation.note({"jsonrpc": "2.0", "method": "event", "params": {"seq": 4}})
    conversation.note({"jsonrpc": "2.0", "id": 9, "result": None})  # not a notification
    dropped = {"reason": "queue_full", "last_seq": 4}
    conversation.note({"jsonrpc": "2.0", "method": "subscription_dropped", "params": dropped})
    assert conversation.next_event() == {"seq": 4}
    with pytest.raises(SubscriptionDropped) as caught:
        conversation.next_event()
    assert (caught.value.reason, caught.value.last_seq) == ("queue_full", 4)
