"""The drift report: one self-contained HTML file a person can open, attach and share.

`render_report` (and `to_html`) draws a `StreamResult` or a `WindowResult` per model
version: an overview (what drifted, when, how strongly; the alerts fired and resolved; the
retrain requests with their evidence), per column each test's statistic against its
threshold over the windows with the alert episodes shaded, the reference and current
distributions (for the first window that drifted and the last window) and the data-quality
rates. `decisions_html` draws what a daemon's audit log holds: its decisions, without
per-window statistics.

The plots are hand-written inline SVG: no JavaScript, no dependency, nothing fetched, and
a few KB per plot (see README "Drift report" for the comparison with matplotlib). Every
text taken from the data (model, column and category names) is escaped, and the size is
bounded: at most ``max_columns`` columns and the latest ``max_windows`` windows are drawn,
with a note saying what was left out.
"""

from __future__ import annotations

import html
import itertools
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitord.clock import iso
from monitord.config import Config
from monitord.outputs import summary
from monitord.results import (
    QUALITY_TESTS,
    Distribution,
    StreamResult,
    TestResult,
    WindowResult,
)

MAX_COLUMNS = 50
"""Columns drawn per model version by default (drifted ones first)."""
MAX_WINDOWS = 500
"""Windows drawn per plot by default (the latest)."""
MAX_CATEGORIES = 30
"""Category bars per distribution (most frequent in the reference first)."""
MAX_ROWS = 500
"""Rows of an alert or retrain table (the latest)."""

_WIDTH, _HEIGHT, _PAD = 640, 180, 40
_REFERENCE, _CURRENT, _DRIFT, _THRESHOLD = "#7a8ca3", "#d9822b", "#c23030", "#444"


@dataclass(frozen=True)
class Decision:
    """An alert transition or a retrain request as the report shows it."""

    kind: str  # alert | retrain
    status: str  # firing | resolved | requested | suppressed
    model: str
    version: str
    row: int  # the row (stream position) of the window that decided it
    time: str  # the window's end time, "" when unknown
    feature: str = ""
    detector: str = ""
    severity: str = ""
    statistic: float = math.nan
    threshold: float = math.nan
    reason: str = ""
    drifted_features: tuple[str, ...] = ()
    feature_share: float = math.nan
    windows: int = 0
    statistics: tuple[tuple[str, str, float, float], ...] = ()
    detail: str = ""
    id: str = ""


def decision(evidence: Mapping[str, Any], status: str | None = None) -> Decision:
    """A `Decision` from an output as JSON: `outputs.summary` or the audit log's evidence
    (a held-back request's evidence is ``{"guard", "detail", "trigger": {...}}``)."""
    if "trigger" in evidence:
        held = evidence
        evidence = {**held["trigger"], "detail": f"held back by {held['guard']}: {held['detail']}"}
    kind = evidence.get("kind") or ("alert" if "severity" in evidence else "retrain")
    end = evidence.get("end_time")
    return Decision(
        kind=str(kind),
        status=str(status or evidence.get("status") or "requested"),
        model=str(evidence.get("model", "")),
        version=str(evidence.get("version", "")),
        row=int(evidence.get("stream_row", evidence.get("row", 0))),
        time=_iso(end),
        feature=str(evidence.get("feature", "")),
        detector=str(evidence.get("detector", "")),
        severity=str(evidence.get("severity", "")),
        statistic=_float(evidence.get("statistic")),
        threshold=_float(evidence.get("threshold")),
        reason=str(evidence.get("reason", "")),
        drifted_features=tuple(str(f) for f in evidence.get("drifted_features", ())),
        feature_share=_float(evidence.get("feature_share")),
        windows=int(evidence.get("windows", 0)),
        statistics=tuple(
            (str(f), str(d), _float(v), _float(t)) for f, d, v, t in evidence.get("statistics", ())
        ),
        detail=str(evidence.get("detail", "")),
        id=str(evidence.get("id", "")),
    )


