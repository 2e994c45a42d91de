"""`monitord demo`: an embedded broker, synthetic traffic for two models and the daemon.

Everything runs in this process on 127.0.0.1: the broker as a child process, the producer
in a thread, the daemon in the main thread. A status line every two seconds shows events/s
and each model's state; alerts and retrain requests are printed as they fire.

The demo's clock (when drift starts, when it ends) starts at the daemon's first events, not
at its own start: joining the consumer group takes seconds, more on a busy machine, and a
demo timed from its start could drift, or end, before the daemon had seen much.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO

from connectors.broker import EmbeddedBroker
from connectors.kafka import KafkaProducerSettings, KafkaSink, ensure_topics
from monitord.alerts import Alert
from monitord.app import App
from monitord.config import Config
from monitord.daemon import Daemon, tune_garbage_collector
from monitord.outputs import describe
from monitord.policy import Output
from monitord.traffic import TrafficGenerator

MODELS = ("fraud-scorer", "churn-model")

WAIT_FOR_EVENTS_S = 60.0
"""Seconds without events after which the demo's clock starts anyway (it then ends on time,
its status lines saying it waited for events)."""


class ConsolePublisher:
    """Prints each alert and retrain request as one readable line."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def publish(self, outputs: list[Output]) -> None:
        for output in outputs:
            if isinstance(output, Alert):
                mark = "ALERT  " if output.status == "firing" else "RESOLVE"
                line = f"{mark} {describe(output)}"
            else:
                line = f"RETRAIN {describe(output)} -> request {output.id[:12]}"
            print(line, file=self._stream, flush=True)

    def flush(self) -> None:
        self._stream.flush()

    def close(self) -> None:
        """Standard output is not ours to close."""


def _produce(
    bootstrap: str, topic: str, rate: int, stop: threading.Event, drifting: threading.Event
) -> None:
    """Send ``rate`` events a second to ``topic`` until ``stop``, drifted once ``drifting``."""
    sink = KafkaSink(bootstrap, settings=KafkaProducerSettings(linger_ms=5))
    generator = TrafficGenerator()
    tick, per_tick = 0.1, max(rate // 10 // len(MODELS), 1)
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            drifted = drifting.is_set()
            for model in MODELS:
                for value in generator.batch(model, per_tick, drifted):
                    sink.send(topic, model.encode(), value)
            sink.flush(10.0)
            next_at += tick
            stop.wait(max(0.0, next_at - time.monotonic()))
    finally:
        sink.close()


def _status(daemon: Daemon, started: float, last_events: int, interval: float) -> str:
    stats = daemon.stats
    rate = (stats.events - last_events) / interval
    parts = []
    for (model, version), monitor in sorted(daemon.monitor.versions.items()):
        state = "warming up" if monitor.warming_up else "monitoring"
        parts.append(f"{model}/{version}: {state}")
    return (
        f"[{time.monotonic() - started:5.1f}s] {rate:7.0f} events/s | "
        f"{' | '.join(parts) or 'waiting for events'} | alerts {stats.alerts_firing} "
        f"fired, {stats.alerts_resolved} resolved | retrains {stats.triggers} | "
        f"dead letters {sum(stats.bad_records.values())}"
    )


def run_demo(config: Config, duration_s: float, rate: int, drift_after_s: float = 10.0) -> int:
    """Run the demo for ``duration_s`` from the daemon's first events; drift starts about
    ``drift_after_s`` seconds after them."""
    with App() as app:
        app.stop_on_signals()  # Ctrl-C stops the producer and the loop, then all is closed
        print("monitord demo: starting an embedded Kafka-protocol broker on 127.0.0.1 ...")
        broker = app.enter(EmbeddedBroker())  # closed after the daemon has left its group
        config = _on_broker(config, broker.bootstrap)
        topic = config.kafka.input_topics[0]
        ensure_topics(broker.bootstrap, {topic: 3})
        stop, drifting = app.stopping, threading.Event()
        producer = threading.Thread(
            target=_produce, args=(broker.bootstrap, topic, rate, stop, drifting), daemon=True
        )
        print(
            f"broker {broker.bootstrap}; producing {rate} events/s for {', '.join(MODELS)}; "
            f"drift ~{drift_after_s:.0f} s after the daemon's first events, the end "
            f"{duration_s:.0f} s after them (Ctrl-C stops)"
        )
        daemon = app.build_daemon(config, [ConsolePublisher(sys.stdout)])
        tune_garbage_collector()
        producer.start()
        try:
            _loop(daemon, stop, duration_s, drift_after_s, drifting)
        finally:
            stop.set()
            producer.join(timeout=10)
            app.close()
        stats = daemon.stats
        kafka = config.kafka
        print(
            f"done: {stats.events} events, {stats.alerts_firing} alerts fired, "
            f"{stats.alerts_resolved} resolved, {stats.triggers} retrain requests, "
            f"{sum(stats.bad_records.values())} dead letters "
            f"(topics {kafka.alert_topic}, {kafka.trigger_topic}, {kafka.dead_letter_topic})"
        )
    return 0


def _on_broker(config: Config, bootstrap: str) -> Config:
    """``config`` pointed at the embedded broker, without checkpoints."""
    # A group join on the embedded broker takes about half the session timeout.
    consumer = config.kafka.consumer.model_copy(
        update={"session_timeout_ms": 6000, "heartbeat_interval_ms": 1000}
    )
    kafka = config.kafka.model_copy(update={"bootstrap_servers": bootstrap, "consumer": consumer})
    # The embedded broker keeps nothing between runs, so neither may its checkpoints:
    # a restored offset would point past the end of the new, empty topic.
    checkpoint = config.checkpoint.model_copy(update={"store": "none"})
    return config.model_copy(update={"kafka": kafka, "checkpoint": checkpoint})


def _loop(
    daemon: Daemon,
    stop: threading.Event,
    duration_s: float,
    drift_after_s: float,
    drifting: threading.Event,
) -> None:
    """Step the daemon until ``stop``, or ``duration_s`` after its first events (or after
    `WAIT_FOR_EVENTS_S` without any), a status line every two seconds; set ``drifting``
    ``drift_after_s`` after the first events."""
    started = last = time.monotonic()
    first: float | None = None  # the daemon's first events: the demo's clock starts
    last_events = 0
    while not stop.is_set():
        daemon.step(0.2)
        now = time.monotonic()
        if first is None and (daemon.stats.events or now - started >= WAIT_FOR_EVENTS_S):
            first = now
        if first is not None and now - first >= drift_after_s:
            drifting.set()
        if first is not None and now - first >= duration_s:
            break
        if now - last >= 2.0:
            print(_status(daemon, started, last_events, time.monotonic() - last), flush=True)
            last, last_events = time.monotonic(), daemon.stats.events


__all__ = ["MODELS", "ConsolePublisher", "run_demo"]
