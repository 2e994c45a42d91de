"""Kubeflow Pipelines: one v2beta1 run per retrain request.

``secret_env`` holds a bearer token; a pipeline API inside the cluster may need none.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from connectors.kubeflow import KubeflowReceiver
from monitord.receivers.receiver import EventKind, ReceiverBase, read


class KubeflowSettings(ReceiverBase):
    takes: ClassVar[tuple[EventKind, ...]] = ("triggers",)

    type: Literal["kubeflow"] = "kubeflow"
    pipeline_id: str = Field(min_length=1, description="the pipeline")
    pipeline_version_id: str | None = Field(
        None, min_length=1, description="default: the newest version at delivery"
    )
    experiment_id: str | None = Field(None, min_length=1, description="the run's experiment")
    url: str = Field(description="the pipeline API's base URL")
    secret_env: str | None = Field(None, description="variable holding the bearer token")

    def connector(self, environ: Mapping[str, str]) -> KubeflowReceiver:
        return KubeflowReceiver(
            self.url,
            self.pipeline_id,
            pipeline_version_id=self.pipeline_version_id,
            experiment_id=self.experiment_id,
            token=read(environ, self.secret_env) or None,
            tls=self.tls_context(),
        )


__all__ = ["KubeflowSettings"]
