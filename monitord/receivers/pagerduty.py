"""PagerDuty Events API v2: a firing alert triggers an incident, its resolution resolves it.

Both carry the same ``dedup_key`` (from the label set), so PagerDuty folds re-sends and
resolutions into one incident.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from connectors.pagerduty import PagerDutyReceiver, dedup_key, resolve, trigger
from monitord.receivers.receiver import EventKind, ReceiverBase

if TYPE_CHECKING:
    from monitord.alerts import Alert


class PagerDutySettings(ReceiverBase):
    takes: ClassVar[tuple[EventKind, ...]] = ("alerts",)

    type: Literal["pagerduty"] = "pagerduty"
    secret_env: str = Field(description="the environment variable holding its routing key")
    url: str | None = Field(None, description="the Events API URL; default PagerDuty's")

    def connector(self, environ: Mapping[str, str]) -> PagerDutyReceiver:
        routing_key = environ[self.secret_env]
        if self.url:
            return PagerDutyReceiver(routing_key, url=self.url, tls=self.tls_context())
        return PagerDutyReceiver(routing_key, tls=self.tls_context())

    def render_alert(
        self,
        alert: Alert,
        cloudevent: bytes,
        *,
        started: float,
        now: float,
        resolved_at: float | None = None,
    ) -> bytes:
        labels, annotations = dict(alert.labels), dict(alert.annotations)
        key = dedup_key(labels)
        if alert.status != "firing":
            return resolve(key)
        return trigger(
            key,
            annotations["summary"],
            f"monitord/{alert.model}",
            alert.severity,
            {**annotations, **labels},
        )


__all__ = ["PagerDutySettings"]
