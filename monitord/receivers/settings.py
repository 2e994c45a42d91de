"""`ReceiverSettings`: one ``[[receivers]]`` entry, whichever its type, told apart by ``type``.

A new receiver type is a module beside this one and a member of the union below.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from pydantic import BeforeValidator, Field

from monitord.receivers.airflow import AirflowSettings
from monitord.receivers.alertmanager import AlertmanagerSettings
from monitord.receivers.argo import ArgoSettings
from monitord.receivers.kubeflow import KubeflowSettings
from monitord.receivers.pagerduty import PagerDutySettings
from monitord.receivers.prefect import PrefectSettings
from monitord.receivers.receiver import ReceiverBase
from monitord.receivers.slack import SlackSettings
from monitord.receivers.webhook import WebhookSettings

_Types = (
    AlertmanagerSettings
    | PagerDutySettings
    | SlackSettings
    | WebhookSettings
    | AirflowSettings
    | PrefectSettings
    | ArgoSettings
    | KubeflowSettings
)
TYPES: tuple[type[ReceiverBase], ...] = get_args(_Types)


def _keys_of_other_types(data: Any) -> Any:
    """A key that only other types read is a mistake worth naming as such, not as unknown."""
    if not isinstance(data, dict):
        return data
    kind = data.get("type")
    own = next((t for t in TYPES if t.kind() == kind), None)
    if own is None:
        return data  # the discriminator answers with the known types
    for key in sorted(set(data) - set(own.model_fields)):
        readers = [t.kind() for t in TYPES if key in t.model_fields]
        if readers:
            raise ValueError(f"{key} is only read by {', '.join(readers)} receivers, not {kind}")
    return data


ReceiverSettings = Annotated[
    _Types, Field(discriminator="type"), BeforeValidator(_keys_of_other_types)
]


__all__ = ["TYPES", "ReceiverSettings"]
