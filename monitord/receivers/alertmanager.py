"""Prometheus Alertmanager: alerts posted to its API v2, re-posted while they matter.

Alertmanager forgets an alert that is not re-posted before its ``endsAt``, and forgets
everything on restart: a firing alert is re-posted every ``resend_interval_s`` with
``endsAt`` `RESEND_HORIZON` intervals ahead, and a resolved one (``endsAt`` = its
resolution) for ``resolved_resend_s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from connectors.alertmanager import AlertmanagerReceiver, encode_alerts, postable_alert
from monitord.receivers.receiver import EventKind, ReceiverBase, Resend

if TYPE_CHECKING:
    from monitord.alerts import Alert

RESEND_HORIZON = 4
"""A re-posted firing alert ends this many re-send intervals ahead, should re-sends stop."""


class AlertmanagerSettings(ReceiverBase):
    takes: ClassVar[tuple[EventKind, ...]] = ("alerts",)

    type: Literal["alertmanager"] = "alertmanager"
    url: str = Field(description="Alertmanager's base URL")
    resend_interval_s: float = Field(60.0, gt=0, description="re-post firing alerts this often")
    resolved_resend_s: float = Field(
        300.0, ge=0, description="re-post a resolved alert for this long"
    )

    def connector(self, environ: Mapping[str, str]) -> AlertmanagerReceiver:
        return AlertmanagerReceiver(self.url, tls=self.tls_context())

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
        if alert.status == "firing":
            ends = now + RESEND_HORIZON * self.resend_interval_s
        else:
            ends = resolved_at or now
        dashboard = annotations.get("dashboard_url", "")
        return encode_alerts([postable_alert(labels, annotations, started, ends, dashboard)])

    @property
    def resend(self) -> Resend:
        return Resend(self.resend_interval_s, self.resolved_resend_s)


__all__ = ["RESEND_HORIZON", "AlertmanagerSettings"]
