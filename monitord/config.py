"""Configuration: one TOML file parsed and validated once at startup into frozen objects.

Secrets never live in the TOML file: they come from environment variables (named in
`SECRET_ENV`) and are held as `pydantic.SecretStr`, which masks them in every repr. A wrong
key, type or value raises `ConfigError` naming the key path and what is allowed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import tomllib
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, cast, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from monitord.cron import CronExpression
from monitord.environment import PREFIX, SEPARATOR, apply, overrides, parse_value
from monitord.receivers import ReceiverSettings
from monitord.schedule import DEFAULT_ZONE, time_zone
from monitord.schema import annotations_at, is_text, resolve_paths, with_base

SECRET_ENV = {"kafka.sasl_password": "MONITORD_KAFKA_SASL_PASSWORD"}


class ConfigError(ValueError):
    """The configuration is invalid; the message lists every problem with its key path.

    ``partial``: the config with every key that failed validation left at its default,
    when that validates, so that the checks needing a whole config (`monitord.preflight`)
    can still run and report their problems in the same round."""

    partial: Config | None = None


class _Section(BaseModel):
    # No setting means infinity (None is "off"): TOML's and a variable's "inf" passed the
    # bounds and then overflowed threading.Timer at shutdown (shutdown.grace_s).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ConsumerSettings(_Section):
    """Throughput knobs of the Kafka consumer (kafka-python names)."""

    fetch_max_bytes: int = Field(50 * 1024 * 1024, gt=0)
    max_partition_fetch_bytes: int = Field(10 * 1024 * 1024, gt=0)
    fetch_min_bytes: int = Field(1, gt=0)
    fetch_max_wait_ms: int = Field(100, ge=0)
    max_poll_records: int = Field(10_000, gt=0)
    session_timeout_ms: int = Field(10_000, gt=0)
    heartbeat_interval_ms: int = Field(3_000, gt=0)
    max_poll_interval_ms: int = Field(300_000, gt=0)

    @model_validator(mode="after")
    def _timeouts_fit(self) -> ConsumerSettings:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms ({self.heartbeat_interval_ms}) must be below "
                f"session_timeout_ms ({self.session_timeout_ms}), ideally a third of it"
            )
        if self.fetch_max_wait_ms >= 30_000:
            raise ValueError(
                f"fetch_max_wait_ms ({self.fetch_max_wait_ms}) must be below the 30000 ms "
                "request timeout"
            )
        return self


_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}\Z")


def _topic_name(value: str) -> str:
    """A name Kafka accepts for a topic; the daemon would otherwise fail later, on the wire."""
    if not _TOPIC_NAME.match(value) or value in (".", ".."):
        raise ValueError(
            f"{value!r} is not a Kafka topic name: use 1 to 249 letters, digits, '.', '_' or '-'"
        )
    return value


TopicName = Annotated[str, AfterValidator(_topic_name)]


def _bootstrap(value: str) -> str:
    """``host[:port][,...]`` as kafka-python reads it (port 9092 if left out; IPv6 in brackets)."""
    servers = [server.strip() for server in value.split(",")]
    if not any(servers):
        raise ValueError("give at least one broker as host:port, e.g. '127.0.0.1:9092'")
    for server in servers:
        try:
            parts = urllib.parse.urlsplit(f"//{server}")
            port = parts.port
        except ValueError:
            parts, port = None, None
        if parts is None or not parts.hostname or port == 0 or parts.path or parts.query:
            raise ValueError(
                f"{server!r} is not host:port (a broker address such as 'kafka-0:9092' or "
                "'[::1]:9092'; separate several with commas)"
            )
    return value


class KafkaSettings(_Section):
    bootstrap_servers: Annotated[str, AfterValidator(_bootstrap)] = "127.0.0.1:9092"
    client: Literal["kafka-python", "confluent"] = Field(
        "kafka-python",
        description="the Kafka client library: confluent (librdkafka, the optional extra "
        "monitord[confluent]) reads several times faster",
    )
    input_topics: tuple[TopicName, ...] = ("inference-events",)
    group_id: str = "monitord"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    dead_letter_topic: TopicName = "monitord.dead-letter"
    alert_topic: TopicName = "monitord.alerts"
    trigger_topic: TopicName = "monitord.retrain-requests"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None  # from MONITORD_KAFKA_SASL_PASSWORD only
    ssl_cafile: Path | None = Field(None, description="PEM CA bundle; default the system's")
    ssl_certfile: Path | None = Field(None, description="PEM client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="PEM private key of ssl_certfile")
    ssl_check_hostname: bool = Field(
        True, description="the broker's certificate must name the host connected to"
    )
    connect_timeout_s: float = Field(10.0, gt=0)
    consumer: ConsumerSettings = ConsumerSettings()
    repartition: bool = Field(
        False,
        description="input not keyed by model: forward each event keyed by its model through "
        "an internal topic first, so a model's state lives on one partition",
    )
    repartition_topic: TopicName | None = Field(None, description="default <group_id>.repartition")

    @field_validator("input_topics")
    @classmethod
    def _some_input(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one topic to read inference events from")
        return value

    @property
    def internal_topic(self) -> str:
        return self.repartition_topic or f"{self.group_id}.repartition"

    @model_validator(mode="after")
    def _security_complete(self) -> KafkaSettings:
        tls_keys = sorted(k for k in self.model_fields_set if k.startswith("ssl_"))
        if self.security_protocol not in ("SSL", "SASL_SSL") and tls_keys:
            raise ValueError(
                f"{', '.join(tls_keys)}: TLS settings are only used with security_protocol "
                f"SSL or SASL_SSL, not {self.security_protocol}"
            )
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile: a client key needs its certificate (ssl_certfile)")
        sasl = self.security_protocol.startswith("SASL_")
        if not sasl and self.sasl_mechanism is not None:
            raise ValueError(
                f"sasl_mechanism is only used with SASL_PLAINTEXT or SASL_SSL, not "
                f"{self.security_protocol}"
            )
        if sasl and (self.sasl_mechanism is None or not self.sasl_username):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_mechanism "
                "('PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512') and sasl_username"
            )
        if sasl and self.sasl_password is None:
            raise ValueError(
                f"security_protocol {self.security_protocol} needs a password: set the "
                f"environment variable {SECRET_ENV['kafka.sasl_password']}"
            )
        return self


class EventFields(_Section):
    """Where each part of an inference event lives in the JSON object."""

    model: str = "model"
    model_version: str = "model_version"
    event_id: str = "event_id"
    timestamp: str = "timestamp"
    features: str = "features"
    prediction: str = "prediction"
    label: str = "label"
    latency: str = Field(
        "latency_ms", description="inference latency in milliseconds, monitored when present"
    )
    max_event_bytes: int = Field(1_000_000, gt=0)
    max_time_ahead_s: float = Field(
        3600.0,
        gt=0,
        description="an event time further ahead of its record's (Kafka) time is not "
        "believed: the record's time is used, and counted",
    )


DetectorName = Literal["ks", "psi", "chi2", "quality", "adwin"]


MIN_WINDOW_ROWS = 20
"""Smallest window the calibrated thresholds are validated for (benchmarks/calibration.py)."""
MIN_REFERENCE_ROWS = 50
"""Smallest reference the calibrated thresholds are validated for."""


class DetectionSettings(_Section):
    """How drift is tested for a model (defaults for every model, overridable per model)."""

    detectors: tuple[DetectorName, ...] = ("ks", "psi", "chi2", "quality", "adwin")
    window_size: int = Field(
        500,
        ge=MIN_WINDOW_ROWS,
        description="rows per test window (with window_seconds: the most a window holds)",
    )
    window_step: int | None = Field(None, ge=1, description="rows between tests; default size")
    window_seconds: float | None = Field(
        3600.0,
        gt=0,
        description="also close a window after this much event time, whichever comes first",
    )
    window_min_rows: int = Field(
        50,
        ge=MIN_WINDOW_ROWS,
        description="rows a window closed by window_seconds needs; fewer: it stays open",
    )
    false_alarm_budget_events: float = Field(
        1_000_000, gt=0, description="expected events between false alarms for a whole model"
    )
    warmup_events: int = Field(
        1000, ge=MIN_REFERENCE_ROWS, description="rows captured as reference"
    )
    change_detection: bool = Field(
        True,
        description="while drift persists, test for a new change against the recent regime",
    )
    change_reference_events: int = Field(
        500,
        ge=MIN_REFERENCE_ROWS,
        description="rows after a drift or change alarm captured as the recent regime",
    )
    change_clear_windows: int = Field(
        3, ge=1, description="clean reference windows in a row that end change detection"
    )
    psi_bins: int = Field(10, ge=2, le=100)
    adwin_delta: float = Field(0.002, gt=0, lt=1)
    adwin_columns: Literal["prediction", "all"] = Field(
        "prediction", description="ADWIN on the prediction only, or on every numeric column"
    )
    monitor_prediction: bool = True

    @model_validator(mode="after")
    def _step_fits(self) -> DetectionSettings:
        if self.window_step is not None and self.window_step > self.window_size:
            raise ValueError(
                f"window_step ({self.window_step}) must not exceed window_size ({self.window_size})"
            )
        sliding = self.window_step not in (None, self.window_size)
        if sliding and "window_seconds" in self.model_fields_set and self.window_seconds:
            raise ValueError(
                "window_step: windows that close by window_seconds are tumbling; set one "
                "of window_step (sliding count windows) and window_seconds, not both"
            )
        if "window_min_rows" in self.model_fields_set and self.window_min_rows > self.window_size:
            raise ValueError(
                f"window_min_rows ({self.window_min_rows}) must not exceed window_size "
                f"({self.window_size})"
            )
        return self

    @property
    def step(self) -> int:
        return self.window_step or self.window_size

    @property
    def closing_seconds(self) -> float | None:
        """Event time after which a tumbling window closes (None: count windows; sliding
        windows always are)."""
        return self.window_seconds if self.step == self.window_size else None

    @property
    def min_rows(self) -> int:
        """Rows a window closed by time needs (at most the window's size)."""
        return min(self.window_min_rows, self.window_size)


class LabelSettings(_Section):
    """Ground truth: labels inline in inference events or on topics of their own, joined to
    their prediction by event id (README, "Labels and model performance")."""

    topics: tuple[str, ...] = Field(
        (),
        description="topics of label records {event_id, label[, model, timestamp]}, keyed "
        "and partitioned like the inference topic",
    )
    max_pending: int = Field(
        200_000,
        ge=1,
        description="predictions (and labels come before them) waiting per input partition; "
        "beyond it the oldest are evicted, counted",
    )
    max_delay_s: float = Field(
        7 * 86400.0,
        gt=0,
        description="event time a prediction waits for its label before it is evicted",
    )
    expected_delay_s: float = Field(
        3600.0, gt=0, description="label coverage: a prediction labelled within this is covered"
    )
    min_coverage: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of predictions labelled within expected_delay_s below which "
        "MonitordLabelCoverage fires (0: never)",
    )
    coverage_window: int = Field(1000, ge=MIN_WINDOW_ROWS, description="predictions per check")
    remember_joined: int = Field(
        200_000, ge=0, description="event ids joined kept per partition to tell duplicates"
    )


