"""Receiver types: each module owns one type's settings, connector and payload rendering.

- `receiver`: `ReceiverBase`, the keys every type shares and what delivery asks of a type
- `settings`: `ReceiverSettings`, the union of the types discriminated by ``type``
- `alertmanager`, `pagerduty`, `slack`: alert receivers with formats of their own
- `webhook`: signed CloudEvents, alerts and/or retrain requests
- `airflow`, `prefect`, `argo`, `kubeflow`: orchestrators starting a run per request

Adding a type: a module with a `ReceiverBase` subclass (``type: Literal["name"]``, only the
keys the type reads, its `connector`, and its rendering where the CloudEvent will not do),
then one member in `settings`. The connector itself belongs in `connectors`.
"""

from monitord.receivers.receiver import EventKind, ReceiverBase, Resend
from monitord.receivers.settings import ReceiverSettings

__all__ = ["EventKind", "ReceiverBase", "ReceiverSettings", "Resend"]