def to_html(
    result: StreamResult | WindowResult,
    *,
    title: str = "monitord drift report",
    max_columns: int = MAX_COLUMNS,
    max_windows: int = MAX_WINDOWS,
) -> str:
    """The report of ``result`` as one HTML document."""
    for name, value in (("max_columns", max_columns), ("max_windows", max_windows)):
        if value < 1:
            raise ValueError(f"{name}: must be at least 1, got {value}")
    if isinstance(result, WindowResult):
        result = StreamResult(result.n_rows, (result,), ())
    decisions = [decision(summary(o)) for o in result.outputs]
    versions = dict.fromkeys((w.model, w.version) for w in result.windows)
    versions |= dict.fromkeys((d.model, d.version) for d in decisions)
    body = [
        f"<p>{result.rows:,} rows, {_tested(result.windows):,} windows, "
        f"{len(result.bad_rows):,} bad rows. Drifted: "
        f"{_names(result.drifted)}.</p>"
    ]
    for model, version in versions:
        windows = [w for w in result.windows if (w.model, w.version) == (model, version)]
        mine = [d for d in decisions if (d.model, d.version) == (model, version)]
        body.append(_version_section(model, version, windows, mine, max_columns, max_windows))
    return _page(title, body)


def _tested(windows: Iterable[WindowResult]) -> int:
    """Windows tested against the reference (a change point of ADWIN, or a comparison with a
    recent regime, is no window of its own)."""
    return sum(1 for w in windows if w.regime == 0 and any(t.test != "adwin" for t in w.tests))


def render_report(
    result: StreamResult | WindowResult,
    path: str | os.PathLike[str],
    *,
    title: str = "monitord drift report",
    max_columns: int = MAX_COLUMNS,
    max_windows: int = MAX_WINDOWS,
) -> Path:
    """Write the report of ``result`` to ``path`` (one HTML file); returns the path.

    >>> import numpy as np, monitord, tempfile, pathlib
    >>> rng = np.random.default_rng(7)
    >>> reference = monitord.build_reference({"x": rng.normal(size=2000)})
    >>> window = monitord.compare(reference, {"x": rng.normal(size=500) + 1.0})
    >>> out = monitord.render_report(window, pathlib.Path(tempfile.mkdtemp()) / "r.html")
    >>> "<svg" in out.read_text()
    True
    """
    target = Path(path)
    page = to_html(result, title=title, max_columns=max_columns, max_windows=max_windows)
    target.write_text(page, encoding="utf-8")
    return target


def decisions_html(
    decisions: Sequence[Decision], *, title: str, note: str, active: Iterable[str] = ()
) -> str:
    """A report of decisions alone (a daemon's audit log): per model version, the alerts and
    retrain requests, with ``note`` saying what the source lacks. ``active`` holds the ids
    of the alert transitions that still fire."""
    firing = set(active)
    body = [f'<p class="note">{_text(note)}</p>']
    versions = dict.fromkeys((d.model, d.version) for d in decisions)
    for model, version in versions:
        mine = [d for d in decisions if (d.model, d.version) == (model, version)]
        now = [d for d in mine if d.id in firing]
        body.append(f"<section><h2>{_text(model)} / version {_text(version)}</h2>")
        body.append(f"<p>Firing now: {_text(', '.join(_label(d) for d in now) or 'nothing')}.</p>")
        body.append(_decision_tables(mine))
        body.append("</section>")
    if not decisions:
        body.append("<p>No decisions recorded yet.</p>")
    return _page(title, body)


def audit_html(config: Config, *, models: Sequence[str] = (), limit: int = 1000) -> str:
    """The report of a daemon's audit log (running or stopped): its latest ``limit``
    decisions per model version, with the alerts firing now; the daemon keeps no
    per-window statistics, and the page says so."""
    from monitord.audit import AuditLog  # noqa: PLC0415 (SQLite only when asked)
    from monitord.service import audit_path  # noqa: PLC0415

    path = audit_path(config)
    lacks = (
        "The daemon keeps no per-window statistics or distributions, so this report shows "
        "its decisions only; `monitord replay` or the Python API (`render_report`) draws "
        "statistics over windows."
    )
    title = "monitord decisions"
    if not path.exists():
        note = f"No audit log at {path} yet: the daemon has decided nothing with this config."
        return decisions_html([], title=title, note=note)
    audit = AuditLog(path)
    try:
        found = audit.evidence(limit, models)
        active = [d.id for d in audit.active(models)]
    finally:
        audit.close()
    note = f"From the audit log {path}: "
    note += f"the latest {limit:,} decisions. " if len(found) == limit else "every decision. "
    decisions = [decision(evidence, row.status) for row, evidence in found]
    return decisions_html(decisions, title=title, note=note + lacks, active=active)


