"""Dead letters: a bad record as it goes to the dead-letter topic, always small enough to send.

A dead letter carries the record's key, headers and value untouched, plus
``monitord.error.*`` (why) and ``monitord.source.*`` (where from) headers, and the same
in Kafka Connect's dead-letter headers (`CONNECT_HEADERS`), which DLQ tooling reads:
``__connect.errors.topic``, ``.partition`` and ``.offset`` (the source record),
``.connector.name`` (the consumer group), ``.exception.class.name``
(``monitord.events.BadRecord.<reason>``, one class per reason for tools that group by it)
and ``.exception.message`` (``<reason>: <detail>``). There is no stack trace: a bad record
is data, not a failure of the code. ``__connect.errors.*`` headers the record already had
(a record replayed from another dead-letter topic) are replaced by ours. A dead letter
that would not fit the producer's request limit is cut rather than refused, since a send
that fails would stop the partition on that record at every restart: the record's own key
and headers are dropped first if they are large, then the value is cut to what fits, and
``monitord.dead_letter.truncated`` names what was cut, with the original value's size in
``monitord.source.value_bytes``. The source offset always leads back to the whole record.
"""

from __future__ import annotations

import logging
from collections import Counter

from connectors.stream import Headers
from monitord.config import EventFields
from monitord.events import BadRecord
from monitord.repartition import SOURCE_HEADERS

ERROR_HEADERS = ("monitord.error.reason", "monitord.error.detail")
CONNECT_PREFIX = "__connect.errors."
CONNECT_HEADERS = tuple(
    CONNECT_PREFIX + name
    for name in (
        "topic",
        "partition",
        "offset",
        "connector.name",
        "exception.class.name",
        "exception.message",
    )
)
"""Kafka Connect's dead-letter headers (its DeadLetterQueueReporter), in this order."""
BAD_RECORD_CLASS = "monitord.events.BadRecord"
TRUNCATED_HEADER = "monitord.dead_letter.truncated"
VALUE_BYTES_HEADER = "monitord.source.value_bytes"

HEADROOM_BYTES = (1 << 20) - 1_000_000
"""Producer request bytes beyond ``max_event_bytes``: 1 MiB, the broker's default message
limit, for the default 1,000,000-byte events."""
FRAMING_BYTES = 1024  # record batch and record framing, well above what Kafka adds
HEADER_FRAMING_BYTES = 10
MAX_DETAIL_BYTES = 1000
MAX_KEPT_BYTES = 16 * 1024  # the record's own key and headers, kept whole up to this


def producer_request_bytes(fields: EventFields) -> int:
    """The producer's ``max_request_size``: a dead letter of a record of
    ``max_event_bytes`` is sent whole (the dead-letter topic must accept it too)."""
    return fields.max_event_bytes + HEADROOM_BYTES


def dead_letter(
    bad: BadRecord, budget: int, connector: str = ""
) -> tuple[bytes | None, bytes, Headers]:
    """``(key, value, headers)`` of ``bad``'s dead letter, at most ``budget`` bytes in all;
    ``connector`` names the consumer (``__connect.errors.connector.name``; "": none)."""
    record = bad.record
    detail = bad.detail.encode()[:MAX_DETAIL_BYTES]
    where = (record.topic.encode(), str(record.partition).encode(), str(record.offset).encode())
    ours: list[tuple[str, bytes]] = [
        (ERROR_HEADERS[0], bad.reason.encode()),
        (ERROR_HEADERS[1], detail),
        *zip(SOURCE_HEADERS, where, strict=True),
        *zip(CONNECT_HEADERS[:3], where, strict=True),
    ]
    if connector:
        ours.append((CONNECT_HEADERS[3], connector.encode()))
    ours += [
        (CONNECT_HEADERS[4], f"{BAD_RECORD_CLASS}.{bad.reason}".encode()),
        (CONNECT_HEADERS[5], bad.reason.encode() + b": " + detail),
    ]
    key, value = record.key, record.value or b""
    theirs = [(k, v) for k, v in record.headers if not k.startswith(CONNECT_PREFIX)]
    if _size(None, ours, value) + _size(key, theirs, b"") <= budget:
        return key, value, (*theirs, *ours)
    cut = []
    if _size(key, theirs, b"") > MAX_KEPT_BYTES:
        key, theirs = None, []
        cut.append("key,headers")
    notes = [(TRUNCATED_HEADER, b""), (VALUE_BYTES_HEADER, str(len(value)).encode())]
    room = budget - _size(key, [*theirs, *ours, *notes], b"") - len("value,key,headers")
    if len(value) > room:
        value = value[: max(room, 0)]
        cut.insert(0, "value")
    notes[0] = (TRUNCATED_HEADER, ",".join(cut).encode())
    return key, value, (*theirs, *ours, *notes)


log = logging.getLogger(__name__)

BURST_LOG_INTERVAL_S = 60.0
"""Dead letters are logged at once, then summed up at most once per this interval."""


class DeadLetterLog:
    """Logs dead letters without flooding: the first at once, then at most one summary per
    `interval_s` (counts by reason, the latest record's place and why), so a producer
    sending garbage by the thousand costs a line a minute.

    `update` is called once per batch, with the batch's bad records (none: only a summary
    that came due is written)."""

    def __init__(self, topic: str, interval_s: float = BURST_LOG_INTERVAL_S) -> None:
        self._topic, self._interval_s = topic, interval_s
        self._held: Counter[str] = Counter()
        self._latest: BadRecord | None = None
        self._last_line: float | None = None

    def update(self, bad: list[BadRecord], now: float) -> None:
        if bad:
            self._held.update(item.reason for item in bad)
            self._latest = bad[-1]
        if self._last_line is None or now - self._last_line >= self._interval_s:
            self.flush(now)

    def flush(self, now: float) -> None:
        """Write the summary of what is held now, due or not (at shutdown)."""
        if not self._held or self._latest is None:
            return
        total, latest = sum(self._held.values()), self._latest.record
        since = "" if self._last_line is None else f" in the last {now - self._last_line:.0f}s"
        reasons = ", ".join(f"{reason}: {n}" for reason, n in self._held.most_common())
        log.warning(
            "%d records dead-lettered to %s%s (%s); latest %s[%d]@%d: %s",
            total,
            self._topic,
            since,
            reasons,
            latest.topic,
            latest.partition,
            latest.offset,
            self._latest.detail[:200],
            extra={
                "dead_letters": total,
                "reasons": dict(self._held),
                "topic": latest.topic,
                "partition": latest.partition,
                "offset": latest.offset,
            },
        )
        self._held.clear()
        self._latest, self._last_line = None, now


def _size(key: bytes | None, headers: list[tuple[str, bytes]], value: bytes) -> int:
    header_bytes = sum(len(k.encode()) + len(v) + HEADER_FRAMING_BYTES for k, v in headers)
    return len(key or b"") + header_bytes + len(value)


__all__ = [
    "BAD_RECORD_CLASS",
    "BURST_LOG_INTERVAL_S",
    "CONNECT_HEADERS",
    "CONNECT_PREFIX",
    "ERROR_HEADERS",
    "FRAMING_BYTES",
    "HEADER_FRAMING_BYTES",
    "HEADROOM_BYTES",
    "MAX_DETAIL_BYTES",
    "MAX_KEPT_BYTES",
    "TRUNCATED_HEADER",
    "VALUE_BYTES_HEADER",
    "DeadLetterLog",
    "dead_letter",
    "producer_request_bytes",
]
