"""What ``/status`` shows of a running daemon: counts, partitions, labels and, per model
version, its reference, warm-up, alerts firing and performance.

Called from the admin thread: it reads snapshots of the loop's dictionaries.
"""

from __future__ import annotations

from connectors.stream import Source
from monitord.labels import LabelJoin
from monitord.monitor import Monitor
from monitord.performance import Performance
from monitord.policy import Policy
from monitord.provenance import Provenance
from monitord.stats import Stats


def daemon_status(
    stats: Stats,
    source: Source,
    monitor: Monitor,
    policy: Policy,
    performance: Performance,
    joins: LabelJoin,
) -> dict[str, object]:
    """Per model version: reference, warm-up, rows seen and alerts firing (for /status)."""
    firing: dict[tuple[str, str], list[dict[str, str]]] = {}
    for model, version, feature, detector in policy.firing():
        firing.setdefault((model, version), []).append({"feature": feature, "detector": detector})
    models: dict[str, dict[str, object]] = {}
    for (model, version), found in list(monitor.versions.items()):
        profile = found.profile
        models.setdefault(model, {})[version] = {
            "reference_id": None if profile is None else profile.profile_id,
            "reference": _reference_kind(found.profile_from_file, found.provenance),
            "reference_uri": None if found.provenance is None else found.provenance.model_uri,
            "reference_notes": [] if profile is None else profile.notes,
            "status": "warming up" if found.warming_up else "monitoring",
            "change_detection": found.change_status(),
            "events": stats.per_model.get(model, 0),
            "partition": str(found.owner),
            "alerts_firing": firing.get((model, version), []),
            "columns": found.columns_status(),
            "performance": performance_status(performance, model, version),
        }
    return {
        "events": stats.events,
        "bad_records": dict(stats.bad_records),
        "assigned": sorted(str(tp) for tp in source.assignment()),
        "checkpoints": stats.checkpoints,
        "last_checkpoint": stats.last_checkpoint or None,
        "labels": {
            "topics": list(joins.topics),
            "pending": joins.pending(),
            "held": joins.gate.held(),
        },
        "models": models,
    }


def performance_status(
    performance: Performance, model: str, version: str
) -> dict[str, object] | None:
    """A version's performance stream for /status (None: no label joined yet)."""
    found = performance.versions.get((model, version))
    if found is None:
        return None
    reference = found.reference
    return {
        "status": "warming up" if reference is None else "monitoring",
        "labelled_rows": found.rows,
        "task": None if reference is None else reference.scoring.task,
        "reference_id": found.reference_id or None,
        "reference": None if reference is None else reference.metrics,
        "last_window": found.last or None,
    }


def _reference_kind(from_file: bool, provenance: Provenance | None) -> str:
    if provenance is not None:
        return "registry"
    return "file" if from_file else "warm-up capture"


__all__ = ["daemon_status", "performance_status"]
