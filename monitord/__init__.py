"""monitord: the daemon and command line around the drift detectors.

Data flows in four hops: `Source.poll` -> `events.decode` -> `Monitor.update` ->
`Policy.decide`, then publish, flush and commit (see `daemon`). Modules:

- `config`: TOML -> validated, frozen settings (`environment`: the ``MONITORD_*``
  overrides; `schema`: what a key path holds, relative paths); `preflight`: the startup
  checks `run` and `check` share; `clock`: all time handling
- `receivers`: one module per receiver type (settings, connector, payloads); `delivery`:
  the outbox between the policy and the receivers
- `events`: records -> per-model-version groups + bad records
- `monitor`, `suite`: each model version's reference and detectors (`row_log`: where its
  recent rows were read; `calibrations`: new references' thresholds, in worker processes
  run as `calibration_worker` when many come at once)
- `policy`: alerts and retrain requests, decided without I/O (`retrain`: drift episodes;
  `retrain_policy`: guards, schedules, manual requests; `schedule`: the slots taken;
  `cron`: crontab expressions); `audit`: where they are recorded; `cloudevent`, `outputs`:
  how they leave; `manual`: `monitord retrain` through the admin endpoint or directly
- `daemon`, `service`: the loop and its Kafka wiring; `app`: a process's parts, signals and
  shutdown order; `replay`, `demo`, `cli`: entry points;
  `console` (a replay's table and progress) and `tally` (its summary): what a person reads
- `checkpoint`: each partition's state with the offset it covers; `state`: the typed,
  validated models that state is stored as
- `labels`: label records joined to their predictions (`label_gate`: held until the
  inference partitions are read past them; `join_store`: the predictions waiting, stored
  in parts by `join_parts`); `performance`: what the joined pairs are tested for
- `reference`, `tabular`: profiles and data files on disk (read in columnar batches);
  `traffic`: synthetic events
- `api`: the Python API for notebooks (`build_reference`, `compare`, `DriftMonitor`);
  `frames`: in-memory tables (pandas, pyarrow, numpy) as columns; `results`: what it returns;
  `report`: results (or the audit log's decisions) as one self-contained HTML file
"""

from monitord.api import DriftMonitor, build_reference, compare, load_profile, save_profile
from monitord.config import Config, ConfigError, load_config
from monitord.daemon import Daemon
from monitord.report import render_report

__all__ = [
    "Config",
    "ConfigError",
    "Daemon",
    "DriftMonitor",
    "build_reference",
    "compare",
    "load_config",
    "load_profile",
    "render_report",
    "save_profile",
]
