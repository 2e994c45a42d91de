"""Where a model version's reference profile came from, when a model registry gave it.

Alerts and retrain requests carry it (``registry``), so a receiver can open the exact
model version and artifact a decision was taken against.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Provenance:
    """A reference profile fetched from a model registry."""

    registry: str  # the registry's kind: "mlflow"
    tracking_uri: str  # the server, e.g. https://mlflow.example.com
    model_uri: str  # the registered version, e.g. models:/fraud-scorer/7
    run_id: str  # the run whose artifacts hold the profile
    artifact_uri: str  # the profile artifact, e.g. mlflow-artifacts:/1/<run>/artifacts/...
    sha256: str  # of the artifact's bytes


__all__ = ["Provenance"]