def _version_section(
    model: str,
    version: str,
    windows: list[WindowResult],
    decisions: list[Decision],
    max_columns: int,
    max_windows: int,
) -> str:
    out = [f"<section><h2>{_text(model)} / version {_text(version)}</h2>"]
    reference = [w for w in windows if w.regime == 0]
    if len(reference) > max_windows:
        out.append(
            f'<p class="note">Plots show the latest {max_windows:,} of {len(reference):,} '
            "windows (max_windows).</p>"
        )
    shown = reference[-max_windows:]
    out.append(_overview(windows))
    out.append(_timeline(shown, decisions))
    out.append(_decision_tables(decisions))
    columns = _columns_by_drift(windows)
    if len(columns) > max_columns:
        out.append(
            f'<p class="note">{len(columns) - max_columns:,} of {len(columns):,} columns are '
            f"not drawn (max_columns; drifted columns come first): "
            f"{_names(columns[max_columns:])}</p>"
        )
    series, pictures = _series(shown), _pictures(windows)
    for column in columns[:max_columns]:
        out.append(_column_section(column, series, pictures, decisions))
    out.append("</section>")
    return "\n".join(out)


def _overview(windows: list[WindowResult]) -> str:
    """One row per drifted (column, test): first drift, drifted windows, strongest ratio."""
    rows: dict[tuple[str, str], list[Any]] = {}
    for w in windows:
        for t in w.tests:
            if not t.drifted:
                continue
            ratio = t.statistic / t.threshold if t.threshold else math.nan
            found = rows.get((t.column, t.test))
            if found is None:
                rows[(t.column, t.test)] = [w.last_row, _when(w), 1, ratio, w.regime]
            else:
                found[2] += 1
                found[3] = max(found[3], ratio) if math.isfinite(ratio) else found[3]
    if not rows:
        return f"<p>No drift in {_tested(windows):,} windows.</p>"
    lines = [
        f"<tr><td>{_text(c)}</td><td>{_text(t)}</td><td>{row:,}</td><td>{_text(when)}</td>"
        f"<td>{n:,}</td><td>{_number(ratio)}</td></tr>"
        for (c, t), (row, when, n, ratio, _) in rows.items()
    ]
    return (
        "<h3>What drifted</h3><table><tr><th>column</th><th>test</th><th>first drift (row)</th>"
        "<th>time</th><th>drifted windows</th><th>max statistic / threshold</th></tr>"
        + "".join(lines)
        + "</table>"
    )


def _timeline(windows: list[WindowResult], decisions: list[Decision]) -> str:
    """Drifted columns per window, with the model-level alert's episodes shaded."""
    points = [
        (w.last_row, TestResult("", "any", len(w.drifted), None, w.any_drift, None, w.n_rows))
        for w in windows
    ]
    caption = "Drifted columns per window (red: any drifted); shaded: the model's alert firing"
    return _statistic_chart("", "any", points, decisions, caption)


