"""Generic webhook: alerts and/or retrain requests as CloudEvents (structured mode), signed.

The payload is the CloudEvent as is (the default rendering). ``signing`` chooses the
signature a consumer verifies (`connectors.webhook`): ``"standard"`` for Standard Webhooks,
whose libraries verify it as they are, with a ``whsec_...`` secret; ``"monitord"`` (the
default) for the ``X-Monitord-Signature`` scheme, with any secret of 16 bytes or more.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from connectors.webhook import WebhookReceiver, standard_key
from monitord.receivers.receiver import EventKind, ReceiverBase


class WebhookSettings(ReceiverBase):
    takes: ClassVar[tuple[EventKind, ...]] = ("alerts", "triggers")

    type: Literal["webhook"] = "webhook"
    url: str = Field(description="where the CloudEvents are posted")
    secret_env: str = Field(description="the environment variable holding its signing key")
    signing: Literal["monitord", "standard"] = Field(
        "monitord",
        description="standard: Standard Webhooks (webhook-id/-timestamp/-signature, a "
        "whsec_ base64 secret); monitord: X-Monitord-Timestamp/-Signature",
    )

    def connector(self, environ: Mapping[str, str]) -> WebhookReceiver:
        secret = environ[self.secret_env]
        key = standard_key(secret) if self.signing == "standard" else secret.encode()
        return WebhookReceiver(self.url, key, signing=self.signing, tls=self.tls_context())


__all__ = ["WebhookSettings"]
