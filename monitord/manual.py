"""Manual retrain requests from the command line (`monitord retrain`).

Two ways: `post_retrain` asks a running daemon through its admin endpoint (``POST
/retrain``); the daemon picks the current version, records and publishes the request like
any other. `publish_direct` needs no daemon: it records the request in the audit log,
publishes its CloudEvent to the trigger topic and stores it in the outbox for every
matching trigger receiver, then tries each of those deliveries once. A delivery that fails
stays in the outbox: the daemon's delivery retries it once it runs on the same
``state_dir``.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass

from connectors.http import Receiver, ReceiverError
from connectors.outbox import Outbox
from connectors.stream import ConnectorError
from monitord.app import App
from monitord.config import Config
from monitord.delivery import build_receivers
from monitord.retrain import RetrainTrigger, manual_request

_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def admin_url(config: Config) -> str:
    """Where this host reaches the admin endpoint of a daemon run with ``config``."""
    host = _ANY_ADDRESS.get(config.admin.host, config.admin.host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{config.admin.port}"


def post_retrain(
    url: str, model: str, version: str | None, reason: str, timeout_s: float = 10.0
) -> str:
    """Ask the daemon at ``url`` for a retrain; its request id.

    ValueError with the daemon's answer when it refuses; `ConnectorError` (retriable) when
    no daemon answers.
    """
    body = json.dumps({"model": model, "version": version, "reason": reason}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/retrain",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            error = exc.reason
        raise ValueError(f"the daemon at {url} refused ({exc.code}): {error}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason_text = getattr(exc, "reason", exc)
        raise ConnectorError(
            f"no monitord admin endpoint answers at {url} ({reason_text}); is the daemon "
            "running with admin.enabled? Use --direct to publish without it",
            retriable=True,
        ) from None
    return str(answer["id"])


@dataclass(frozen=True)
class DirectResult:
    """What `publish_direct` did: the request, and the outbox state per receiver it matched
    ("delivered", "pending": retried by the daemon, or "failed")."""

    trigger: RetrainTrigger
    receivers: dict[str, str]


def publish_direct(
    config: Config,
    model: str,
    version: str,
    reason: str,
    now: float,
    *,
    environ: Mapping[str, str] | None = None,
) -> DirectResult:
    """Record, publish and deliver a manual request without a daemon (see the module doc)."""
    trigger = manual_request(model, version, reason, now, config.config_hash)
    environ = os.environ if environ is None else environ
    connectors = build_receivers(config.receivers, environ)  # secrets checked first
    with App() as app:
        publishers, outbox = app.trigger_publishers(config, connectors)
        for publisher in publishers:
            publisher.publish([trigger])
        for publisher in publishers:
            publisher.flush()
        if outbox is None:
            return DirectResult(trigger, {})
        takers = [r.name for r in config.receivers if "triggers" in r.events]
        return DirectResult(trigger, _deliver_once(outbox, connectors, trigger, takers, now))


def _deliver_once(
    outbox: Outbox,
    connectors: Mapping[str, Receiver],
    trigger: RetrainTrigger,
    takers: list[str],
    now: float,
) -> dict[str, str]:
    """Try each receiver's delivery of ``trigger`` once; its outbox state per receiver."""
    states: dict[str, str] = {}
    for name in takers:
        item = outbox.get(trigger.id, name)
        if item is None:
            continue  # the receiver's match does not take this model or version
        if item.state == "pending":
            try:
                connectors[name].deliver(item.payload)
            except ReceiverError as error:
                outbox.failed(item, error, now)
            except ConnectorError as error:
                outbox.failed(item, ReceiverError(str(error), retriable=error.retriable), now)
            else:
                outbox.delivered(item, now)
            item = outbox.get(trigger.id, name)
            assert item is not None
        states[name] = item.state
    return states


__all__ = ["DirectResult", "admin_url", "post_retrain", "publish_direct"]