def _decision_tables(decisions: list[Decision]) -> str:
    alerts = [d for d in decisions if d.kind == "alert"]
    retrains = [d for d in decisions if d.kind == "retrain"]
    fired = sum(d.status == "firing" for d in alerts)
    out = [f"<h3>Alerts: {fired:,} fired, {len(alerts) - fired:,} resolved</h3>"]
    if alerts:
        out.append(_capped(len(alerts)))
        out.append(
            "<table><tr><th>status</th><th>severity</th><th>column</th><th>test</th>"
            "<th>statistic</th><th>threshold</th><th>row</th><th>time</th></tr>"
        )
        out += [
            f'<tr class="{_text(d.status)}"><td>{_text(d.status)}</td><td>{_text(d.severity)}'
            f"</td><td>{_text(d.feature or '(model)')}</td><td>{_text(d.detector)}</td>"
            f"<td>{_number(d.statistic)}</td><td>{_number(d.threshold)}</td><td>{d.row:,}</td>"
            f"<td>{_text(d.time)}</td></tr>"
            for d in alerts[-MAX_ROWS:]
        ]
        out.append("</table>")
    out.append(f"<h3>Retrain requests: {len(retrains):,}</h3>")
    if retrains:
        out.append(_capped(len(retrains)))
        out.append(
            "<table><tr><th>status</th><th>reason</th><th>row</th><th>time</th>"
            "<th>evidence</th><th>id</th></tr>"
        )
        out += [
            f"<tr><td>{_text(d.status)}</td><td>{_text(d.reason)}</td><td>{d.row:,}</td>"
            f"<td>{_text(d.time)}</td><td>{_evidence(d)}</td><td><code>{_text(d.id)}</code>"
            "</td></tr>"
            for d in retrains[-MAX_ROWS:]
        ]
        out.append("</table>")
    return "\n".join(out)


def _evidence(d: Decision) -> str:
    parts = []
    if d.drifted_features:
        parts.append(
            f"{len(d.drifted_features)} columns drifted ({_share(d.feature_share)} of the "
            f"monitored columns) for {d.windows} windows: {_text(', '.join(d.drifted_features))}"
        )
    parts += [
        f"{_text(f)} {_text(t)} {_number(v)} (threshold {_number(th)})"
        for f, t, v, th in d.statistics[:20]
    ]
    if d.detail:
        parts.append(_text(d.detail))
    return "<br>".join(parts)


def _capped(n: int) -> str:
    if n <= MAX_ROWS:
        return ""
    return f'<p class="note">The latest {MAX_ROWS:,} of {n:,} are listed.</p>'


def _columns_by_drift(windows: list[WindowResult]) -> list[str]:
    """Every column, those that drifted first (in order of first drift)."""
    all_columns = dict.fromkeys(t.column for w in windows for t in w.tests)
    drifted = dict.fromkeys(c for w in windows for c in w.drifted)
    return [*drifted, *(c for c in all_columns if c not in drifted)]


Series = dict[str, dict[str, list[tuple[int, TestResult]]]]
"""Per column, per test: (window's last row, result) over the windows drawn."""


@dataclass(frozen=True)
class _Pictures:
    """Per column, the distributions drawn: the first drifted window's and the last one's."""

    first_drifted: dict[str, tuple[WindowResult, Distribution]]
    last: dict[str, tuple[WindowResult, Distribution]]


def _series(windows: list[WindowResult]) -> Series:
    """One pass over the windows, so a chart costs its own points, not every test's."""
    series: Series = {}
    for w in windows:
        for t in w.tests:
            series.setdefault(t.column, {}).setdefault(t.test, []).append((w.last_row, t))
    return series


def _pictures(windows: list[WindowResult]) -> _Pictures:
    first: dict[str, tuple[WindowResult, Distribution]] = {}
    last: dict[str, tuple[WindowResult, Distribution]] = {}
    for w in windows:
        if not w.distributions:
            continue
        drifted = set(w.drifted)
        for d in w.distributions:
            last[d.column] = (w, d)
            if d.column in drifted and d.column not in first:
                first[d.column] = (w, d)
    return _Pictures(first, last)


def _column_section(
    column: str, series: Series, pictures: _Pictures, decisions: list[Decision]
) -> str:
    out = [f"<h3>Column {_text(column)}</h3>"]
    tests = series.get(column, {})
    ordered = [t for t in tests if t not in QUALITY_TESTS] + [
        t for t in tests if t in QUALITY_TESTS
    ]
    charts = [_statistic_chart(column, test, tests[test], decisions) for test in ordered]
    out.append('<div class="charts">' + "".join(charts) + "</div>")
    drifted = pictures.first_drifted.get(column)
    last = pictures.last.get(column)
    shown = [("first drifted window", drifted)]
    if last is not None and (drifted is None or last[0] is not drifted[0]):
        shown.append(("last window", last))
    drawn = [
        _distribution_chart(found, f"{label}: rows {window.first_row:,}-{window.last_row:,}")
        for label, picked in shown
        if picked is not None
        for window, found in (picked,)
    ]
    if drawn:
        out.append('<div class="charts">' + "".join(drawn) + "</div>")
    return "\n".join(out)


