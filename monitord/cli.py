"""The `monitord` command line: run, check, reference build, replay, alerts, report, retrain,
demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from connectors.stream import ConnectorError
from detectors.profile import ProfileError, ReferenceProfile
from monitord.audit import STATUSES, Decision
from monitord.config import (
    Config,
    ConfigError,
    DetectionSettings,
    load_config,
    masked,
    parse_config,
)
from monitord.environment import CONFIG_FILE
from monitord.tabular import DataError

log = logging.getLogger("monitord")

DEFAULT_CONFIG = Path("config.toml")
CONFIG_HELP = f"TOML config file (default ${CONFIG_FILE}, else {DEFAULT_CONFIG})"


def main(argv: Sequence[str] | None = None) -> int:
    from monitord.daemon import limit_blas_threads  # noqa: PLC0415

    parser = _parser()
    args = parser.parse_args(argv)
    limit_blas_threads()  # every command runs detectors: small BLAS calls, no threads
    try:
        code: int = args.handler(args)
        return code
    except (ConfigError, ProfileError, DataError) as exc:
        print(f"monitord: error: {exc}", file=sys.stderr)
        return 2
    except ConnectorError as exc:
        print(f"monitord: error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitord",
        description="Streaming drift monitoring and retraining triggers for ML models on Kafka.",
    )
    parser.add_argument(
        "--version", action="version", version=_version(), help="print the version and exit"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="run the daemon against Kafka",
        description="Consume inference events and publish alerts and "
        "retrain requests until SIGTERM/SIGINT.",
    )
    run.add_argument("--config", type=Path, help=CONFIG_HELP)
    run.set_defaults(handler=_run)

    check = commands.add_parser(
        "check",
        help="validate a config and print the effective one",
        description="Exit 0 if the config is valid (secrets masked "
        "in the printout), non-zero with the reasons otherwise.",
    )
    check.add_argument("--config", type=Path, help=CONFIG_HELP)
    check.set_defaults(handler=_check)

    reference = commands.add_parser("reference", help="reference profiles")
    ref_commands = reference.add_subparsers(required=True, metavar="ACTION")
    build = ref_commands.add_parser(
        "build",
        help="build a reference profile from a CSV, JSONL or Parquet file",
        description="Profile training/validation data for one model version. The column named "
        "by --prediction-column is monitored as the model's prediction. With --label-column, "
        "the profile also holds the reference performance, the rows' (prediction, label) "
        "pairs: a version with this profile tests its performance from its first labelled row "
        "instead of taking performance.warmup_labels of them as the reference.",
    )
    build.add_argument("data", type=Path, help="CSV, JSONL or Parquet file")
    build.add_argument("--model", required=True)
    build.add_argument("--version", required=True)
    build.add_argument("--out", type=Path, help="profile file (default profiles/MODEL@VERSION.npz)")
    build.add_argument("--prediction-column", default="prediction")
    build.add_argument(
        "--label-column",
        "--label",
        metavar="COLUMN",
        help="the label's column: store the reference (prediction, label) pairs (default: none)",
    )
    build.add_argument("--bins", type=int, default=10, help="PSI bins per numeric feature")
    build.add_argument("--max-rows", type=int, default=5000, help="rows kept in the sample")
    build.add_argument(
        "--mlflow",
        action="store_true",
        help="also log the profile to the run of MLflow model version models:/MODEL/VERSION, "
        "where the daemon's [registry] finds it",
    )
    build.add_argument(
        "--tracking-uri",
        help="MLflow tracking server (default: [registry] of --config, else MLFLOW_TRACKING_URI)",
    )
    build.add_argument(
        "--config", type=Path, help="config whose [registry] names the server and artifact path"
    )
    build.set_defaults(handler=_reference_build)

    replay = commands.add_parser(
        "replay",
        help="run the detection path over a file, without Kafka",
        description="Decode -> monitor -> policy over a CSV, JSONL or Parquet file, read in "
        "batches. Prints every alert and retrain request, as a table on a terminal and as one "
        "JSON object per line when piped (--format); `row` is the 0-based input row whose "
        "arrival made it fire (a row of --labels when a label's arrival did). A summary "
        "(windows, first drift per column and test, alerts, retrain requests) and, on a "
        "terminal, progress go to stderr. Labels, "
        "for performance monitoring, come from the label column of the rows or from --labels, "
        "joined by event id: a row's id is its event_id column, or its 0-based row index when "
        "the file has no event_id column.",
    )
    replay.add_argument("data", type=Path)
    replay.add_argument("--model", help="model name for rows without one (default: file stem)")
    replay.add_argument("--version", default="1", help="model version for rows without one")
    replay.add_argument("--profile", type=Path, help="reference profile (default: first rows)")
    replay.add_argument("--warmup", type=int, help="rows captured as reference without --profile")
    replay.add_argument(
        "--config",
        type=Path,
        help=f"TOML config for detection and policy (default ${CONFIG_FILE}, else none)",
    )
    replay.add_argument("--prediction-column", default="prediction")
    replay.add_argument(
        "--label-column",
        metavar="NAME",
        help="the label's column, in the file and in --labels (default: events.label, 'label')",
    )
    replay.add_argument(
        "--labels",
        type=Path,
        metavar="LABELS_FILE",
        help="labels joined by event id: rows of event_id and the label column (optional "
        "model, timestamp), read as records of a label topic after the file's events",
    )
    replay.add_argument(
        "--dead-letters", type=Path, help="write bad rows here, one JSON object per line"
    )
    replay.add_argument(
        "--report",
        type=Path,
        help="also write an HTML report here (one self-contained file: each column's "
        "statistics against their thresholds over the windows, the alerts, the retrain "
        "requests with their evidence)",
    )
    replay.add_argument(
        "--format",
        choices=("jsonl", "table"),
        help="outputs as JSON lines (for machines) or an aligned table (for a person); "
        "default: table on a terminal, jsonl when piped",
    )
    replay.set_defaults(handler=_replay)

    alerts = commands.add_parser(
        "alerts",
        help="list active alerts and recent decisions",
        description="Read the audit log in the config's state_dir: label sets currently "
        "firing, then the latest alert transitions and retrain requests. --state firing shows "
        "only what fires now; another --state only the latest decisions in that state.",
    )
    alerts.add_argument("--config", type=Path, help=CONFIG_HELP)
    alerts.add_argument(
        "--history", type=_positive, default=20, help="recent decisions to show (default 20)"
    )
    alerts.add_argument(
        "--model", action="append", default=[], help="only this model (repeat for more)"
    )
    alerts.add_argument(
        "--state",
        choices=STATUSES,
        help="firing: the label sets firing now; resolved, requested (retrain), suppressed "
        "(retrain held back): the latest decisions in that state",
    )
    alerts.add_argument(
        "--json",
        action="store_true",
        help='one JSON object on standard output: {"active": [...], "history": [...]} '
        "(the lists shown)",
    )
    alerts.set_defaults(handler=_alerts)

    report = commands.add_parser(
        "report",
        help="write the drift report of a daemon's audit log as one HTML file",
        description="Read the audit log in the config's state_dir (the daemon may be running) "
        "and write one self-contained HTML file: per model version the alerts fired and "
        "resolved, what fires now, and the retrain requests with their evidence.",
    )
    report.add_argument("--config", type=Path, help=CONFIG_HELP)
    report.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    report.add_argument(
        "--model", action="append", default=[], help="only this model (repeat for more)"
    )
    report.add_argument(
        "--limit", type=_positive, default=1000, help="latest decisions shown (default 1000)"
    )
    report.set_defaults(handler=_report)

    retrain = commands.add_parser(
        "retrain",
        help="request a retrain of a model now",
        description="Ask the running daemon (its admin endpoint, POST /retrain) to request a "
        "retrain of MODEL, recorded and published like any other request; prints the request "
        "id. With --direct, publish it without the daemon: to the trigger topic and the "
        "matching trigger receivers (through the outbox), recorded in the audit log.",
    )
    retrain.add_argument("model", help="the model to retrain")
    retrain.add_argument("--reason", required=True, help="why (goes to the audit log and payload)")
    retrain.add_argument("--version", help="model version (default: the daemon's current one)")
    retrain.add_argument("--config", type=Path, help=f"{CONFIG_HELP}, if present")
    retrain.add_argument("--url", help="the daemon's admin endpoint (default from admin.*)")
    retrain.add_argument(
        "--direct", action="store_true", help="publish without the daemon (needs --version)"
    )
    retrain.set_defaults(handler=_retrain)

    demo = commands.add_parser(
        "demo",
        help="embedded broker + synthetic traffic + the daemon, live",
        description="Start an embedded Kafka-protocol broker on 127.0.0.1, a synthetic producer "
        "for two models with drift injected part-way, and the daemon; show events/s, per-model "
        "status, alerts and retrain requests as they happen.",
    )
    demo.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds to run from the daemon's first events (default 60)",
    )
    demo.add_argument("--config", type=Path, help=f"{CONFIG_HELP}; defaults if none")
    demo.add_argument("--rate", type=int, default=4000, help="events per second in total")
    demo.set_defaults(handler=_demo)
    return parser


def _config_path(given: Path | None, *, fallback: Path | None = DEFAULT_CONFIG) -> Path | None:
    """The config file: ``--config``, else ``$MONITORD_CONFIG``, else ``fallback``."""
    if given is not None:
        return given
    named = os.environ.get(CONFIG_FILE)
    return Path(named) if named else fallback


def _required_config(given: Path | None) -> tuple[Path, Config]:
    path = _config_path(given) or DEFAULT_CONFIG
    return path, load_config(path)


def _checked_config(given: Path | None) -> tuple[Path, Config]:
    """The config, through every startup check (`monitord.preflight`). An invalid one
    still gets the checks, with its failing keys at their defaults, so that every problem
    is listed in one round."""
    from monitord.preflight import preflight  # noqa: PLC0415

    try:
        path, config = _required_config(given)
    except ConfigError as exc:
        if exc.partial is None:
            raise
        try:
            preflight(exc.partial)
        except ConfigError as more:
            raise ConfigError(f"{exc}\n{more}") from None
        raise
    preflight(config)
    return path, config


def _config_or_default(path: Path | None) -> Config:
    """The config of ``path``, or the defaults (with the environment's overrides)."""
    if path is None:
        return parse_config({})
    return load_config(path)


def _check(args: argparse.Namespace) -> int:
    from monitord.clock import iso, now  # noqa: PLC0415
    from monitord.schedule import CronSchedule  # noqa: PLC0415

    path, config = _checked_config(args.config)
    print(json.dumps(masked(config), indent=2, sort_keys=True))
    for key, variable in sorted(config.from_environment.items()):
        print(f"monitord: {key} is set by {variable}", file=sys.stderr)
    for i, model in enumerate(config.models):
        if model.retrain_schedule is not None:
            schedule = CronSchedule(model.retrain_schedule, model.retrain_schedule_timezone)
            slot = schedule.next_after(now())
            when = "never within 50 years" if slot is None else iso(slot)
            print(
                f"monitord: models.{i}.retrain_schedule of {model.name} is "
                f"{schedule.description}: next slot {when}",
                file=sys.stderr,
            )
    print(f"monitord: {path} is valid (config hash {config.config_hash})", file=sys.stderr)
    return 0


def _reference_build(args: argparse.Namespace) -> int:
    from monitord.reference import profile_from_file, save_profile, supported  # noqa: PLC0415
    from monitord.tabular import open_data  # noqa: PLC0415

    profile = profile_from_file(
        open_data(args.data),
        args.model,
        args.version,
        prediction_column=args.prediction_column,
        label_column=args.label_column,
        n_bins=args.bins,
        max_rows=args.max_rows,
    )
    out = args.out or Path("profiles") / f"{args.model}@{args.version}.npz"
    try:
        save_profile(supported(profile, str(args.data)), out)
    except OSError as exc:
        raise DataError(f"--out {out}: cannot write ({exc.strerror})") from None
    pairs = len(profile.performance_pairs)
    print(
        f"wrote {out}: {profile.n_rows} rows, {len(profile.numeric_names)} numeric and "
        f"{len(profile.categorical_names)} categorical columns"
        + (f", {pairs} (prediction, label) pairs" if pairs else "")
        + f", id {profile.profile_id}"
    )
    for note in profile.notes:
        print(f"note: {note}")
    if args.mlflow:
        _log_to_mlflow(args, profile)
    return 0


def _log_to_mlflow(args: argparse.Namespace, profile: ReferenceProfile) -> None:
    from connectors.mlflow import MlflowClient  # noqa: PLC0415
    from monitord.config import RegistrySettings  # noqa: PLC0415
    from monitord.registry import log_profile  # noqa: PLC0415

    settings = load_config(args.config).registry if args.config else None
    uri = args.tracking_uri or (settings and settings.tracking_uri)
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise ConfigError(
            "--mlflow: no tracking server: pass --tracking-uri, a --config with [registry], "
            "or set MLFLOW_TRACKING_URI"
        )
    try:
        settings = RegistrySettings.model_validate(
            {**(settings.model_dump() if settings else {}), "tracking_uri": uri}
        )
    except ValidationError as exc:
        raise ConfigError(f"--tracking-uri: {exc.errors()[0]['msg']}") from None
    token = os.environ.get(settings.token_env) if settings.token_env else None
    client = MlflowClient(
        settings.tracking_uri,
        timeout_s=settings.timeout_s,
        max_bytes=settings.max_profile_bytes,
        token=token or os.environ.get("MLFLOW_TRACKING_TOKEN"),
    )
    logged = log_profile(client, profile, settings.artifact_path)
    print(f"logged to {logged.model_uri} at {logged.tracking_uri}: {logged.artifact_uri}")


def _replay(args: argparse.Namespace) -> int:
    from monitord.daemon import tune_garbage_collector  # noqa: PLC0415
    from monitord.replay import replay  # noqa: PLC0415

    config = _config_or_default(_config_path(args.config, fallback=None))
    if args.warmup is not None:
        # Validated like the config file's key: a warm-up below the supported range fails.
        try:
            detection = DetectionSettings.model_validate(
                {**config.detection.model_dump(), "warmup_events": args.warmup}
            )
        except ValidationError as exc:
            reasons = "; ".join(str(error["msg"]) for error in exc.errors())
            raise ConfigError(f"--warmup: {reasons} (got {args.warmup})") from None
        config = config.model_copy(update={"detection": detection})
    tune_garbage_collector()  # rows are short-lived, as the daemon's events are
    replay(
        config,
        args.data,
        sys.stdout.buffer,
        model=args.model or args.data.stem,
        version=args.version,
        profile_path=args.profile,
        prediction_column=args.prediction_column,
        dead_letters_path=args.dead_letters,
        label_column=args.label_column,
        labels_path=args.labels,
        output_format=args.format or ("table" if sys.stdout.isatty() else "jsonl"),
        summary=sys.stderr,
        progress=sys.stderr if sys.stderr.isatty() else None,
        report_path=args.report,
    )
    if args.report is not None:
        print(f"monitord: report written to {args.report}", file=sys.stderr)
    return 0


def _alerts(args: argparse.Namespace) -> int:
    from monitord.audit import AuditLog  # noqa: PLC0415
    from monitord.clock import iso  # noqa: PLC0415
    from monitord.service import audit_path  # noqa: PLC0415

    path = audit_path(_required_config(args.config)[1])
    if not path.exists():
        if args.json:
            print(json.dumps({"active": [], "history": []}))
        print(
            f"no audit log at {path} yet: the daemon has decided nothing with this config",
            file=sys.stderr if args.json else sys.stdout,
        )
        return 0
    audit = AuditLog(path)
    try:
        active = audit.active(args.model) if args.state in (None, "firing") else None
        history = None
        if args.state != "firing":
            statuses = [args.state] if args.state else []
            history = audit.history(args.history, args.model, statuses)
    finally:
        audit.close()
    if args.json:
        shown = {"active": active, "history": history}
        document = {
            key: [_decision_json(d) for d in decisions]
            for key, decisions in shown.items()
            if decisions is not None
        }
        print(json.dumps(document, indent=2))
        return 0
    if active is not None:
        print(f"{len(active)} active alert(s)")
        for decision in active:
            print(f"  since {iso(decision.recorded_at)}  {decision.summary}")
    if history is not None:
        print(f"latest {args.history} decision(s)" + (f" {args.state}" if args.state else ""))
        for decision in history:
            print(
                f"  {iso(decision.recorded_at)}  {decision.kind:7} {decision.status:9} "
                f"{decision.summary}"
            )
    return 0


def _report(args: argparse.Namespace) -> int:
    from monitord.report import audit_html  # noqa: PLC0415

    config = _required_config(args.config)[1]
    page = audit_html(config, models=args.model, limit=args.limit)
    args.out.write_text(page, encoding="utf-8")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _decision_json(decision: Decision) -> dict[str, object]:
    from monitord.clock import iso  # noqa: PLC0415

    return {
        "id": decision.id,
        "recorded_at": iso(decision.recorded_at),
        "kind": decision.kind,
        "status": decision.status,
        "model": decision.model,
        "model_version": decision.version,
        "labels": decision.labels,
        "summary": decision.summary,
    }


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _version() -> str:
    from importlib import metadata  # noqa: PLC0415
    from platform import python_version  # noqa: PLC0415

    try:
        version = metadata.version("monitord")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"monitord {version} (Python {python_version()})"


def _retrain(args: argparse.Namespace) -> int:
    from monitord.clock import now  # noqa: PLC0415
    from monitord.manual import admin_url, post_retrain, publish_direct  # noqa: PLC0415

    default = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None
    config = _config_or_default(_config_path(args.config, fallback=default))
    try:
        if not args.direct:
            url = args.url or admin_url(config)
            request_id = post_retrain(url, args.model, args.version, args.reason)
            print(request_id)
            print(f"monitord: retrain of {args.model} requested from {url}", file=sys.stderr)
            return 0
        if not args.version:
            raise ValueError(
                "--direct needs --version: without the daemon, monitord does not know the "
                "model's current version"
            )
        result = publish_direct(config, args.model, args.version, args.reason, now())
    except ValueError as exc:
        print(f"monitord: error: {exc}", file=sys.stderr)
        return 2
    print(result.trigger.id)
    topic = config.kafka.trigger_topic
    print(f"monitord: published to {topic}", file=sys.stderr)
    for name, state in sorted(result.receivers.items()):
        print(f"monitord: receiver {name}: {state}", file=sys.stderr)
    return 1 if "failed" in result.receivers.values() else 0


def _run(args: argparse.Namespace) -> int:
    from monitord.app import App  # noqa: PLC0415
    from monitord.daemon import tune_garbage_collector  # noqa: PLC0415
    from monitord.logs import configure_logging, register_config_secrets  # noqa: PLC0415

    _, config = _checked_config(args.config)  # `check`'s, before the broker is asked
    configure_logging(config.logging.format, config.logging.level)
    register_config_secrets(config, os.environ)
    for key, variable in sorted(config.from_environment.items()):
        log.info("config key %s set by %s", key, variable)
    with App() as app:
        # Ours before anything is built: a SIGTERM while the daemon starts (a rollout that
        # changes its mind) stops it cleanly instead of killing it mid-construction.
        app.stop_on_signals(config.shutdown.grace_s)
        daemon = app.build_daemon(config, observed=True)
        app.serve_admin()
        tune_garbage_collector()
        app.run()
    if not daemon.clean:
        print(
            "monitord: error: the last batch's outputs could not be delivered before "
            "stopping; it will be processed again on restart",
            file=sys.stderr,
        )
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    from monitord.demo import run_demo  # noqa: PLC0415
    from monitord.logs import configure_logging  # noqa: PLC0415

    default = DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None
    config = _config_or_default(_config_path(args.config, fallback=default))
    # The operator's log as text on standard error, beside the console lines on standard
    # output (`2>/dev/null` hides it).
    configure_logging("text", config.logging.level)
    return run_demo(config, duration_s=args.duration, rate=args.rate)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["DEFAULT_CONFIG", "main"]