class PerformanceSettings(_Section):
    """How the model's performance is tested once labels arrive."""

    enabled: bool = True
    task: Literal["auto", "classification", "regression"] = Field(
        "auto", description="auto: inferred from the first labelled rows, and logged"
    )
    positive_class: str = Field(
        "1", description='class of precision, recall and F1 (true and 1 read as "1")'
    )
    window_size: int = Field(
        200, ge=MIN_WINDOW_ROWS, description="labelled rows per performance window"
    )
    warmup_labels: int = Field(
        1000,
        ge=MIN_REFERENCE_ROWS,
        description="labelled rows taken as the reference performance when the profile holds none",
    )
    false_alarm_budget_labels: float | None = Field(
        None,
        gt=0,
        description="expected labelled rows between false degradation alarms (default: "
        "detection.false_alarm_budget_events)",
    )
    error_change: bool = Field(True, description="ADWIN over the error stream (change points)")
    label_drift: bool = Field(
        True,
        description="test each window's labels against the reference's (it shares the "
        "window's false-alarm budget with the degradation test)",
    )
    retrain_on_degradation: bool = Field(
        True,
        description="performance degraded for policy.retrain_consecutive_windows windows in "
        "a row requests a retrain",
    )
    latency_slo_ms: float | None = Field(
        None, gt=0, description="MonitordLatencySLO fires when a window's p99 exceeds this"
    )