def _statistic_chart(
    column: str,
    test: str,
    points: list[tuple[int, TestResult]],
    decisions: list[Decision],
    caption: str = "",
) -> str:
    if not points:
        return ""
    xs = [x for x, _ in points]
    values = [t.statistic for _, t in points] + [
        t.threshold for _, t in points if t.threshold is not None
    ]
    finite = [v for v in values if math.isfinite(v)]
    top = max(finite, default=1.0) * 1.1 or 1.0
    low_x, high_x = min(xs), max(xs)
    span_x = (high_x - low_x) or 1

    def px(x: float) -> float:
        return _PAD + (x - low_x) / span_x * (_WIDTH - 2 * _PAD)

    def py(y: float) -> float:
        return _HEIGHT - _PAD / 2 - min(max(y, 0.0), top) / top * (_HEIGHT - _PAD)

    parts = [_episodes(column, test, decisions, low_x, high_x, px)]
    line = " ".join(
        f"{px(x):.1f},{py(t.statistic):.1f}" for x, t in points if math.isfinite(t.statistic)
    )
    thresholds = " ".join(
        f"{px(x):.1f},{py(t.threshold):.1f}"
        for x, t in points
        if t.threshold is not None and math.isfinite(t.threshold)
    )
    if thresholds:
        parts.append(
            f'<polyline class="threshold" points="{thresholds}" fill="none" '
            f'stroke="{_THRESHOLD}" stroke-dasharray="4 3"/>'
        )
    if line:
        parts.append(f'<polyline points="{line}" fill="none" stroke="{_REFERENCE}"/>')
    parts += [
        f'<circle class="drift" cx="{px(x):.1f}" cy="{py(t.statistic):.1f}" r="3" '
        f'fill="{_DRIFT}"><title>row {x:,}: {_number(t.statistic)} &gt; '
        f"{_number(t.threshold)}</title></circle>"
        for x, t in points
        if t.drifted and math.isfinite(t.statistic)
    ]
    drifts = sum(t.drifted for _, t in points)
    caption = caption or (
        f"{_text(test)}: statistic (line) vs threshold (dashed), {drifts} of {len(points)} "
        "windows drifted (red)"
    )
    axes = (
        f'<text x="{_PAD}" y="12">{_number(top)}</text>'
        f'<text x="{_PAD}" y="{_HEIGHT - 4}">row {low_x:,}</text>'
        f'<text x="{_WIDTH - _PAD}" y="{_HEIGHT - 4}" text-anchor="end">row {high_x:,}</text>'
        f'<line x1="{_PAD}" y1="{py(0):.1f}" x2="{_WIDTH - _PAD}" y2="{py(0):.1f}" '
        'stroke="#bbb"/>'
    )
    return _figure(caption, axes + "".join(parts))


def _episodes(
    column: str, test: str, decisions: list[Decision], low: int, high: int, px: Any
) -> str:
    """Shaded spans from each alert's firing to its resolution (or the end)."""
    spans, since = [], None
    for d in decisions:
        if d.kind != "alert" or d.feature != column or d.detector != test:
            continue
        if d.status == "firing" and since is None:
            since = d.row
        elif d.status == "resolved" and since is not None:
            spans.append((since, d.row))
            since = None
    if since is not None:
        spans.append((since, high))
    return "".join(
        f'<rect class="episode" x="{px(max(a, low)):.1f}" y="0" '
        f'width="{max(px(min(b, high)) - px(max(a, low)), 2):.1f}" height="{_HEIGHT - _PAD / 2}"'
        f' fill="{_DRIFT}" fill-opacity="0.12"><title>alert firing, rows {a:,}-{b:,}</title>'
        "</rect>"
        for a, b in spans
    )


