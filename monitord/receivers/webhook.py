"""Generic webhook: alerts and/or retrain requests as CloudEvents, signed with HMAC-SHA256.

The payload is the CloudEvent as is (the default rendering); see `connectors.webhook` for
the signature a consumer verifies.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from connectors.webhook import WebhookReceiver
from monitord.receivers.receiver import EventKind, ReceiverBase


class WebhookSettings(ReceiverBase):
    takes: ClassVar[tuple[EventKind, ...]] = ("alerts", "triggers")

    type: Literal["webhook"] = "webhook"
    url: str = Field(description="where the CloudEvents are posted")
    secret_env: str = Field(description="the environment variable holding its signing key")

    def connector(self, environ: Mapping[str, str]) -> WebhookReceiver:
        return WebhookReceiver(self.url, environ[self.secret_env].encode(), tls=self.tls_context())


__all__ = ["WebhookSettings"]
