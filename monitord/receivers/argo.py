"""Argo Workflows: one workflow per retrain request, submitted from a (cluster) template.

``secret_env`` holds a bearer token; an Argo server inside the cluster may need none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from connectors.argo import ArgoReceiver
from monitord.receivers.receiver import EventKind, ReceiverBase, read


class ArgoSettings(ReceiverBase):
    takes: ClassVar[tuple[EventKind, ...]] = ("triggers",)

    type: Literal["argo"] = "argo"
    namespace: str = Field(min_length=1, description="the workflows' namespace")
    template: str = Field(min_length=1, description="the template to submit")
    cluster_template: bool = Field(False, description="a ClusterWorkflowTemplate")
    url: str = Field(description="the Argo server's base URL")
    secret_env: str | None = Field(None, description="variable holding the bearer token")

    def connector(self, environ: Mapping[str, str]) -> ArgoReceiver:
        return ArgoReceiver(
            self.url,
            self.namespace,
            self.template,
            token=read(environ, self.secret_env) or None,
            cluster_template=self.cluster_template,
            tls=self.tls_context(),
        )


__all__ = ["ArgoSettings"]