class VolumeSettings(_Section):
    """Event volume per model as alerts (off by default: normal traffic is the operator's
    to say)."""

    quiet_after_s: float | None = Field(
        None, gt=0, description="MonitordModelQuiet after this long without events (wall clock)"
    )
    max_events_per_s: float | None = Field(
        None, gt=0, description="MonitordModelFlood when a minute's rate exceeds this"
    )


class ModelSettings(_Section):
    name: str
    profiles: dict[str, Path] = Field(
        default_factory=dict, description="model_version -> reference profile file"
    )
    detection: DetectionSettings | None = Field(
        None, description="keys that differ from [detection] for this model (merged over it)"
    )
    policy: PolicySettings | None = Field(
        None, description="keys that differ from [policy] for this model (merged over it)"
    )
    retrain_schedule: str | None = Field(
        None,
        description="crontab expression of scheduled retrains, e.g. '0 3 * * 1-5' or '@daily'",
    )
    retrain_schedule_timezone: str = Field(
        DEFAULT_ZONE, description="IANA time zone the schedule is read in, e.g. 'Europe/Berlin'"
    )

    @field_validator("retrain_schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            CronExpression.parse(value)  # raises CronError (a ValueError) with advice
        return value

    @field_validator("retrain_schedule_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        time_zone(value)  # raises ValueError with advice
        return value

    @model_validator(mode="after")
    def _zone_of_a_schedule(self) -> ModelSettings:
        if "retrain_schedule_timezone" in self.model_fields_set and self.retrain_schedule is None:
            raise ValueError(
                "retrain_schedule_timezone: there is no retrain_schedule for it to apply to"
            )
        return self


class AlertSettings(_Section):
    """Alert lifecycle per label set: hysteresis, severities, labels and links."""

    fire_windows: int = Field(1, ge=1, description="k: drifted windows among the last n to fire")
    fire_span: int = Field(1, ge=1, description="n: windows considered for firing")
    resolve_windows: int = Field(3, ge=1, description="m: clean windows in a row to resolve")
    resolve_below: float = Field(
        0.8, gt=0, le=1, description="a firing window is clean below this share of the threshold"
    )
    cooldown_windows: int = Field(
        0, ge=0, description="windows after a resolution before the label set may fire again"
    )
    model_alert_share: float = Field(
        0.25, gt=0, le=1, description="share of drifted columns for the critical model alert"
    )
    labels: dict[str, str] = Field(default_factory=dict, description="static labels, e.g. team")
    runbook_url: str | None = None
    dashboard_url: str | None = None

    @model_validator(mode="after")
    def _k_of_n(self) -> AlertSettings:
        if self.fire_windows > self.fire_span:
            raise ValueError(
                f"fire_windows ({self.fire_windows}) must not exceed fire_span ({self.fire_span})"
            )
        reserved = RESERVED_LABELS & set(self.labels)
        if reserved:
            raise ValueError(f"labels: {sorted(reserved)} are set by monitord itself")
        return self


RESERVED_LABELS = {"alertname", "model", "model_version", "feature", "detector", "severity"}


class PolicySettings(_Section):
    """When drift becomes a retrain request."""

    retrain_feature_share: float = Field(0.25, gt=0, le=1)
    retrain_consecutive_windows: int = Field(2, ge=1)
    retrain_cooldown_windows: int = Field(
        100, ge=0, description="windows after a request before another episode may fire"
    )
    retrain_min_events: int = Field(
        0, ge=0, description="new events of the model version since its last request"
    )
    retrain_daily_cap: int | None = Field(
        None, ge=1, description="requests per model per UTC day, every reason counted"
    )
    retrain_on_prediction: bool = Field(
        False, description="the prediction drifting for the consecutive windows suffices"
    )


# ModelSettings names PolicySettings before it is defined: resolve the annotation now, so an
# unknown key under [models.policy] is answered with the allowed keys.
ModelSettings.model_rebuild(force=True)


class CheckpointSettings(_Section):
    """Detector and policy state saved with the input offsets it covers (DESIGN.md section 5)."""

    store: Literal["local", "kafka", "none"] = Field(
        "local",
        description="local: SQLite in state_dir; kafka: a compacted changelog topic "
        "partitioned like the input; none: no state kept (offsets committed every batch)",
    )
    interval_events: int = Field(100_000, gt=0, description="checkpoint after this many events")
    interval_s: float = Field(10.0, gt=0, description="... or after this many seconds")
    changelog_topic: TopicName | None = Field(
        None, description="kafka store: defaults to <group_id>.changelog"
    )


class CalibrationSettings(_Section):
    """Where new references' thresholds are calibrated (`monitord.calibrations`)."""

    workers: int = Field(
        1,
        ge=0,
        le=64,
        description="processes that calibrate a batch's new references once it has spent "
        "0.1 s calibrating on the loop, while the loop reads on (0: all on the loop)",
    )


class ShutdownSettings(_Section):
    grace_s: float = Field(
        30.0, gt=0, description="SIGTERM: drain, checkpoint, commit and exit within this"
    )


class LimitSettings(_Section):
    """What the stream may make the daemon hold: every cap is enforced by a dead letter or
    a counted refusal logged once per key, never by growing."""

    max_models: int = Field(1_000, ge=1, description="models monitored at once")
    max_versions_per_model: int = Field(
        20,
        ge=1,
        description="versions of one model monitored at once; a new one past the cap takes "
        "the place of the longest idle version idle for retire_idle_s, else is refused",
    )
    retire_idle_s: float = Field(
        86_400.0,
        gt=0,
        description="event time a version must have gone without events before a new "
        "version of its model may retire it",
    )
    max_columns_per_model: int = Field(
        1_000, ge=1, description="columns a version learns in its warm-up; the rest refused"
    )
    max_categories_per_column: int = Field(
        1_000,
        ge=1,
        description="distinct categories a captured reference keeps per column (the most "
        "frequent); the rest count as unseen",
    )
    max_name_chars: int = Field(
        256,
        ge=1,
        description="longer model or version names are dead-lettered (name_too_long), "
        "longer feature names not monitored",
    )


class AdminSettings(_Section):
    """The admin HTTP endpoint: /metrics, /livez, /readyz and /status."""

    enabled: bool = True
    host: str = Field("127.0.0.1", min_length=1, description="bind address")
    port: int = Field(9475, ge=0, le=65535, description="0 picks a free port")
    max_feature_series: int = Field(
        10_000, ge=1, description="cap on model/feature/detector metric series"
    )
    retrain_clients: tuple[str, ...] = Field(
        ("127.0.0.0/8", "::1/128"),
        description="networks allowed to POST /retrain (manual retrains); default loopback",
    )
    retrain_burst: int = Field(5, ge=1, description="manual retrains accepted at once...")
    retrain_per_minute: float = Field(
        6.0, gt=0, description="... then this many a minute (over it: 429 with Retry-After)"
    )

    @field_validator("retrain_clients")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(
                    f"{network!r} is not an IP network; write an address or CIDR such as "
                    "'10.0.0.0/8' or '::1/128'"
                ) from None
        return value


class LoggingSettings(_Section):
    format: Literal["json", "text"] = Field("json", description="json lines, or text for a tty")
    level: Literal["debug", "info", "warning", "error"] = "info"


class OutputSettings(_Section):
    stdout: bool = False
    jsonl_path: Path | None = None
    audit: bool = Field(True, description="record every decision in state_dir/audit.sqlite")


class RegistrySettings(_Section):
    """A model registry holding each model version's reference profile (``[registry]``).

    A version seen in the stream with no profile file gets its reference from the version's
    run artifact ``artifact_path``; fetched profiles are cached in ``cache_dir``."""

    type: Literal["mlflow"] = Field("mlflow", description="the registry's kind")
    tracking_uri: str = Field(description="the tracking server, e.g. http://mlflow:5000")
    artifact_path: str = Field(
        "monitord/profile.npz", min_length=1, description="the profile, in the run's artifacts"
    )
    timeout_s: float = Field(5.0, gt=0, le=300, description="each HTTP request")
    wait_s: float = Field(
        5.0, ge=0, le=300, description="how long a new version waits for its first fetch"
    )
    retries: int = Field(5, ge=0, le=100, description="fetch attempts after a failed one")
    retry_backoff_s: float = Field(
        2.0, gt=0, description="first pause between attempts; doubles, up to 300 s"
    )
    max_profile_bytes: int = Field(64 * 1024 * 1024, gt=0)
    cache_dir: Path | None = Field(None, description="default <state_dir>/registry")
    token_env: str | None = Field(
        None, min_length=1, description="environment variable holding a bearer token"
    )

    @field_validator("tracking_uri")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parsed = urllib.parse.urlsplit(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"{value!r} is not an http(s) URL; write the tracking server's address, "
                "such as 'http://127.0.0.1:5000'"
            )
        if parsed.username or parsed.password or parsed.query:
            # The URI is logged and carried in every alert's provenance: no secrets in it.
            raise ValueError(
                "credentials or a query in the URL would be logged and sent with every "
                "alert; write the bare server address and put a token in token_env"
            )
        return value.rstrip("/")

    @field_validator("artifact_path")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = value.strip("/").split("/")
        if value.startswith("/") or ".." in parts or "" in parts:
            raise ValueError(
                f"{value!r}: write a path inside the run's artifacts, such as "
                "'monitord/profile.npz'"
            )
        return value


class Config(_Section):
    kafka: KafkaSettings = KafkaSettings()
    events: EventFields = EventFields()
    detection: DetectionSettings = DetectionSettings()
    models: tuple[ModelSettings, ...] = ()
    profile_dir: Path | None = Field(None, description="holds <model>@<version>.npz profiles")
    alerts: AlertSettings = AlertSettings()
    receivers: tuple[ReceiverSettings, ...] = ()
    policy: PolicySettings = PolicySettings()
    state_dir: Path = Field(Path(".monitord"), description="outbox and state files")
    outputs: OutputSettings = OutputSettings()
    admin: AdminSettings = AdminSettings()
    logging: LoggingSettings = LoggingSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    calibration: CalibrationSettings = CalibrationSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    limits: LimitSettings = LimitSettings()
    labels: LabelSettings = LabelSettings()
    performance: PerformanceSettings = PerformanceSettings()
    volume: VolumeSettings = VolumeSettings()
    registry: RegistrySettings | None = None

    _base_dir: Path | None = PrivateAttr(None)  # the config file's directory
    _from_environment: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def from_environment(self) -> dict[str, str]:
        """Key path -> the ``MONITORD_*`` variable that set it (`monitord.environment`)."""
        return dict(self._from_environment)

    @model_validator(mode="before")
    @classmethod
    def _model_sections_over_global(cls, data: Any) -> Any:
        """A model's [models.detection] and [models.policy] are merged key by key over the
        global [detection] and [policy]: a key the model leaves out is the global value."""
        if not isinstance(data, dict) or not isinstance(data.get("models"), list):
            return data
        models = []
        for entry in data["models"]:
            model = dict(entry) if isinstance(entry, dict) else entry
            for section in PER_MODEL_SECTIONS if isinstance(model, dict) else ():
                own, shared = model.get(section), data.get(section)
                if isinstance(own, dict) and isinstance(shared, dict):
                    model[section] = _merged(shared, own)
            models.append(model)
        return {**data, "models": models}

    @model_validator(mode="after")
    def _outputs_are_not_inputs(self) -> Config:
        # An output topic that is also read back loops: every dead letter is read as a bad
        # record and dead-lettered again (10 bad records became 4,830 in 15 seconds).
        kafka = self.kafka
        written = {
            "kafka.dead_letter_topic": kafka.dead_letter_topic,
            "kafka.alert_topic": kafka.alert_topic,
            "kafka.trigger_topic": kafka.trigger_topic,
        }
        if self.checkpoint.store == "kafka":
            written["checkpoint.changelog_topic"] = (
                self.checkpoint.changelog_topic or f"{kafka.group_id}.changelog"
            )
        if kafka.repartition:
            written["kafka.repartition_topic"] = kafka.internal_topic
        looping = [key for key, topic in written.items() if topic in kafka.input_topics]
        if looping:
            keys = ", ".join(looping)
            raise ValueError(
                f"{keys}: {written[looping[0]]!r} is also in kafka.input_topics; monitord "
                "would read its own output back (a dead letter becomes a bad record, again "
                "and again): give outputs topics of their own"
            )
        return self

    @model_validator(mode="after")
    def _label_topics_are_their_own(self) -> Config:
        kafka = self.kafka
        outputs = {kafka.dead_letter_topic, kafka.alert_topic, kafka.trigger_topic}
        for topic in self.labels.topics:
            if topic in kafka.input_topics:
                raise ValueError(
                    f"labels.topics: {topic!r} is also in kafka.input_topics; a label record "
                    "is not an inference event: keep labels on topics of their own"
                )
            if topic in outputs:
                raise ValueError(f"labels.topics: {topic!r} is one of monitord's output topics")
        return self

    @model_validator(mode="after")
    def _idle_beyond_believed_times(self) -> Config:
        ahead, idle = self.events.max_time_ahead_s, self.limits.retire_idle_s
        if idle <= ahead:
            # Event times up to max_time_ahead_s ahead are believed: a version would look
            # idle to an event from that far ahead and be retired while live.
            raise ValueError(
                f"limits.retire_idle_s: {idle:g} s must exceed events.max_time_ahead_s "
                f"({ahead:g} s), how far ahead an event time is believed"
            )
        return self

    def detection_for(self, model: str) -> DetectionSettings:
        for settings in self.models:
            if settings.name == model and settings.detection is not None:
                return settings.detection
        return self.detection

    def policy_for(self, model: str) -> PolicySettings:
        for settings in self.models:
            if settings.name == model and settings.policy is not None:
                return settings.policy
        return self.policy

    def profile_path(self, model: str, version: str) -> Path | None:
        for settings in self.models:
            if settings.name == model and version in settings.profiles:
                return settings.profiles[version]
        if self.profile_dir is not None:
            candidate = self.profile_dir / f"{model}@{version}.npz"
            if candidate.exists():
                return candidate
        return None

    @property
    def config_hash(self) -> str:
        """Identifies, in lineage, the settings that decide what is detected and sent: how
        events are read, detection, models and references, alerts and policy. Where the daemon
        runs (Kafka connection, group, topics, state, outputs, receivers, admin, logging,
        checkpoints) is left out, so replicas and replays of one decision agree."""
        deciding = self.model_dump(
            mode="json",
            include={"events", "detection", "models", "profile_dir", "alerts", "policy"},
        )
        if self._base_dir is not None:
            # Profile paths as the file wrote them: where the file lies decides nothing.
            deciding = _relative(deciding, f"{self._base_dir}{os.sep}")
        text = json.dumps(deciding, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


PER_MODEL_SECTIONS = ("detection", "policy")
"""Sections a [[models]] entry may hold its own keys of, merged over the global ones."""


def _merged(shared: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    merged = dict(shared)
    for key, value in own.items():
        inner = merged.get(key)
        both_tables = isinstance(inner, dict) and isinstance(value, dict)
        merged[key] = _merged(cast(dict[str, Any], inner), value) if both_tables else value
    return merged


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
"""Control characters but tab and line breaks: no setting means one. A NUL is not a path
(`Path.exists` says False, so `check` passed what `run` then crashed on), an escape
sequence in a group id or topic would be written into every log line naming it."""


def _control_characters(data: Any, path: str = "") -> list[tuple[str, str]]:
    """(key path, problem) for each string of ``data`` holding a control character."""
    if isinstance(data, str):
        found = _CONTROL.search(data)
        if found is None:
            return []
        return [
            (
                path,
                f"{path}: holds the control character U+{ord(found.group()):04X} at "
                f"position {found.start()}; settings are printable text",
            )
        ]
    if isinstance(data, dict):
        items: list[tuple[str, Any]] = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list):
        items = [(str(i), v) for i, v in enumerate(data)]
    else:
        return []
    found_all = []
    for key, value in items:
        if _CONTROL.search(key):
            where = path or "the top level"
            found_all.append((path, f"{where}: the key {key!r} holds a control character"))
            continue
        found_all += _control_characters(value, f"{path}.{key}" if path else key)
    return found_all


def _relative(data: Any, prefix: str) -> Any:
    """``data`` with strings under the directory ``prefix`` written relative to it."""
    if isinstance(data, str):
        return data.removeprefix(prefix)
    if isinstance(data, dict):
        return {key: _relative(value, prefix) for key, value in data.items()}
    if isinstance(data, list):
        return [_relative(value, prefix) for value in data]
    return data


def parse_config(
    data: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    base_dir: Path | None = None,
) -> Config:
    """Validate a parsed TOML mapping with the ``MONITORD_*`` variables of ``environ``
    applied (`monitord.environment`) and secrets taken from it.

    Relative paths of the environment are resolved against the working directory, the
    mapping's and the defaults' (``state_dir``) against ``base_dir``, the config file's
    directory; without a ``base_dir`` they stay relative (to the working directory)."""
    environ = os.environ if environ is None else environ
    copied = dict(json.loads(json.dumps(data, default=str)))  # private, mutable copy
    for key, variable in SECRET_ENV.items():
        section, name = key.split(".")
        if name in copied.get(section, {}):
            raise ConfigError(
                f"{key}: secrets must not be written in the config file; set the environment "
                f"variable {variable} instead"
            )
    sources, problems = _apply_environment(copied, environ)
    problems += [line + _source(path, sources) for path, line in _control_characters(copied)]
    for key, variable in SECRET_ENV.items():
        section, name = key.split(".")
        if variable in environ:
            copied.setdefault(section, {})[name] = environ[variable]
    partial = None
    try:
        config = Config.model_validate(copied)
    except ValidationError as exc:
        problems += _explain(exc, sources)
        partial = _without_failing_keys(copied, exc)
    if problems:
        error = ConfigError("\n".join(f"  {problem}" for problem in problems))
        if partial is not None:
            error.partial = _placed(partial, sources, base_dir)
        raise error
    return _placed(config, sources, base_dir)


def _placed(config: Config, sources: dict[str, str], base_dir: Path | None) -> Config:
    config._from_environment = sources
    if base_dir is not None:  # the file's paths and the defaults: the environment's are absolute
        config = with_base(config, base_dir)
        config._base_dir = base_dir  # where relative paths were resolved from
    return config


def _without_failing_keys(data: dict[str, Any], exc: ValidationError) -> Config | None:
    """The config of ``data`` with every key that failed validation removed (its default
    in its place); None when a required key is missing or that does not validate either."""
    trial = json.loads(json.dumps(data))
    for error in exc.errors():
        if error["type"] == "missing":
            return None
        container: object = trial
        where: list[int | str] = []
        for part in error["loc"]:  # a receiver's type in the location is no key: skipped
            child = _child(container, part)
            if child is not _NOTHING:
                where.append(part)
                container = child
        if not where or isinstance(where[-1], int):
            return None  # a whole entry: nothing to leave at a default
        parent: Any = trial
        for part in where[:-1]:
            parent = parent[part]
        parent.pop(where[-1], None)
    try:
        return Config.model_validate(trial)
    except ValidationError:
        return None


_NOTHING = object()


def _child(container: object, part: int | str) -> object:
    """What a parsed document holds under key or index ``part`` of ``container``
    (`_NOTHING`: nothing there)."""
    if isinstance(container, dict):
        return container.get(part, _NOTHING)
    if isinstance(container, list) and isinstance(part, int) and part < len(container):
        return container[part]
    return _NOTHING


def _apply_environment(
    data: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Apply the ``MONITORD_*`` overrides to ``data``; the key path each set -> its
    variable, and the problems (each naming its variable).

    A variable a ``*_env`` key names is a secret, not a key, also when the environment
    sets that key (``MONITORD_RECEIVERS__0__SECRET_ENV``): a trial run finds those."""
    known = set(SECRET_ENV.values())
    trial = json.loads(json.dumps(data))
    _override(trial, environ, known)
    named = _named_variables(data) | _named_variables(trial)
    sources, problems = _override(data, environ, known | named)
    for variable in sorted(named):
        # MONITORD_STATE_DIR named as a receiver's secret: state_dir would silently not be
        # set by it, and the key would be a path.
        keys = variable[len(PREFIX) :].lower().split(SEPARATOR)
        if variable.startswith(PREFIX) and annotations_at(Config, keys):
            problems.append(
                f"{variable} is named by a *_env key as a secret, but it is the variable "
                f"that sets {'.'.join(keys)}; name a variable of its own for the secret"
            )
    return sources, problems


def _override(
    data: dict[str, Any], environ: Mapping[str, str], known: set[str]
) -> tuple[dict[str, str], list[str]]:
    sources: dict[str, str] = {}
    problems: list[str] = []
    secrets = {tuple(key.split(".")): variable for key, variable in SECRET_ENV.items()}
    cwd = Path.cwd()
    for override in overrides(environ, known):
        secret = next((v for k, v in secrets.items() if override.keys[: len(k)] == k), None)
        if secret is not None:
            problems.append(
                f"{override.variable}: {override.path} is a secret; set it in {secret} instead"
            )
            continue
        annotations = annotations_at(Config, override.keys)
        value = parse_value(override.text, as_text=is_text(annotations))
        value = resolve_paths(value, annotations, cwd)
        problem = apply(data, override, value)
        if problem is not None:
            problems.append(problem)
        sources[override.path] = override.variable
    return sources, problems


def _named_variables(data: object) -> set[str]:
    """The variables the ``*_env`` keys of parsed config ``data`` name (secrets)."""
    if isinstance(data, dict):
        named = {v for k, v in data.items() if str(k).endswith("_env") and isinstance(v, str)}
        return named.union(*(_named_variables(value) for value in data.values()))
    if isinstance(data, list):
        return set().union(*(_named_variables(value) for value in data))
    return set()


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a TOML config file (see `parse_config`)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:  # unreadable: permissions, a dangling symlink's loop, I/O
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from None
    except ValueError as exc:  # TOMLDecodeError, or an integer int() refuses (4,300 digits)
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        # Lexically absolute, symlinks kept: a Kubernetes ConfigMap's file is a symlink into
        # a dated directory, and state_dir = "state" means beside the link, not in there.
        base_dir = Path(os.path.abspath(path)).parent
        return parse_config(data, environ, base_dir=base_dir)
    except ConfigError as exc:
        error = ConfigError(f"{path}: invalid configuration\n{exc}")
        error.partial = exc.partial
        raise error from None


def _explain(exc: ValidationError, sources: Mapping[str, str]) -> list[str]:
    """Each validation error as ``key.path: problem``, with the variable that set the key
    when one did; an error repeated for a model only because its section inherits the
    global one is said once, at the global key."""
    errors = exc.errors()
    said = {(_located(e["loc"])[0], e["msg"]) for e in errors}
    lines = []
    for error in errors:
        path = _located(error["loc"])[0]
        inherited = re.sub(r"^models\.\d+\.(detection|policy)\b", r"\1", path)
        if inherited != path and (inherited, error["msg"]) in said:
            continue
        if not path:  # a check across sections: its message names the keys
            line = error["msg"].removeprefix("Value error, ")
        elif error["type"] == "extra_forbidden":
            parent = _located(error["loc"][:-1])[1]
            allowed = ", ".join(sorted(parent.model_fields)) if parent else "see config.toml"
            line = f"{path}: unknown key; allowed keys here: {allowed}"
        elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            line = f"{path}.{_tag_problem(error)}"
        else:
            line = f"{path}: {error['msg']} (got {_shown(error.get('input'))})"
        lines.append(line + _source(path, sources))
    return lines


SHOWN_CHARS = 200
"""How much of a wrong value an error message repeats: a megabyte-long variable is not."""


def _shown(value: object) -> str:
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    return f"{text[:SHOWN_CHARS]}... ({len(text)} characters)"


def _source(path: str, sources: Mapping[str, str]) -> str:
    """`` (from MONITORD_...)`` when an environment variable set ``path`` or what holds it."""
    for key, variable in sources.items():
        if path == key or path.startswith(f"{key}.") or key.startswith(f"{path}."):
            return f" (from {variable})"
    return ""


def _tag_problem(error: ErrorDetails) -> str:
    """A receiver's missing or unknown ``type``, said as for any other key."""
    ctx = error.get("ctx", {})
    key = str(ctx.get("discriminator", "type")).strip("'")
    if error["type"] == "union_tag_not_found":
        return f"{key}: Field required (got {_shown(error.get('input'))})"
    *tags, last = str(ctx.get("expected_tags", "")).split(", ")
    expected = f"{', '.join(tags)} or {last}" if tags else last
    return f"{key}: Input should be {expected} (got {ctx.get('tag')!r})"


def _located(loc: tuple[int | str, ...]) -> tuple[str, type[BaseModel] | None]:
    """The key path as the file spells it, and the settings model found there.

    Pydantic puts a receiver's type in the location (``receivers.0.airflow.dag_id``): the
    file has no such key, so it is left out (``receivers.0.dag_id``).
    """
    keys: list[str] = []
    models: list[type[BaseModel]] = [Config]
    for part in loc:
        if isinstance(part, int):
            keys.append(str(part))
            continue
        member = [m for m in models if _type_of(m) == part]
        if len(models) > 1 and member:
            models = member
            continue
        keys.append(part)
        fields = [m.model_fields[part] for m in models if part in m.model_fields]
        models = [inner for field in fields for inner in _models_in(field.annotation)]
    return ".".join(keys), models[0] if len(models) == 1 else None


def _type_of(model: type[BaseModel]) -> object:
    field = model.model_fields.get("type")
    return field.default if field is not None else None


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The settings models an annotation holds: itself, or inside a tuple, union, Annotated."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def masked(config: Config) -> dict[str, Any]:
    """The effective configuration as plain data, secrets masked."""
    dumped: dict[str, Any] = json.loads(config.model_dump_json())
    for key in SECRET_ENV:
        section, name = key.split(".")
        if dumped[section].get(name) is not None:
            dumped[section][name] = "********"
    return dumped


__all__ = [
    "MIN_REFERENCE_ROWS",
    "MIN_WINDOW_ROWS",
    "PER_MODEL_SECTIONS",
    "RESERVED_LABELS",
    "SECRET_ENV",
    "AdminSettings",
    "AlertSettings",
    "CheckpointSettings",
    "Config",
    "ConfigError",
    "ConsumerSettings",
    "DetectionSettings",
    "DetectorName",
    "EventFields",
    "KafkaSettings",
    "LabelSettings",
    "LimitSettings",
    "LoggingSettings",
    "ModelSettings",
    "OutputSettings",
    "PerformanceSettings",
    "PolicySettings",
    "RegistrySettings",
    "ShutdownSettings",
    "TopicName",
    "VolumeSettings",
    "load_config",
    "masked",
    "parse_config",
]
