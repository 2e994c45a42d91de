"""A registry reference's provenance survives a checkpoint of the retrain policy's state,
and a state without one is stored exactly as before."""

from __future__ import annotations

from monitord.monitor import OffsetRange
from monitord.provenance import Provenance
from monitord.retrain import EpisodeState, Lineage

PROVENANCE = Provenance(
    registry="mlflow",
    tracking_uri="http://127.0.0.1:5000",
    model_uri="models:/fraud-scorer/7",
    run_id="0a48",
    artifact_uri="mlflow-artifacts:/0/0a48/artifacts/monitord/profile.npz",
    sha256="ab" * 32,
)


def lineage(registry: Provenance | None) -> Lineage:
    window = OffsetRange("events", 0, 0, 499)
    return Lineage(
        "7dab63e7d9425eb2",
        (("x", "ks", 0.3, 0.1),),
        0.5,
        2,
        0,
        499,
        OffsetRange("events", 0, 499, 499),
        (window,),
        1.0,
        2.0,
        registry=registry,
    )


def state(registry: Provenance | None) -> EpisodeState:
    return EpisodeState(
        drifting_windows=2,
        clean_windows=0,
        in_episode=True,
        cooldown=0,
        episode_first_row=0,
        latest=lineage(registry),
    )


def test_the_registry_round_trips_through_stored_state() -> None:
    stored = state(PROVENANCE).model_dump(mode="json")
    assert stored["latest"]["registry"]["model_uri"] == "models:/fraud-scorer/7"
    restored = EpisodeState.model_validate(stored)
    assert restored.latest is not None
    assert restored.latest.registry == PROVENANCE


def test_a_lineage_without_a_registry_is_stored_without_the_key() -> None:
    stored = state(None).model_dump(mode="json")
    assert "registry" not in stored["latest"]
    restored = EpisodeState.model_validate(stored)
    assert restored.latest is not None
    assert restored.latest.registry is None
