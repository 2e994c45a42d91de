"""Prefect: one flow run per retrain request, created with the request's idempotency key.

``secret_env`` holds a Prefect Cloud API key; a self-hosted server may need none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from connectors.prefect import PrefectReceiver
from monitord.receivers.receiver import EventKind, ReceiverBase, read


class PrefectSettings(ReceiverBase):
    takes: ClassVar[tuple[EventKind, ...]] = ("triggers",)

    type: Literal["prefect"] = "prefect"
    deployment: str = Field(
        min_length=1, description="'flow-name/deployment-name' or the deployment id"
    )
    parameter: str = Field(
        "trigger", min_length=1, description="the flow parameter taking the request"
    )
    url: str = Field(description="the Prefect API URL, e.g. http://prefect-server:4200/api")
    secret_env: str | None = Field(None, description="variable holding the API key")

    def connector(self, environ: Mapping[str, str]) -> PrefectReceiver:
        return PrefectReceiver(
            self.url,
            self.deployment,
            parameter=self.parameter,
            api_key=read(environ, self.secret_env) or None,
            tls=self.tls_context(),
        )


__all__ = ["PrefectSettings"]