def _distribution_chart(found: Distribution, caption: str) -> str:
    reference, current = found.reference_shares, found.current_shares
    if found.kind == "histogram":
        edges = [float(b) for b in found.bins]
        labels = [f"{_number(a)} to {_number(b)}" for a, b in itertools.pairwise(edges)]
    else:
        labels = [str(b) for b in found.bins]
    note = ""
    if len(labels) > MAX_CATEGORIES:
        note = f", {len(labels) - MAX_CATEGORIES} more categories not drawn"
        keep = [*range(MAX_CATEGORIES - 1), len(labels) - 1]  # "(unseen)" stays
        labels = [labels[i] for i in keep]
        reference, current = tuple(reference[i] for i in keep), tuple(current[i] for i in keep)
    finite = [v for v in (*reference, *current) if math.isfinite(v)]
    top = max(finite, default=1.0) or 1.0
    slot = (_WIDTH - 2 * _PAD) / max(len(labels), 1)
    bars = []
    for i, label in enumerate(labels):
        for k, (share, colour) in enumerate(((reference[i], _REFERENCE), (current[i], _CURRENT))):
            value = share if math.isfinite(share) else 0.0
            height = value / top * (_HEIGHT - _PAD)
            x = _PAD + i * slot + k * slot / 2
            which = "reference" if k == 0 else "current"
            bars.append(
                f'<rect class="bar" x="{x:.1f}" y="{_HEIGHT - _PAD / 2 - height:.1f}" '
                f'width="{max(slot / 2 - 1, 1):.1f}" height="{height:.1f}" fill="{colour}">'
                f"<title>{_text(label)}: {which} {value:.1%}</title></rect>"
            )
    if found.kind == "categories" and len(labels) <= 12:
        bars += [
            f'<text x="{_PAD + (i + 0.5) * slot:.1f}" y="{_HEIGHT - 4}" text-anchor="middle">'
            f"{_text(label[:12])}</text>"
            for i, label in enumerate(labels)
        ]
    elif labels:
        bars.append(
            f'<text x="{_PAD}" y="{_HEIGHT - 4}">{_text(labels[0].split(" to ")[0])}</text>'
            f'<text x="{_WIDTH - _PAD}" y="{_HEIGHT - 4}" text-anchor="end">'
            f"{_text(labels[-1].rsplit(' to ', 1)[-1])}</text>"
        )
    missing = f"; missing: reference {found.reference_missing:,}, window {found.current_missing:,}"
    text = (
        f"{_text(caption)}: reference (grey) vs window (orange), shares{_text(missing)}"
        f"{_text(note)}"
    )
    return _figure(text, f'<text x="{_PAD}" y="12">{top:.0%}</text>' + "".join(bars))


def _figure(caption: str, svg: str) -> str:
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'width="{_WIDTH}" height="{_HEIGHT}" role="img">{svg}</svg>'
        f"<figcaption>{caption}</figcaption></figure>"
    )


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;
text-align:left;vertical-align:top}tr.firing td:first-child{color:#c23030}
.note{color:#8a5a00}.charts{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0}svg{font-size:11px;fill:#333;background:#fafafa}
figcaption{font-size:12px;max-width:640px}section{border-top:2px solid #ddd;margin-top:1em}
"""


def _page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_text(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_text(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _names(names: Sequence[str], most: int = 50) -> str:
    """Escaped, comma-separated, the first ``most`` of them."""
    if not names:
        return "nothing"
    more = f" and {len(names) - most:,} more" if len(names) > most else ""
    return _text(", ".join(names[:most])) + more


def _label(d: Decision) -> str:
    return f"{d.feature or '(model)'} {d.detector}"


def _iso(end: object) -> str:
    """An event time as text; "" for none (data without times carry the epoch's start)."""
    if isinstance(end, int | float) and math.isfinite(end) and end > 0:
        return iso(float(end))
    if isinstance(end, str) and not end.startswith("1970-01-01T00:00:00"):
        return end
    return ""


def _when(w: WindowResult) -> str:
    return "" if w.end_time is None else iso(w.end_time)


def _text(value: str) -> str:
    return html.escape(value, quote=True)


def _number(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.4g}"


def _share(value: float) -> str:
    return f"{value:.0%}" if math.isfinite(value) else "-"


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


__all__ = [
    "MAX_COLUMNS",
    "MAX_WINDOWS",
    "Decision",
    "audit_html",
    "decision",
    "decisions_html",
    "render_report",
    "to_html",
]
