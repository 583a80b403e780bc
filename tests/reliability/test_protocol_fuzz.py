"""Property-based fuzzing of the control protocol from its own table: requests drawn from each
method's params model in `daemon/control/spec.py` (valid, almost valid, garbage), single and in
batches, pipelined, against the real daemon. Every request with an id is answered once, nothing
is an internal error, the daemon stays up and its memory bounded.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.control.protocol import BATCH_TOO_LARGE, INTERNAL_ERROR, MAX_BATCH_ITEMS, PARSE_ERROR
from daemon.control.spec import METHODS
from tests.reliability.conftest import Report
from tests.reliability.harness import faulty_env, fuzz_settings, json_value, to_json
from tests.support import sample_library_bytes
from tests.support.runner import DaemonProc

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Not fuzzed: one stops the daemon, the other turns the connection into an event stream.
FUZZED = [name for name in METHODS if name not in ("shutdown", "subscribe")]
MAX_PEAK_RSS_MIB = 300


def from_schema(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a JSON schema (as pydantic writes a params model's) accepts, kept small."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs)
    if "anyOf" in schema:
        return st.one_of([from_schema(s, defs) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        low = schema.get("minLength", 0)
        return st.text(min_size=low, max_size=min(schema.get("maxLength", 40), low + 40))
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**31)), schema.get("maximum", 2**31))
    if kind == "number":
        return st.floats(
            min_value=schema.get("exclusiveMinimum", 0) + 1e-3, max_value=1e6, allow_nan=False
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        items = from_schema(schema.get("items", {}), defs)
        low = schema.get("minItems", 0)
        return st.lists(items, min_size=low, max_size=min(schema.get("maxItems", 4), low + 4))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, defs) for k, v in props.items() if k in required},
            optional={k: from_schema(v, defs) for k, v in props.items() if k not in required},
        )
    return json_value


def params_of(method: str) -> st.SearchStrategy[dict[str, Any]]:
    schema = METHODS[method].params.model_json_schema()
    strategy: st.SearchStrategy[dict[str, Any]] = from_schema(schema, schema.get("$defs", {}))
    return strategy


def spoiled(params: dict[str, Any], how: str, value: Any) -> Any:
    """The params made almost valid: one thing wrong."""
    if how == "extra":
        return {**params, "unknown_param": value}
    if how == "retype" and params:
        key = sorted(params)[0]
        return {**params, key: value}
    if how == "drop" and params:
        return dict(sorted(params.items())[1:])
    if how == "array":
        return list(params.values())
    if how == "long" and params:
        key = sorted(params)[0]
        return {**params, key: "x" * 5000}
    return value


@st.composite
def requests(draw: st.DrawFn) -> Any:
    """One request: valid, almost valid or garbage (its id set by the caller when a dict)."""
    method = draw(st.sampled_from(FUZZED))
    params = draw(params_of(method))
    kind = draw(st.sampled_from(["valid", "valid", "almost", "envelope", "garbage"]))
    if kind == "almost":
        how = draw(st.sampled_from(["extra", "retype", "drop", "array", "long"]))
        params = spoiled(params, how, draw(json_value))
    request: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if kind == "envelope":
        what = draw(st.sampled_from(["jsonrpc", "method", "params", "member"]))
        if what == "member":
            request["extra"] = draw(json_value)
        else:
            request[what] = draw(json_value)
    if kind == "garbage":
        return draw(json_value)
    return request


lines = st.lists(
    st.one_of(
        requests().map(lambda r: ("single", r)),
        st.lists(requests(), min_size=1, max_size=6).map(lambda b: ("batch", b)),
        st.just(("batch", [{"jsonrpc": "2.0", "method": "ping"}] * (MAX_BATCH_ITEMS + 1))),
        st.binary(max_size=80).map(lambda b: ("bytes", b.replace(b"\n", b" "))),
    ),
    min_size=1,
    max_size=5,
)


def read_lines(s: socket.socket, count: int) -> list[bytes]:
    buf = b""
    out: list[bytes] = []
    while len(out) < count:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split(b"\n")
        # Event notifications carry no id: not answers.
        out += [line for line in done if line.strip() and b'"method":"event"' not in line]
    return out


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProc]:
    with faulty_env(sample_library_bytes()) as d:
        d.start()
        d.wait_log("flush_finished")
        yield d
        assert d.stop()[0] == 0, d.stderr()[-2000:]


def check(sent: list[tuple[str, Any]], answers: list[bytes]) -> None:
    """One answer line per line sent; every id given is answered once; no internal error."""
    expected = [item for item in sent if item[0] != "bytes" or item[1].strip()]
    assert len(answers) == len(expected), (expected, answers)
    for (kind, body), line in zip(expected, answers, strict=True):
        message = orjson.loads(line)
        if kind == "bytes":
            continue
        items = message if isinstance(message, list) else [message]
        for item in items:
            assert ("result" in item) != ("error" in item), (body, item)
            assert item.get("error", {}).get("code") != INTERNAL_ERROR, (body, item)
        if isinstance(message, dict) and message.get("error", {}).get("code") in (
            BATCH_TOO_LARGE,
            PARSE_ERROR,
        ):
            continue  # refused whole (or not JSON: an Infinity): one error for all of them
        requests = body if kind == "batch" else [body]
        ids = [r["id"] for r in requests if isinstance(r, dict) and "id" in r]
        answered = [item.get("id") for item in items]
        for req_id in ids:
            assert answered.count(req_id) == 1, (req_id, body, message)


def test_requests_drawn_from_the_method_table_are_each_answered(
    daemon: DaemonProc, report: Report
) -> None:
    tally = report.case("protocol_fuzz")
    counter = iter(range(10**9))

    @fuzz_settings(60)
    @given(sent=lines)
    def fuzz(sent: list[tuple[str, Any]]) -> None:
        tally.tried += 1
        for kind, body in sent:
            for request in body if kind == "batch" else [body]:
                if kind != "bytes" and isinstance(request, dict):
                    request["id"] = next(counter)
        data = b"".join((body if kind == "bytes" else to_json(body)) + b"\n" for kind, body in sent)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(str(daemon.socket))
            s.sendall(data)
            answers = read_lines(s, len([1 for k, b in sent if k != "bytes" or b.strip()]))
        check(sent, answers)
        tally.survived += 1

    fuzz()
    daemon.check_alive("the fuzzing to end")
    with daemon.client() as c:
        assert c.ping()["pong"] is True
    peak = daemon.peak_rss_kib() / 1024
    tally.notes["peak_rss_mib"] = round(peak)
    assert peak < MAX_PEAK_RSS_MIB
    assert not daemon.find_logs("request_failed")
