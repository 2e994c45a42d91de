"""Each receiver's request contract, status handling and secret hygiene, against a real server."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from connectors.alertmanager import AlertmanagerReceiver, encode_alerts, postable_alert
from connectors.http import Receiver, ReceiverError
from connectors.pagerduty import PagerDutyReceiver, dedup_key, resolve, trigger
from connectors.slack import SlackReceiver, message
from connectors.webhook import WebhookReceiver, sign, sign_standard, standard_key, verify
from tests.servers import RecordingServer, closed_port_url

ROUTING_KEY = "R0UT1NGKEY0000000000000000000000"
SECRET = b"webhook-secret-0123456789"
NOW = 1_700_000_000


def test_receivers_satisfy_the_protocol(server: RecordingServer) -> None:
    receivers: list[Receiver] = [
        AlertmanagerReceiver(server.url),
        PagerDutyReceiver(ROUTING_KEY, url=server.url),
        SlackReceiver(server.url),
        WebhookReceiver(server.url, SECRET),
    ]
    assert len(receivers) == 4


# Alertmanager


def test_alertmanager_posts_the_alert_list(server: RecordingServer) -> None:
    alert = postable_alert(
        {"alertname": "DriftDetected", "model": "fraud"},
        {"summary": "PSI 0.31 on amount"},
        starts_at=NOW,
        ends_at=NOW + 600,
        generator_url="http://monitord:8080/models/fraud",
    )

    AlertmanagerReceiver(server.url + "/").deliver(encode_alerts([alert]))

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/api/v2/alerts")
    assert request.headers["content-type"] == "application/json"
    assert request.json() == [
        {
            "labels": {"alertname": "DriftDetected", "model": "fraud"},
            "annotations": {"summary": "PSI 0.31 on amount"},
            "startsAt": "2023-11-14T22:13:20.000Z",
            "endsAt": "2023-11-14T22:23:20.000Z",
            "generatorURL": "http://monitord:8080/models/fraud",
        }
    ]


def test_postable_alert_validates_at_construction() -> None:
    with pytest.raises(ValueError, match="labels must not be empty"):
        postable_alert({}, {}, NOW, None)
    with pytest.raises(ValueError, match="invalid names"):
        postable_alert({"model-name": "x"}, {}, NOW, None)
    with pytest.raises(ValueError, match="ends_at"):
        postable_alert({"a": "b"}, {}, NOW, NOW - 1)
    assert "endsAt" not in postable_alert({"a": "b"}, {}, NOW, None)


def test_alertmanager_rejects_a_payload_that_is_not_an_alert_list(
    server: RecordingServer,
) -> None:
    with pytest.raises(ReceiverError, match="non-empty JSON list") as caught:
        AlertmanagerReceiver(server.url).deliver(b'{"labels": {}}')
    assert not caught.value.retriable
    assert server.requests == []


# PagerDuty


def test_pagerduty_trigger_contract(server: RecordingServer) -> None:
    server.reply(202, b'{"status":"success","dedup_key":"k"}')
    labels = {"model": "fraud", "rule": "psi"}
    key = dedup_key(labels)

    PagerDutyReceiver(ROUTING_KEY, url=server.url + "/v2/enqueue").deliver(
        trigger(key, "Drift on fraud", "monitord", "critical", {"psi": 0.31})
    )

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/v2/enqueue")
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": "Drift on fraud",
            "source": "monitord",
            "severity": "critical",
            "custom_details": {"psi": 0.31},
        },
    }


def test_pagerduty_resolve_has_no_payload(server: RecordingServer) -> None:
    server.reply(202)
    PagerDutyReceiver(ROUTING_KEY, url=server.url).deliver(resolve("k1"))
    assert server.requests[0].json() == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "k1",
    }


@pytest.mark.parametrize(
    ("status", "retriable"), [(400, False), (429, True), (500, True), (503, True)]
)
def test_pagerduty_failures_are_classified(
    server: RecordingServer, status: int, retriable: bool
) -> None:
    # PagerDuty's 400 body names what is wrong; make it echo the key to prove it is blanked.
    server.reply(status, f'{{"message":"Event invalid","key":"{ROUTING_KEY}"}}'.encode())
    receiver = PagerDutyReceiver(ROUTING_KEY, url=server.url + "/v2/enqueue")

    with pytest.raises(ReceiverError) as caught:
        receiver.deliver(resolve("k1"))

    assert (caught.value.status, caught.value.retriable) == (status, retriable)
    assert ROUTING_KEY not in str(caught.value)


def test_pagerduty_refuses_payloads_that_carry_a_routing_key(server: RecordingServer) -> None:
    payload = json.dumps({"routing_key": "x", "event_action": "resolve", "dedup_key": "k"})
    with pytest.raises(ReceiverError, match="no routing_key") as caught:
        PagerDutyReceiver(ROUTING_KEY, url=server.url).deliver(payload.encode())
    assert not caught.value.retriable
    assert server.requests == []


def test_dedup_key_is_a_stable_hash_of_the_label_set() -> None:
    key = dedup_key({"model": "fraud", "rule": "psi"})
    assert key == dedup_key({"rule": "psi", "model": "fraud"})
    assert len(key) == 32
    assert int(key, 16) >= 0
    expected = hashlib.sha256(b'[["model","fraud"],["rule","psi"]]').hexdigest()[:32]
    assert key == expected
    # Naive "k=v,k=v" joining would make these two collide.
    assert dedup_key({"a": "1,b=2"}) != dedup_key({"a": "1", "b": "2"})


def test_pagerduty_trigger_validates_severity() -> None:
    with pytest.raises(ValueError, match="severity must be one of"):
        trigger("k", "s", "monitord", "fatal")


# Slack


def test_slack_message_contract(server: RecordingServer) -> None:
    webhook_url = server.url + "/services/T0/B0/XXXXSECRET"

    SlackReceiver(webhook_url).deliver(
        message("*Drift* on fraud", {"model": "fraud", "psi": "0.31"})
    )

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/services/T0/B0/XXXXSECRET")
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "text": "*Drift* on fraud",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Drift* on fraud"}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*model*\nfraud"},
                    {"type": "mrkdwn", "text": "*psi*\n0.31"},
                ],
            },
        ],
    }


def test_slack_splits_fields_into_sections_of_ten() -> None:
    body = json.loads(message("t", {f"f{i}": str(i) for i in range(23)}))
    assert [len(block.get("fields", [])) for block in body["blocks"]] == [0, 10, 10, 3]


def test_slack_429_retry_after_is_honoured(server: RecordingServer) -> None:
    server.reply(429, b"rate_limited", {"Retry-After": "30"})
    with pytest.raises(ReceiverError) as caught:
        SlackReceiver(server.url + "/services/T0/B0/XXXXSECRET").deliver(message("hi"))
    assert caught.value.retriable
    assert caught.value.retry_after_s == 30.0


@pytest.mark.parametrize("status", [400, 403, 404])
def test_slack_client_errors_are_final_and_hide_the_webhook_path(
    server: RecordingServer, status: int
) -> None:
    server.reply(status, b"invalid_payload")
    with pytest.raises(ReceiverError) as caught:
        SlackReceiver(server.url + "/services/T0/B0/XXXXSECRET").deliver(message("hi"))
    assert not caught.value.retriable
    assert "invalid_payload" in str(caught.value)
    assert "XXXXSECRET" not in str(caught.value)
    assert "/services" not in str(caught.value)


def test_slack_unreachable_hides_the_webhook_path() -> None:
    with pytest.raises(ReceiverError) as caught:
        SlackReceiver(closed_port_url() + "/services/T0/B0/XXXXSECRET").deliver(message("hi"))
    assert caught.value.retriable
    assert "XXXXSECRET" not in str(caught.value)


def test_slack_bad_url_is_refused_at_construction_without_echoing_it() -> None:
    with pytest.raises(ValueError, match="webhook_url") as caught:
        SlackReceiver("hooks.slack.com/services/T0/B0/XXXXSECRET")
    assert "XXXXSECRET" not in str(caught.value)


# Signed webhook


def test_webhook_signs_the_exact_body(server: RecordingServer) -> None:
    body = b'{"id":"a1","type":"io.monitord.drift.alert"}'

    WebhookReceiver(server.url + "/hook?token=T0K3N", SECRET, clock=lambda: NOW + 0.9).deliver(body)

    (request,) = server.requests
    assert (request.method, request.path) == ("POST", "/hook?token=T0K3N")
    assert request.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    assert request.body == body
    assert request.headers["x-monitord-timestamp"] == str(NOW)
    expected = hmac.new(SECRET, f"{NOW}.".encode() + body, hashlib.sha256).hexdigest()
    assert request.headers["x-monitord-signature"] == f"sha256={expected}"
    assert verify(
        SECRET,
        request.headers["x-monitord-timestamp"],
        request.body,
        request.headers["x-monitord-signature"],
        now=NOW + 5,
    )


def test_standard_webhooks_signing_follows_the_specification(server: RecordingServer) -> None:
    # The specification's own example: key, id, timestamp, body and expected signature.
    key = standard_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign_standard(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected

    receiver = WebhookReceiver(server.url, key, signing="standard", clock=lambda: NOW + 0.9)
    receiver.deliver(b'{"id":"a1","type":"io.monitord.drift.alert"}')
    receiver.deliver(b'{"no": "id"}')
    first, second = server.requests
    assert (first.headers["webhook-id"], first.headers["webhook-timestamp"]) == ("a1", str(NOW))
    assert first.headers["webhook-signature"] == sign_standard(key, "a1", NOW, first.body)
    assert "x-monitord-signature" not in first.headers
    assert second.headers["webhook-id"].startswith("sha256-")  # a digest of the body


def test_verify_rejects_replays_tampering_and_wrong_secrets() -> None:
    body = b'{"id":"a1"}'
    signature = sign(SECRET, NOW, body)
    assert verify(SECRET, str(NOW), body, signature, now=NOW + 300)
    assert not verify(SECRET, str(NOW), body, signature, now=NOW + 301)  # replayed later
    assert not verify(SECRET, str(NOW), body, signature, now=NOW - 301)  # from the future
    assert not verify(SECRET, str(NOW), b'{"id":"a2"}', signature, now=NOW)
    assert not verify(SECRET, str(NOW + 1), body, signature, now=NOW)
    assert not verify(b"another-secret-0123456789", str(NOW), body, signature, now=NOW)
    assert not verify(SECRET, "yesterday", body, signature, now=NOW)
    assert not verify(SECRET, str(NOW), body, "sha256=zz", now=NOW)


def test_webhook_409_counts_as_delivered_and_failures_hide_the_url(
    server: RecordingServer,
) -> None:
    receiver = WebhookReceiver(server.url + "/hook?token=T0K3N", SECRET, clock=lambda: NOW)
    server.reply(409, b"duplicate id")
    receiver.deliver(b"{}")
    server.reply(500, b"oops")
    with pytest.raises(ReceiverError) as caught:
        receiver.deliver(b"{}")
    assert caught.value.retriable
    assert "T0K3N" not in str(caught.value)


def test_webhook_refuses_short_secrets_and_non_json(server: RecordingServer) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        WebhookReceiver(server.url, b"short")
    with pytest.raises(ReceiverError, match="must be JSON"):
        WebhookReceiver(server.url, SECRET).deliver(b"not json")
