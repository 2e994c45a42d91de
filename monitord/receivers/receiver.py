"""What every receiver type is: the keys all share, their checks, and what delivery asks.

A receiver type is one module of this package with a `ReceiverBase` subclass holding its
settings (a ``type`` literal and only the keys that type reads), the construction of its
connector and, where its format is not the CloudEvent, its rendering of a payload.
"""

from __future__ import annotations

import ssl
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from connectors.http import Receiver
from connectors.tls import client_context

if TYPE_CHECKING:
    # Annotations only: monitord.alerts imports monitord.config, which imports this package.
    from monitord.alerts import Alert
    from monitord.retrain import RetrainTrigger

EventKind = Literal["alerts", "triggers"]


@dataclass(frozen=True)
class Resend:
    """How often delivery re-posts alerts to a receiver that forgets them (Alertmanager)."""

    interval_s: float  # a firing alert, this often
    resolved_for_s: float  # a resolved alert, for this long after its resolution


class ReceiverBase(BaseModel):
    """The keys of every ``[[receivers]]`` entry.

    ``events`` says what a receiver gets: alert receivers take "alerts", orchestrators
    "triggers" (retrain requests), a webhook either or both. Secrets (routing keys, webhook
    URLs, signing keys, tokens, passwords) never live in the file: a key ending in ``_env``
    names the environment variable holding one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    takes: ClassVar[tuple[EventKind, ...]]
    """What the type can receive; the first is the default of ``events``."""

    name: str = Field(min_length=1)
    type: str
    events: tuple[EventKind, ...] = Field(
        (), description="alerts, triggers or both; default by type"
    )
    match: dict[str, list[str]] = Field(
        default_factory=dict,
        description="route: label -> accepted values (all must match); triggers offer "
        "model, model_version and reason",
    )
    ca_file: Path | None = Field(
        None, description="https: PEM CA bundle the server is verified with; default the system's"
    )
    cert_file: Path | None = Field(None, description="https: PEM client certificate (mutual TLS)")
    key_file: Path | None = Field(None, description="https: PEM private key of cert_file")
    verify_hostname: bool = Field(
        True, description="https: the certificate must name the URL's host (it is verified anyway)"
    )

    @classmethod
    def kind(cls) -> str:
        """The ``type`` naming this receiver type."""
        return str(cls.model_fields["type"].default)

    @model_validator(mode="before")
    @classmethod
    def _required_and_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # Pydantic would answer "receivers.0.airflow.dag_id: Field required"; the advice names
        # the type instead. A missing name keeps pydantic's answer: every type needs one.
        for key, field in cls.model_fields.items():
            if field.is_required() and key != "name" and not data.get(key):
                raise ValueError(cls._missing(key))
        if "events" not in data:
            return {**data, "events": list(cls.takes[:1])}
        return data

    @classmethod
    def _missing(cls, key: str) -> str:
        """Advice for a required key left out, e.g. "airflow receivers need dag_id"."""
        if key == "url":
            return f"a {cls.kind()} receiver needs url"
        if key == "secret_env":
            return f"a {cls.kind()} receiver needs secret_env: {cls.model_fields[key].description}"
        return f"{cls.kind()} receivers need {key}"

    @model_validator(mode="after")
    def _key_with_certificate(self) -> Self:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file: a client key needs its certificate (cert_file) too")
        url = getattr(self, "url", None)
        tls = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k) is not None]
        if not self.verify_hostname:
            tls.append("verify_hostname")
        if tls and isinstance(url, str) and url.lower().startswith("http://"):
            # Settings that could not apply would read as protection the receiver lacks.
            raise ValueError(f"{tls[0]}: TLS settings need an https:// url (url is http://)")
        return self

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of the https connections (None: the system's CAs, host names
        checked); `TlsFileError` names a file it cannot use."""
        if (self.ca_file, self.cert_file, self.verify_hostname) == (None, None, True):
            return None
        return client_context(
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
            check_hostname=self.verify_hostname,
        )

    @model_validator(mode="after")
    def _events_taken(self) -> Self:
        if not self.events or not set(self.events) <= set(self.takes):
            raise ValueError(
                f"events: {self.type} receivers take {list(self.takes)}, got {list(self.events)}"
            )
        return self

    def variables(self) -> dict[str, str]:
        """Each ``*_env`` key that is set -> the environment variable it names."""
        return {key: value for key, value in self if key.endswith("_env") and value}

    @property
    def secret_variable(self) -> str | None:
        """The environment variable holding this receiver's secret (``secret_env``), if any."""
        return self.variables().get("secret_env")

    @abstractmethod
    def connector(self, environ: Mapping[str, str]) -> Receiver:
        """The connector delivering this receiver's payloads. Every variable in `variables`
        is set in ``environ``; a value the connector refuses raises ValueError."""

    def render_alert(
        self,
        alert: Alert,
        cloudevent: bytes,
        *,
        started: float,
        now: float,
        resolved_at: float | None = None,
    ) -> bytes:
        """The payload of an alert transition: by default its CloudEvent.

        ``started`` is when the label set fired, ``now`` this send (a re-send is later than
        the transition), ``resolved_at`` when a resolved alert resolved.
        """
        return cloudevent

    def render_trigger(self, request: RetrainTrigger, cloudevent: bytes) -> bytes:
        """The payload of a retrain request: by default its CloudEvent, whose ``id`` is the
        idempotency key and whose ``data`` the orchestrator connectors pass on."""
        return cloudevent

    @property
    def resend(self) -> Resend | None:
        """Re-posting of alerts to this receiver; None: each transition is sent once."""
        return None


def read(environ: Mapping[str, str], variable: str | None) -> str:
    """The value of the environment variable an optional ``*_env`` key names ("" unset)."""
    return environ.get(variable, "") if variable else ""


__all__ = ["EventKind", "ReceiverBase", "Resend", "read"]
