"""Dead letters fit the producer's limit whatever the record, and lead back to it."""

from __future__ import annotations

import pytest

from connectors.stream import Record
from monitord.config import EventFields
from monitord.dead_letter import (
    CONNECT_HEADERS,
    FRAMING_BYTES,
    TRUNCATED_HEADER,
    VALUE_BYTES_HEADER,
    dead_letter,
    producer_request_bytes,
)
from monitord.events import BadRecord

BUDGET = producer_request_bytes(EventFields()) - FRAMING_BYTES


def _bad(
    value: bytes, key: bytes | None = b"k", headers: tuple[tuple[str, bytes], ...] = ()
) -> BadRecord:
    record = Record("events", 3, 41, key, value, 1_700_000_000_000, headers)
    return BadRecord(record, "oversize", "x" * 5000)


def _size(key: bytes | None, value: bytes, headers: tuple[tuple[str, bytes], ...]) -> int:
    return len(key or b"") + len(value) + sum(len(k) + len(v) + 10 for k, v in headers)


def test_the_default_limits_send_a_whole_max_size_event_within_one_mebibyte() -> None:
    assert producer_request_bytes(EventFields()) == 1 << 20
    value = b"v" * 1_000_000
    key, sent, headers = dead_letter(_bad(value, headers=(("trace", b"t" * 100),)), BUDGET)
    assert (key, sent) == (b"k", value)
    names = [name for name, _ in headers]
    assert names[0] == "trace"  # the record's own headers first
    assert TRUNCATED_HEADER not in names
    found = dict(headers)
    assert found["monitord.error.reason"] == b"oversize"
    assert found["monitord.error.detail"] == b"x" * 1000
    assert (found["monitord.source.partition"], found["monitord.source.offset"]) == (b"3", b"41")


@pytest.mark.parametrize(
    ("value", "key", "headers", "cut"),
    [
        (b"v" * 3_000_000, b"k", (("trace", b"t"),), b"value"),
        (b"v" * 900_000, b"K" * 900_000, (), b"key,headers"),
        (b"{}", None, tuple((f"h{i}", b"x" * 100) for i in range(20_000)), b"key,headers"),
    ],
    ids=["large-value", "large-key", "many-headers"],
)
def test_what_does_not_fit_is_cut_and_says_so(
    value: bytes, key: bytes | None, headers: tuple[tuple[str, bytes], ...], cut: bytes
) -> None:
    sent_key, sent, sent_headers = dead_letter(_bad(value, key, headers), BUDGET)
    assert _size(sent_key, sent, sent_headers) <= BUDGET
    found = dict(sent_headers)
    assert found[TRUNCATED_HEADER] == cut
    assert found[VALUE_BYTES_HEADER] == str(len(value)).encode()
    assert value.startswith(sent)
    assert len(sent) > BUDGET - 3000 or sent == value  # cut no more than needed
    assert found["monitord.source.offset"] == b"41"


def test_connect_headers_replace_those_the_record_had() -> None:
    """A record replayed from another dead-letter topic: DLQ tooling must read our reason."""
    stale = (("__connect.errors.exception.message", b"old"), ("trace", b"t"))
    key, _, headers = dead_letter(_bad(b"{}", headers=stale), BUDGET, "monitord-eu")
    assert key == b"k"
    assert [name for name, _ in headers if name.startswith("__connect")] == list(CONNECT_HEADERS)
    found = dict(headers)
    assert headers[0] == ("trace", b"t")
    assert found["__connect.errors.connector.name"] == b"monitord-eu"
    assert found["__connect.errors.exception.class.name"] == b"monitord.events.BadRecord.oversize"
    assert found["__connect.errors.exception.message"] == b"oversize: " + b"x" * 1000
    assert (found["__connect.errors.topic"], found["__connect.errors.offset"]) == (b"events", b"41")
    _, _, unnamed = dead_letter(_bad(b"{}"), BUDGET)
    assert "__connect.errors.connector.name" not in dict(unnamed)
