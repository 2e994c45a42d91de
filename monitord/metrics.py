"""Prometheus metrics of the daemon: the catalogue, the cardinality cap, the outbox view.

`DaemonMetrics` keeps plain numbers that the daemon folds in once per batch, and turns
them into metric families only when Prometheus scrapes: it is a custom collector on a
private `CollectorRegistry`. Keeping the numbers ourselves rather than in client-library
instruments costs one lock per call instead of one per series, lets the cap refuse a
series before it exists, and exposes no ``_created`` companion series.

Every series about one model version carries ``model`` and ``model_version``, so two live
versions (a canary beside the stable one) never overwrite each other; dashboards and rules
aggregate ``by (model)`` where the version does not matter. Their number is bounded by
``limits.max_models`` times ``limits.max_versions_per_model``, and a version retired by that
limit takes its series with it. Per-feature series (``monitord_drift_statistic`` and
``monitord_drift_threshold``, labelled model, model_version, feature and detector) are
capped: past ``max_feature_series`` label sets no new one is created, and every refused
update adds one to ``monitord_metric_series_dropped_total``. `check_cardinality` refuses at
startup a configuration whose reference profiles alone exceed the cap.

The registry also holds the standard ``process_*`` (Linux) and ``python_*`` collectors of
the client library. `scrape` answers the Prometheus text format, or OpenMetrics when
the scrape's ``Accept`` header asks for it.

`OutboxCollector` reads delivery outcomes and the backlog from the outbox file when
scraped, so they stay right across restarts and whichever thread delivers.
"""

from __future__ import annotations

import bisect
import copy
import logging
import math
import platform
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from connectors.outbox import SCHEMA_VERSION
from detectors.profile import ReferenceProfile
from monitord.alerts import PERFORMANCE_ALERTS, Alert
from monitord.clock import now
from monitord.config import Config, ConfigError, DetectionSettings
from monitord.events import PREDICTION
from monitord.monitor import Evaluation
from monitord.reference import load_profile
from monitord.retrain import RetrainTrigger

log = logging.getLogger(__name__)

BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Upper bounds (seconds) of the batch duration histogram: a large batch takes 0.1-1 s."""

BAD_RECORD_REASONS = (
    "empty",
    "oversize",
    "invalid_json",
    "not_an_object",
    "missing_model",
    "missing_features",
    "wrong_type",
    "model_limit",
    "version_limit",
    "name_too_long",
    "missing_event_id",
    "missing_label",
)
"""Reasons exposed at 0 from the start, so the first bad record shows as an increase."""

LABEL_DELAY_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0)
"""Bounds (seconds) of the label delay histogram: a second to a week."""

DELIVERY_OUTCOMES = ("delivered", "retry", "failed")

VersionKey = tuple[str, str]
"""(model, model version): the labels every per-version series starts with."""

SeriesKey = tuple[str, str, str, str]
"""(model, model version, feature, detector) of one per-feature series."""

FiringKey = tuple[str, str]
"""(feature, detector) of one firing alert label set of a model version."""

VERSION_LABELS = ("model", "model_version")


class DaemonMetrics:
    """The daemon's metric catalogue; thread-safe, cheap to update once per batch.

    Args:
        max_feature_series: cap on model/version/feature/detector label sets.
        registry: where to register (a new private registry by default), as `registry`.
        outbox: the outbox SQLite file, for delivery and backlog metrics (None: not shown).
        receivers: configured receiver names, shown at 0 before their first message.
        clock: wall clock for ``monitord_model_last_seen_timestamp_seconds``.
        version: for ``monitord_build_info`` (default: the installed package's).
    """

    def __init__(
        self,
        *,
        max_feature_series: int = 10_000,
        registry: CollectorRegistry | None = None,
        outbox: Path | str | None = None,
        receivers: Sequence[str] = (),
        clock: Callable[[], float] = now,
        version: str | None = None,
    ) -> None:
        if max_feature_series < 1:
            raise ValueError(f"max_feature_series must be at least 1, got {max_feature_series}")
        self.max_feature_series = max_feature_series
        self._clock = clock
        self._build = (version or _package_version(), platform.python_version())
        self._lock = threading.Lock()
        self._events = 0
        self._batch_buckets = [0] * (len(BATCH_BUCKETS) + 1)  # last: above every bound
        self._batch_sum = 0.0
        self._bad = dict.fromkeys(BAD_RECORD_REASONS, 0)
        self._model_events: dict[VersionKey, int] = {}
        self._late: dict[VersionKey, int] = {}
        self._untimed: dict[VersionKey, int] = {}
        self._unmonitored: dict[VersionKey, int] = {}
        self._last_event: dict[VersionKey, float] = {}
        self._last_seen: dict[VersionKey, float] = {}
        self._drift: dict[SeriesKey, tuple[float, float]] = {}
        self._dropped = 0
        self._transitions: dict[tuple[str, str, str], int] = {}
        self._firing: dict[VersionKey, set[FiringKey]] = {}
        self._triggers: dict[tuple[str, str, str], int] = {}
        self._lag: dict[tuple[str, int], int] = {}
        self._offset_resets: dict[tuple[str, int, str], int] = {}
        self._labels: dict[tuple[str, str], int] = {}
        self._label_delay_buckets = [0] * (len(LABEL_DELAY_BUCKETS) + 1)
        self._label_delay_sum = 0.0
        self._join_pending = 0
        self._labels_held = 0
        self._performance: dict[tuple[str, str, str], float] = {}
        self._checkpoint: float | None = None
        self._heartbeat: float | None = None
        self._ready = False
        self.registry = registry if registry is not None else CollectorRegistry()
        self.registry.register(self)
        _register_runtime_collectors(self.registry)
        if outbox is not None:
            self.registry.register(OutboxCollector(outbox, receivers))

    def batch(self, n_records: int, seconds: float) -> None:
        """One polled batch of ``n_records`` records took ``seconds`` to process."""
        index = bisect.bisect_left(BATCH_BUCKETS, seconds)
        with self._lock:
            self._events += n_records
            self._batch_buckets[index] += 1
            self._batch_sum += seconds

    def bad_records(self, reasons: Mapping[str, int]) -> None:
        """Bad records of a batch, counted by reason."""
        with self._lock:
            for reason, n in reasons.items():
                self._bad[reason] = self._bad.get(reason, 0) + n

    def model_events(
        self,
        model: str,
        version: str,
        n: int,
        newest_event_time: float,
        late: int = 0,
        untimed: int = 0,
    ) -> None:
        """``n`` events of ``model``/``version`` were processed, ``late`` of them out of order
        by more than a window's time and ``untimed`` with an unusable time of their own; the
        newest has this event time (NaN: unknown)."""
        seen = self._clock()
        key = (model, version)
        with self._lock:
            self._model_events[key] = self._model_events.get(key, 0) + n
            if late:
                self._late[key] = self._late.get(key, 0) + late
            if untimed:
                self._untimed[key] = self._untimed.get(key, 0) + untimed
            self._last_seen[key] = seen
            if not math.isnan(newest_event_time):
                previous = self._last_event.get(key, -math.inf)
                self._last_event[key] = max(previous, newest_event_time)

    def columns_not_monitored(self, model: str, version: str, count: int) -> None:
        """``count`` names seen in ``model``/``version``'s events are not monitored."""
        with self._lock:
            if count or (model, version) in self._unmonitored:
                self._unmonitored[model, version] = count

    def retired(self, keys: Iterable[tuple[str, str]]) -> None:
        """Versions no longer monitored (limits.max_versions_per_model): their series go,
        so that versions coming and going never grow the exposition."""
        gone = set(keys)
        if not gone:
            return
        with self._lock:
            for series in (
                self._model_events,
                self._late,
                self._untimed,
                self._unmonitored,
                self._last_event,
                self._last_seen,
                self._firing,
            ):
                for key in gone & series.keys():
                    del series[key]
            keyed: tuple[dict[Any, Any], ...] = (
                self._drift,
                self._transitions,
                self._triggers,
                self._performance,
            )
            for series_of in keyed:
                for labels in [k for k in series_of if k[:2] in gone]:
                    del series_of[labels]

    def labels(
        self,
        outcomes: Mapping[tuple[str, str], int],
        delays_s: Sequence[float],
        pending: int,
        held: int,
    ) -> None:
        """A batch's join outcomes per (model, outcome), the delays of the labels joined,
        and the join's size now (predictions and early labels waiting; label records held)."""
        with self._lock:
            for key, n in outcomes.items():
                self._labels[key] = self._labels.get(key, 0) + n
            for delay in delays_s:
                if math.isfinite(delay):
                    self._label_delay_buckets[bisect.bisect_left(LABEL_DELAY_BUCKETS, delay)] += 1
                    self._label_delay_sum += delay
            self._join_pending, self._labels_held = pending, held

    def evaluations(self, evaluations: Sequence[Evaluation]) -> None:
        """The latest statistic and threshold of every evaluated feature (within the cap),
        against the version's reference (the drift gauges; a recent regime's tests would
        overwrite them with another question's answer)."""
        with self._lock:
            drift, cap = self._drift, self.max_feature_series
            for evaluation in evaluations:
                if evaluation.regime:
                    continue
                model, result = evaluation.model, evaluation.result
                detector = result.detector
                if detector in PERFORMANCE_ALERTS:
                    for name, value in evaluation.own_evidence():
                        self._performance[model, evaluation.version, name] = value
                    continue
                statistics, thresholds = result.statistic.tolist(), result.threshold.tolist()
                for feature, statistic, threshold in zip(
                    evaluation.features, statistics, thresholds, strict=True
                ):
                    key = (model, evaluation.version, feature, detector)
                    if key not in drift and len(drift) >= cap:
                        self._dropped += 1
                        continue
                    drift[key] = (statistic, threshold)

    def outputs(self, outputs: Sequence[Alert | RetrainTrigger]) -> None:
        """Alert transitions (and which label sets fire) and retrain requests."""
        with self._lock:
            for output in outputs:
                if isinstance(output, Alert):
                    key = (output.model, output.version, output.status)
                    self._transitions[key] = self._transitions.get(key, 0) + 1
                    firing = self._firing.setdefault((output.model, output.version), set())
                    label_set = (output.feature, output.detector)
                    if output.status == "firing":
                        firing.add(label_set)
                    else:
                        firing.discard(label_set)
                else:
                    reason = (output.model, output.version, output.reason)
                    self._triggers[reason] = self._triggers.get(reason, 0) + 1

    def restore_firing(self, firing: Iterable[tuple[str, str, str, str]]) -> None:
        """After restoring policy state: the label sets firing, as (model, version, feature,
        detector); replaces what `outputs` has recorded."""
        restored: dict[VersionKey, set[FiringKey]] = {}
        for model, version, feature, detector in firing:
            restored.setdefault((model, version), set()).add((feature, detector))
        with self._lock:
            self._firing = restored

    def restore_performance(self, shown: Iterable[tuple[str, str, str, float]]) -> None:
        """After restoring performance state: what its gauges showed, as (model, version,
        metric, value); else they stay empty until the versions' next windows of labelled
        rows, which delayed labels may bring hours later."""
        with self._lock:
            for model, version, name, value in shown:
                self._performance[model, version, name] = value

    def lag(self, by_partition: Mapping[tuple[str, int], int]) -> None:
        """Records behind the end of each assigned (topic, partition); replaces the last call,
        so a revoked partition's series disappears."""
        with self._lock:
            self._lag = dict(by_partition)

    def offset_reset(self, topic: str, partition: int, reason: str) -> None:
        """A partition's offset lay outside its log (``reason``) and was moved."""
        key = (topic, partition, reason)
        with self._lock:
            self._offset_resets[key] = self._offset_resets.get(key, 0) + 1

    def checkpointed(self, at: float) -> None:
        with self._lock:
            self._checkpoint = at

    def heartbeat(self, at: float) -> None:
        with self._lock:
            self._heartbeat = at

    def ready(self, flag: bool) -> None:
        with self._lock:
            self._ready = flag

    def exposition(self) -> bytes:
        """Every registered metric in the Prometheus text format 0.0.4."""
        return generate_latest(self.registry)

    def scrape(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition a scrape with this ``Accept`` header asked for, and its content
        type: OpenMetrics 1.0 when it accepts ``application/openmetrics-text``, else the
        Prometheus text format 0.0.4."""
        encode, content_type = choose_encoder(accept or "")
        return encode(self.registry), content_type

    def collect(self) -> Iterator[Metric]:
        """The metric families, built at scrape time (the registry calls this) from a copy
        of the numbers taken under the lock: the loop waits for the copy, not for the
        families (at 1,000 models it waited 320 ms a scrape)."""
        with self._lock:
            frozen = self._frozen()
        return iter(frozen._families())

    def _frozen(self) -> DaemonMetrics:
        """A copy whose containers are the loop's no longer: each dictionary and list
        copied, the firing alerts' sets too (the numbers in them are immutable)."""
        frozen = copy.copy(self)
        for name, value in vars(self).items():
            if isinstance(value, dict | list):
                setattr(frozen, name, copy.copy(value))
        frozen._firing = {key: set(alerts) for key, alerts in self._firing.items()}
        return frozen

    def _families(self) -> list[Metric]:
        """Every family, in the order of the exposition: the build, what was consumed, how
        fresh it is, drift, alerts and retraining, liveness, labels and performance."""
        return [
            *self._event_families(),
            *self._consumer_families(),
            *self._freshness_families(),
            *self._drift_families(),
            *self._decision_families(),
            *self._liveness_families(),
            *self._label_families(),
            *self._performance_families(),
        ]

    def _event_families(self) -> list[Metric]:
        """The build, and the events consumed, processed, late, untimed or dead-lettered."""
        info = GaugeMetricFamily(
            "monitord_build_info",
            "Build of the running daemon (always 1).",
            labels=("version", "python"),
        )
        info.add_metric(self._build, 1)
        events = CounterMetricFamily(
            "monitord_events_consumed", "Records polled from the input topics.", value=self._events
        )
        per_model = _counter(
            "monitord_model_events", "Events processed per model version.", VERSION_LABELS
        )
        late = _counter(
            "monitord_late_events",
            "Events more than window_seconds older than the newest event time of their model "
            "version (kept in their window, counted here).",
            VERSION_LABELS,
        )
        untimed = _counter(
            "monitord_untimed_events",
            "Events whose own timestamp was unparseable, outside 1970-9999 or more than "
            "events.max_time_ahead_s ahead of the record's: the Kafka timestamp was used.",
            VERSION_LABELS,
        )
        unmonitored = _gauge(
            "monitord_columns_not_monitored",
            "Feature names seen in a model version's events that no monitored column holds "
            "(see /status for which and why).",
            VERSION_LABELS,
        )
        bad = _counter("monitord_bad_records", "Records dead-lettered, by reason.", ("reason",))
        return [
            info,
            events,
            _filled(per_model, self._model_events),
            _filled(late, self._late),
            _filled(untimed, self._untimed),
            _filled(unmonitored, self._unmonitored),
            _filled(bad, {(reason,): n for reason, n in self._bad.items()}),
        ]

    def _consumer_families(self) -> list[Metric]:
        """The consumer's lag and offset resets, and how long batches take."""
        lag = _gauge(
            "monitord_consumer_lag_records",
            "Records between the consumer position and the end of each assigned partition.",
            ("topic", "partition"),
        )
        resets = _counter(
            "monitord_offset_resets",
            "Partitions moved because their offset lay outside the log (beyond_end: the topic "
            "was recreated or the broker lost its log; before_start: retention), by the rule "
            "kafka.auto_offset_reset.",
            ("topic", "partition", "reason"),
        )
        duration = HistogramMetricFamily(
            "monitord_batch_duration_seconds",
            "Time to process one polled batch.",
            buckets=self._histogram_buckets(),
            sum_value=self._batch_sum,
        )
        # Sorted by partition number, not text (2 before 10).
        for (topic, partition), records in sorted(self._lag.items()):
            lag.add_metric((topic, str(partition)), records)
        for (topic, partition, reason), n in sorted(self._offset_resets.items()):
            resets.add_metric((topic, str(partition), reason), n)
        return [lag, resets, duration]

    def _freshness_families(self) -> list[Metric]:
        """When each model version was last heard of, by event time and by wall clock."""
        last_event = _gauge(
            "monitord_last_event_timestamp_seconds",
            "Event time of the newest event processed per model version.",
            VERSION_LABELS,
        )
        last_seen = _gauge(
            "monitord_model_last_seen_timestamp_seconds",
            "Wall clock when an event of the model version was last processed.",
            VERSION_LABELS,
        )
        return [_filled(last_event, self._last_event), _filled(last_seen, self._last_seen)]

    def _drift_families(self) -> list[Metric]:
        """The latest drift statistic and threshold per feature and detector."""
        labels = (*VERSION_LABELS, "feature", "detector")
        statistic = _gauge(
            "monitord_drift_statistic", "Latest drift test statistic per feature.", labels
        )
        threshold = _gauge(
            "monitord_drift_threshold",
            "Threshold above which the statistic counts as drift (absent where the test "
            "has none, e.g. ADWIN).",
            labels,
        )
        for series, (value, limit) in sorted(self._drift.items()):
            statistic.add_metric(series, value)
            if not math.isnan(limit):
                threshold.add_metric(series, limit)
        return [statistic, threshold]

    def _decision_families(self) -> list[Metric]:
        """Alert transitions, the alerts firing, and retrain requests."""
        transitions = _counter(
            "monitord_alert_transitions",
            "Alert transitions decided, by model version and status.",
            (*VERSION_LABELS, "status"),
        )
        firing = _gauge(
            "monitord_alerts_firing",
            "Alert label sets currently firing per model version.",
            VERSION_LABELS,
        )
        for key in sorted(self._firing.keys() | self._model_events.keys()):
            firing.add_metric(key, len(self._firing.get(key, ())))
        triggers = _counter(
            "monitord_retrain_triggers",
            "Retrain requests decided, by model version and reason.",
            (*VERSION_LABELS, "reason"),
        )
        return [
            _filled(transitions, self._transitions),
            firing,
            _filled(triggers, self._triggers),
        ]

    def _liveness_families(self) -> list[Metric]:
        """The last checkpoint, the main loop's heartbeat, and readiness."""
        checkpoint = _gauge(
            "monitord_checkpoint_last_success_timestamp_seconds",
            "Wall clock of the last successful checkpoint (absent before the first).",
        )
        if self._checkpoint is not None:
            checkpoint.add_metric((), self._checkpoint)
        heartbeat = _gauge(
            "monitord_loop_heartbeat_timestamp_seconds",
            "Wall clock of the main loop's last iteration (absent before the first).",
        )
        if self._heartbeat is not None:
            heartbeat.add_metric((), self._heartbeat)
        ready = GaugeMetricFamily(
            "monitord_ready", "1 when the daemon is ready (see /readyz), else 0.", value=self._ready
        )
        return [checkpoint, heartbeat, ready]

    def _label_families(self) -> list[Metric]:
        """Label join outcomes and delays, and what the join holds."""
        labels_total = _counter(
            "monitord_labels",
            "Label join outcomes per model: joined, duplicate, conflicting, late (its "
            "prediction was evicted), orphan (no such prediction; model '' when the label "
            "names none), evicted (a prediction given up unlabelled), unjoinable (a prediction "
            "without an event id), duplicate_prediction, bad_label (an inline label that is an "
            "array or an object), unscored (joined, but no class or number of the version's "
            "task: left out of performance).",
            ("model", "outcome"),
        )
        delay = HistogramMetricFamily(
            "monitord_label_delay_seconds",
            "Event time from a prediction to its label, per joined label.",
            buckets=_cumulative(LABEL_DELAY_BUCKETS, self._label_delay_buckets),
            sum_value=self._label_delay_sum,
        )
        pending = _gauge(
            "monitord_label_join_pending",
            "Predictions and early labels waiting in the join stores of this consumer.",
        )
        pending.add_metric((), self._join_pending)
        held = _gauge(
            "monitord_label_records_held",
            "Label records read but held until the inference partitions are read past them.",
        )
        held.add_metric((), self._labels_held)
        return [_filled(labels_total, self._labels), delay, pending, held]

    def _performance_families(self) -> list[Metric]:
        """Model performance per version, and the per-feature updates the cap refused."""
        performance = _gauge(
            "monitord_model_performance",
            "Performance of the last window of labelled rows per model version (accuracy, "
            "error_rate, precision, recall, f1, log_loss, calibration_error; mae, rmse, bias; "
            "label_delay_p50_s).",
            ("model", "model_version", "metric"),
        )
        dropped = CounterMetricFamily(
            "monitord_metric_series_dropped",
            "Per-feature series updates refused by the cardinality cap (admin.max_feature_series).",
            value=self._dropped,
        )
        return [_filled(performance, self._performance), dropped]

    def _histogram_buckets(self) -> list[tuple[str, float]]:
        return _cumulative(BATCH_BUCKETS, self._batch_buckets)


def _cumulative(bounds: Sequence[float], counts: Sequence[int]) -> list[tuple[str, float]]:
    """Prometheus histogram buckets from per-bucket counts (the last: above every bound)."""
    cumulative = 0
    buckets: list[tuple[str, float]] = []
    for bound, n in zip(bounds, counts, strict=False):
        cumulative += n
        buckets.append((repr(bound), cumulative))
    buckets.append(("+Inf", cumulative + counts[-1]))
    return buckets


class OutboxCollector:
    """``monitord_deliveries_total`` and ``monitord_outbox_pending_messages`` per receiver,
    read from the outbox file (`connectors.outbox`) at scrape time.

    Attempts are read incrementally (rows after the last one counted), so a scrape costs a
    few index look-ups however long the history grows; the first scrape after a start
    counts the whole history once.
    """

    def __init__(self, path: Path | str, receivers: Sequence[str] = ()) -> None:
        self._path = Path(path)
        self._receivers = tuple(receivers)
        self._lock = threading.Lock()
        self._counted_rowid = 0
        self._deliveries = self._zero_deliveries()

    def _zero_deliveries(self) -> dict[tuple[str, str], int]:
        return {(r, o): 0 for r in self._receivers for o in DELIVERY_OUTCOMES}

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            pending = dict.fromkeys(self._receivers, 0)
            if self._path.exists():
                try:
                    pending.update(self._read())
                except sqlite3.Error as exc:
                    log.warning("outbox metrics: cannot read %s (%s)", self._path, exc)
            deliveries = _counter(
                "monitord_deliveries",
                "Delivery attempts to each receiver, by outcome.",
                ("receiver", "outcome"),
            )
            for key, n in sorted(self._deliveries.items()):
                deliveries.add_metric(key, n)
        backlog = _gauge(
            "monitord_outbox_pending_messages",
            "Messages in the outbox waiting for delivery to each receiver.",
            ("receiver",),
        )
        for receiver, n in sorted(pending.items()):
            backlog.add_metric((receiver,), n)
        return iter([deliveries, backlog])

    def _read(self) -> dict[str, int]:
        """Fold new attempts into the delivery counts; return the backlog per receiver."""
        # mode=rw: never create the file; the outbox owns it.
        uri = f"{self._path.resolve().as_uri()}?mode=rw"
        db = sqlite3.connect(uri, uri=True, timeout=1.0, isolation_level=None)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                log.warning(
                    "outbox metrics: %s has schema version %s, this build reads %s",
                    self._path,
                    version,
                    SCHEMA_VERSION,
                )
                return {}
            db.execute("BEGIN")  # one snapshot for both reads
            last = db.execute("SELECT coalesce(max(rowid), 0) FROM attempts").fetchone()[0]
            if last < self._counted_rowid:  # the file was replaced: start counting again
                self._counted_rowid, self._deliveries = 0, self._zero_deliveries()
            rows = db.execute(
                "SELECT receiver, outcome, count(*) FROM attempts "
                "WHERE rowid > ? AND rowid <= ? GROUP BY receiver, outcome",
                (self._counted_rowid, last),
            ).fetchall()
            pending = db.execute(
                "SELECT receiver, count(*) FROM outbox WHERE state = 'pending' GROUP BY receiver"
            ).fetchall()
            db.execute("COMMIT")
        finally:
            db.close()
        for receiver, outcome, n in rows:
            key = (str(receiver), str(outcome))
            self._deliveries[key] = self._deliveries.get(key, 0) + int(n)
        self._counted_rowid = int(last)
        return {str(receiver): int(n) for receiver, n in pending}


def check_cardinality(config: Config) -> int:
    """The model/version/feature/detector series the configured reference profiles need
    (each profile is one version, with series of its own).

    Raises `ConfigError` naming ``admin.max_feature_series`` when they exceed it. Models
    without a profile (warm-up) are not known yet; the cap bounds them at run time.
    """
    needed: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for model, path in _configured_profiles(config):
        profile = load_profile(path)
        series = feature_series(profile, config.detection_for(model))
        needed.setdefault((model, profile.model_version), set()).update(series)
    total = sum(len(series) for series in needed.values())
    cap = config.admin.max_feature_series
    if total > cap:
        largest = sorted(needed.items(), key=lambda item: (-len(item[1]), item[0]))[:5]
        detail = ", ".join(f"{m}/{v}: {len(series)}" for (m, v), series in largest)
        raise ConfigError(
            f"admin.max_feature_series: the configured reference profiles need {total} "
            f"model/version/feature/detector series ({detail}), more than the cap of {cap}; raise "
            "admin.max_feature_series, or monitor fewer features or detectors"
        )
    return total


def feature_series(profile: ReferenceProfile, settings: DetectionSettings) -> set[tuple[str, str]]:
    """(feature, detector) pairs the detector suite reports for ``profile``."""
    chosen = set(settings.detectors)
    numeric: list[str] = [name for name in ("ks", "psi") if name in chosen]
    categorical: list[str] = [name for name in ("chi2", "psi") if name in chosen]
    if "quality" in chosen:
        numeric += ["missing", "out_of_range"]
        categorical += ["missing", "unseen"]
    series: set[tuple[str, str]] = {(f, d) for f in profile.numeric_names for d in numeric}
    series |= {(f, d) for f in profile.categorical_names for d in categorical}
    if "adwin" in chosen:
        adwin = profile.numeric_names
        if settings.adwin_columns == "prediction":
            adwin = tuple(name for name in adwin if name == PREDICTION)
        series |= {(f, "adwin") for f in adwin}
    return series


def _configured_profiles(config: Config) -> list[tuple[str, Path]]:
    found: dict[Path, str] = {}
    for model in config.models:
        for path in model.profiles.values():
            found.setdefault(path.resolve(), model.name)
    if config.profile_dir is not None and config.profile_dir.is_dir():
        for path in sorted(config.profile_dir.glob("*@*.npz")):
            found.setdefault(path.resolve(), path.stem.rpartition("@")[0])
    return [(model, path) for path, model in found.items()]


def _register_runtime_collectors(registry: CollectorRegistry) -> None:
    """``process_*`` (CPU, memory, file descriptors, start time; Linux) and ``python_*``
    (``python_info``, garbage collections), as every client-library exporter has them."""
    if registry is REGISTRY:
        return  # the client library's global registry has them already
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


_Family = TypeVar("_Family", CounterMetricFamily, GaugeMetricFamily)
_Labels = TypeVar("_Labels", bound=tuple[str, ...])


def _filled(family: _Family, series: Mapping[_Labels, float]) -> _Family:
    """``family`` with one sample per label set of ``series``, in label order."""
    for labels, value in sorted(series.items()):
        family.add_metric(labels, value)
    return family


def _counter(name: str, documentation: str, labels: Sequence[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, labels=labels)


def _gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def _package_version() -> str:
    try:
        return metadata.version("monitord")
    except metadata.PackageNotFoundError:
        return "unknown"


__all__ = [
    "BATCH_BUCKETS",
    "DaemonMetrics",
    "OutboxCollector",
    "check_cardinality",
    "feature_series",
]
