"""Apache Airflow: one DAG run per retrain request (`connectors.airflow` has the requests).

Credentials: ``secret_env`` alone holds a bearer token; with ``username_env`` it holds the
password, exchanged for a JWT (API v2) or sent as basic auth (API v1). An Airflow inside
the cluster may need neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal, Self

from pydantic import Field, model_validator

from connectors.airflow import AirflowReceiver
from monitord.receivers.receiver import EventKind, ReceiverBase, read


class AirflowSettings(ReceiverBase):
    takes: ClassVar[tuple[EventKind, ...]] = ("triggers",)

    type: Literal["airflow"] = "airflow"
    dag_id: str = Field(min_length=1, description="the DAG to run")
    api_version: Literal["v2", "v1"] = Field("v2", description="v2 (Airflow 3) or v1 (Airflow 2)")
    url: str = Field(description="the Airflow API server's base URL")
    secret_env: str | None = Field(
        None, description="variable holding the bearer token, or with username_env the password"
    )
    username_env: str | None = Field(
        None, description="variable holding the user; secret_env then the password"
    )

    @model_validator(mode="after")
    def _password_with_user(self) -> Self:
        if self.username_env and not self.secret_env:
            raise ValueError(
                "username_env needs secret_env too: the environment variable holding the password"
            )
        return self

    def connector(self, environ: Mapping[str, str]) -> AirflowReceiver:
        secret, username = read(environ, self.secret_env), read(environ, self.username_env)
        if username:
            return AirflowReceiver(
                self.url,
                self.dag_id,
                api_version=self.api_version,
                username=username,
                password=secret,
                tls=self.tls_context(),
            )
        return AirflowReceiver(
            self.url,
            self.dag_id,
            api_version=self.api_version,
            token=secret or None,
            tls=self.tls_context(),
        )


__all__ = ["AirflowSettings"]
