"""Slack incoming webhook: one message per alert transition, its labels as fields.

The webhook URL is the secret (anyone holding it can post), so it comes from ``secret_env``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from connectors.slack import SlackReceiver, message
from monitord.receivers.receiver import EventKind, ReceiverBase

if TYPE_CHECKING:
    from monitord.alerts import Alert


class SlackSettings(ReceiverBase):
    takes: ClassVar[tuple[EventKind, ...]] = ("alerts",)

    type: Literal["slack"] = "slack"
    secret_env: str = Field(description="the environment variable holding its webhook URL")

    def connector(self, environ: Mapping[str, str]) -> SlackReceiver:
        return SlackReceiver(environ[self.secret_env], tls=self.tls_context())

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
        mark = (
            ":rotating_light: FIRING" if alert.status == "firing" else ":white_check_mark: RESOLVED"
        )
        return message(f"{mark} {annotations['summary']}", {**labels, **annotations})


__all__ = ["SlackSettings"]
