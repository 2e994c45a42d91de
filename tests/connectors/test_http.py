"""The HTTP client and status classification every receiver relies on, against a real server."""

from __future__ import annotations

import socket

import pytest

from connectors.http import (
    HttpResponse,
    ReceiverError,
    classify,
    post,
    post_json,
    redact_url,
    retry_after_seconds,
    validate_url,
)
from tests.servers import RecordingServer, closed_port_url


def response(status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> HttpResponse:
    return HttpResponse(status, headers or {}, body)


def test_post_json_sends_compact_utf8_json_and_returns_the_answer(
    server: RecordingServer,
) -> None:
    server.reply(201, b'{"id": 1}', {"X-Reply": "yes"})

    answer = post_json(server.url + "/path?q=1", {"name": "débit", "n": [1]}, {"A": "b"}, 5.0)

    assert answer == HttpResponse(201, answer.headers, b'{"id": 1}')
    assert answer.headers["x-reply"] == "yes"
    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/path?q=1")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["a"] == "b"
    assert request.body == '{"name":"débit","n":[1]}'.encode()


def test_error_statuses_are_returned_not_raised(server: RecordingServer) -> None:
    server.reply(503, b"busy", {"Retry-After": "7"})
    answer = post(server.url, b"{}", {}, 5.0)
    assert (answer.status, answer.body, answer.headers["retry-after"]) == (503, b"busy", "7")


def test_redirects_are_not_followed(server: RecordingServer) -> None:
    # urllib would replay a redirected POST as a body-less GET; a redirect means bad config.
    server.reply(307, headers={"Location": server.url + "/elsewhere"})
    answer = post(server.url + "/hook", b"{}", {}, 5.0)
    assert answer.status == 307
    assert [r.path for r in server.requests] == ["/hook"]
    error = classify(answer, "receiver")
    assert error is not None
    assert not error.retriable


def test_no_answer_is_retriable_and_the_url_path_is_not_in_the_message() -> None:
    url = closed_port_url() + "/services/T000/B000/s3cr3t-token?key=hunter2"
    with pytest.raises(ReceiverError) as caught:
        post(url, b"{}", {}, 2.0)
    assert caught.value.retriable
    assert caught.value.status is None
    message = str(caught.value)
    assert redact_url(url) in message
    assert "s3cr3t" not in message
    assert "hunter2" not in message


def test_timeout_is_retriable() -> None:
    # A listening socket that never accepts: the connection queues, no answer ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with pytest.raises(ReceiverError, match="no answer") as caught:
            post(f"http://127.0.0.1:{port}/x", b"{}", {}, 0.2)
    assert caught.value.retriable


@pytest.mark.parametrize(
    ("status", "retriable"),
    [
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (410, False),
        (422, False),
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
    ],
)
def test_classify_statuses(status: int, retriable: bool) -> None:
    error = classify(response(status), "receiver")
    assert error is not None
    assert (error.retriable, error.status) == (retriable, status)


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_classify_2xx_is_delivered(status: int) -> None:
    assert classify(response(status), "receiver") is None


def test_409_is_delivered_only_when_the_caller_says_duplicates_count() -> None:
    assert classify(response(409), "receiver", conflict_is_delivered=True) is None
    error = classify(response(409), "receiver")
    assert error is not None
    assert not error.retriable


def test_retry_after_seconds_and_http_date() -> None:
    now = 1_700_000_000.0  # 2023-11-14T22:13:20Z
    assert retry_after_seconds("30", now) == 30.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:14:20 GMT", now) == 60.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:00:00 GMT", now) == 0.0  # already past
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("-5", now) == 0.0

    error = classify(response(429, {"retry-after": "12"}), "receiver", now=now)
    assert error is not None
    assert error.retry_after_s == 12.0
    error = classify(response(503, {"retry-after": "Tue, 14 Nov 2023 22:13:50 GMT"}), "r", now=now)
    assert error is not None
    assert error.retry_after_s == 30.0
    error = classify(response(400, {"retry-after": "12"}), "receiver", now=now)
    assert error is not None
    assert error.retry_after_s is None  # not retriable: no point saying when


def test_error_message_quotes_the_body_without_secrets() -> None:
    answer = response(400, body=b'{"error": "bad key R0UT1NGKEY for service"}')
    error = classify(answer, "PagerDuty at https://events.pagerduty.com", secrets=["R0UT1NGKEY"])
    assert error is not None
    assert str(error).startswith("PagerDuty at https://events.pagerduty.com answered HTTP 400")
    assert "bad key [redacted] for service" in str(error)
    assert "R0UT1NGKEY" not in str(error)


def test_redact_url_keeps_scheme_host_and_port_only() -> None:
    assert redact_url("https://hooks.slack.com/services/T/B/secret") == "https://hooks.slack.com"
    assert redact_url("http://user:pw@10.0.0.1:9093/api?token=x") == "http://10.0.0.1:9093"
    assert redact_url("http://[::1]:80/x") == "http://[::1]:80"


@pytest.mark.parametrize(
    "url", ["hooks.slack.com/x", "ftp://host/x", "http:///path", "http://host:99999/x"]
)
def test_validate_url_names_the_parameter_not_the_value(url: str) -> None:
    with pytest.raises(ValueError, match="webhook_url must be") as caught:
        validate_url(url, "webhook_url")
    assert url not in str(caught.value)
