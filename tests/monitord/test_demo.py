"""`monitord demo`, the README's first command: drift detected, alerts and retrain requests."""

from __future__ import annotations

import re

import pytest

from monitord import demo
from monitord.config import Config, parse_config
from monitord.demo import run_demo


@pytest.fixture(params=["prompt", "late"])
def join(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's consumer joins its group in a few seconds, or late, as on a loaded
    machine: a join on the embedded broker takes about half the session timeout, here 15 s,
    longer than the demo runs."""
    if request.param == "late":
        on_broker = demo._on_broker

        def late(config: Config, bootstrap: str) -> Config:
            config = on_broker(config, bootstrap)
            kafka = config.kafka
            consumer = kafka.consumer.model_copy(update={"session_timeout_ms": 30_000})
            return config.model_copy(
                update={"kafka": kafka.model_copy(update={"consumer": consumer})}
            )

        monkeypatch.setattr(demo, "_on_broker", late)


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.usefixtures("join")
def test_demo_shows_quiet_start_then_alerts_and_one_retrain_per_model(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_demo(parse_config({}), duration_s=14.0, rate=4000, drift_after_s=4.0) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert any("monitoring" in line for line in lines if line.startswith("[")), out
    retrains = [line for line in lines if line.startswith("RETRAIN")]
    assert sorted(line.split()[1].split("/")[0] for line in retrains) == [
        "churn-model",
        "fraud-scorer",
    ], out
    alerts = [line for line in lines if line.startswith("ALERT")]
    # The injected drifts: amount and country of fraud-scorer, spend and calls of churn-model.
    drifted = {(line.split()[2].split("/")[0], line.split()[3]) for line in alerts}
    assert {
        ("fraud-scorer", "amount"),
        ("fraud-scorer", "country"),
        ("churn-model", "support_calls"),
    } <= drifted, out
    # Features the generator never shifts stay quiet.
    assert not drifted & {
        ("fraud-scorer", "age"),
        ("fraud-scorer", "hour"),
        ("churn-model", "plan"),
        ("churn-model", "tenure_months"),
    }, out
    done = re.search(r"done: (\d+) events.* (\d+) dead letters", out)
    assert done is not None, out
    assert int(done.group(1)) > 10_000
    assert int(done.group(2)) > 0  # the generator's malformed events went to the DLQ
