"""The drift report: valid HTML holding every drifted column and alert with the numbers of
the results, hostile names escaped, nothing loaded from the network, bounded in size, and
drawn by a real headless Chromium without console errors."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import orjson
import pytest

from connectors.memory import MemorySink, MemorySource
from connectors.stream import Record
from monitord import DriftMonitor, build_reference, compare, render_report
from monitord.audit import AuditLog
from monitord.cli import main
from monitord.config import parse_config
from monitord.daemon import Daemon
from monitord.report import MAX_COLUMNS, to_html
from monitord.results import StreamResult, TestResult, WindowResult

HOSTILE_COLUMN = "<script>window.pwned=1</script>"
HOSTILE_CATEGORY = '<img src=x onerror="window.pwned=2">'
HOSTILE_MODEL = "fraud</title><b>"


class _Page(HTMLParser):
    """Every start tag with its attributes, and the text, of an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    parsed.close()
    return parsed


def _columns(rng: np.random.Generator, n: int, shift: float) -> dict[str, object]:
    cities = ["Oslo", "Rome", HOSTILE_CATEGORY]
    return {
        "x": rng.normal(size=n) + shift,
        "y": rng.normal(size=n),
        HOSTILE_COLUMN: rng.choice(cities, n, p=[0.2, 0.2, 0.6] if shift else [0.4, 0.4, 0.2]),
    }


@pytest.fixture(scope="module")
def stream() -> StreamResult:
    """Quiet, then x and the hostile column shift, then quiet again: alerts fire and resolve."""
    rng = np.random.default_rng(14)
    reference = build_reference(_columns(rng, 2000, 0.0), model=HOSTILE_MODEL, version="7")
    monitor = DriftMonitor(reference, {"detection": {"window_size": 200}})
    batches = [_columns(rng, 2000, 0.0), _columns(rng, 2000, 1.5), _columns(rng, 3000, 0.0)]
    return monitor.run(batches)


@pytest.fixture(scope="module")
def page(stream: StreamResult) -> str:
    return stream.to_html()


def test_the_fixture_drifts_and_alerts(stream: StreamResult) -> None:
    assert set(stream.drifted) >= {"x", HOSTILE_COLUMN}
    assert {a.status for a in stream.alerts} == {"firing", "resolved"}


def test_the_page_parses_and_names_every_drifted_column_and_alert(
    stream: StreamResult, page: str
) -> None:
    parsed = _parse(page)
    text = "".join(parsed.text)
    assert [tag for tag, _ in parsed.tags].count("svg") >= 2 * len(stream.drifted)
    sections = page.split("<h3>Column ")[1:]
    for column in stream.drifted:
        assert f"Column {column}" in text
        (section,) = [s for s in sections if s.startswith(f"{_escaped(column)}</h3>")]
        assert 'class="drift"' in section  # its drifted windows marked on the plot
        assert 'class="bar"' in section  # and its distributions drawn
    rows = re.findall(r'<tr class="(firing|resolved)">(.*?)</tr>', page)
    shown = [(status, re.findall(r"<td>(.*?)</td>", cells)) for status, cells in rows]
    expected = [
        (
            a.status,
            [
                a.status,
                a.severity,
                _escaped(a.feature or "(model)"),
                a.detector,
                f"{a.statistic:.4g}",
                f"{a.threshold:.4g}" if math.isfinite(a.threshold) else "-",
                f"{a.row:,}",
            ],
        )
        for a in stream.alerts
    ]
    assert [(status, cells[:7]) for status, cells in shown] == expected


def test_the_page_shows_the_statistics_of_the_results(stream: StreamResult, page: str) -> None:
    """Each drifted point's tooltip is the window's statistic and threshold."""
    tips = set(re.findall(r"<title>row ([\d,]+): ([^ ]+) &gt; ([^<]+)</title>", page))
    for window in stream.windows:
        for t in window.tests:
            if t.drifted and t.threshold is not None and window.regime == 0:
                assert (f"{window.last_row:,}", f"{t.statistic:.4g}", f"{t.threshold:.4g}") in tips


def test_hostile_names_are_text_not_markup(page: str) -> None:
    parsed = _parse(page)
    assert "script" not in [tag for tag, _ in parsed.tags]
    assert "b" not in [tag for tag, _ in parsed.tags]
    assert not any(name.startswith("on") for _, attrs in parsed.tags for name in attrs)
    text = "".join(parsed.text)
    assert HOSTILE_COLUMN in text
    assert HOSTILE_CATEGORY in text
    assert HOSTILE_MODEL in text


def test_nothing_is_loaded_from_elsewhere(page: str) -> None:
    parsed = _parse(page)
    linked = [attrs for _, attrs in parsed.tags if "src" in attrs or "href" in attrs]
    assert linked == []
    assert "url(" not in page
    assert "@import" not in page
    # The one address in the page is SVG's namespace name, an identifier never fetched.
    assert set(re.findall(r"https?://[^\s\"'<]+", page)) == {"http://www.w3.org/2000/svg"}


def test_a_single_window_renders(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    reference = build_reference({"x": rng.normal(size=2000)})
    window = compare(reference, {"x": rng.normal(size=500) + 1.0})
    out = render_report(window, tmp_path / "window.html")
    page = out.read_text()
    assert "Column x" in page
    assert page.count("<svg") >= 3
    assert "Alerts: 0 fired" in page


def test_a_thousand_columns_and_windows_stay_small() -> None:
    """The columns past max_columns and the windows past max_windows are left out, said so."""
    columns = [f"c{i}" for i in range(1000)]
    windows = tuple(
        WindowResult(
            model="m",
            version="1",
            profile_id="p",
            first_row=k * 100,
            last_row=k * 100 + 99,
            n_rows=100,
            start_time=None,
            end_time=None,
            tests=tuple(
                TestResult(c, "ks", 0.1 + (k % 7) / 10, 0.3, k % 7 > 2, None, 100) for c in columns
            ),
        )
        for k in range(2000)
    )
    page = to_html(StreamResult(200_000, windows, ()), max_windows=200)
    assert len(page) < 8_000_000
    assert f"{1000 - MAX_COLUMNS:,} of 1,000 columns are not drawn" in page
    assert "latest 200 of 2,000 windows" in page
    assert "c49 and 950 more" in page  # of the drifted columns, named in the overview
    with pytest.raises(ValueError, match="max_windows: must be at least 1"):
        to_html(StreamResult(0, windows[:1], ()), max_windows=0)
    assert page.count("<svg") == MAX_COLUMNS + 1  # and the timeline of drifted columns


def _escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# What the page does in the browser: the SVGs laid out with a size, reported into the DOM
# by a probe appended to a copy of the report (the report itself carries no script).
_PROBE = """<script>
const sized = [...document.querySelectorAll("svg")].filter(s => {
  const box = s.getBoundingClientRect(); return box.width > 0 && box.height > 0; });
const marks = document.querySelectorAll("svg circle.drift, svg rect.bar").length;
document.body.setAttribute("data-probe", `${sized.length} ${marks} ${window.pwned || 0}`);
</script></body>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-headless-shell")
    assert found, "chromium is not installed: `make test` installs Debian's chromium package"
    return found


def _run_chromium(tmp_path: Path, page: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    command = [
        _chromium(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",  # containers run tests as root, where the sandbox cannot start
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        # Networking off: nothing resolves and every connection goes to a closed port.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--proxy-server=127.0.0.1:9",
        *flags,
        page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def test_chromium_reports_console_errors(tmp_path: Path) -> None:
    """The check below can fail: a page with a script error shows in the console lines."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><script>nosuch();</script></body></html>")
    run = _run_chromium(tmp_path, broken, "--dump-dom")
    assert any("nosuch is not defined" in line for line in _console(run.stderr)), run.stderr


def test_chromium_draws_the_report(stream: StreamResult, page: str, tmp_path: Path) -> None:
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", _PROBE, 1))
    run = _run_chromium(tmp_path, probed, "--dump-dom")
    assert run.returncode == 0, run.stderr
    assert _console(run.stderr) == []
    found = re.search(r'data-probe="(\d+) (\d+) (\S+)"', run.stdout)
    assert found, run.stdout[-2000:]
    sized, marks, pwned = int(found[1]), int(found[2]), found[3]
    assert sized == page.count("<svg")
    assert sized >= 2 * len(stream.drifted)
    assert marks > 0
    assert pwned == "0"  # the hostile names ran nothing
    artifacts = Path(os.environ.get("MONITORD_TEST_ARTIFACTS", tmp_path))
    artifacts.mkdir(parents=True, exist_ok=True)
    report, shot = artifacts / "report.html", artifacts / "report.png"
    report.write_text(page)
    taken = _run_chromium(tmp_path, report, f"--screenshot={shot}", "--window-size=1300,2400")
    assert taken.returncode == 0, taken.stderr
    assert _console(taken.stderr) == []
    assert shot.stat().st_size > 10_000  # a drawn page, not a blank one


def test_monitord_report_draws_a_daemons_audit_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "monitord.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    out = tmp_path / "decisions.html"
    assert main(["report", "--config", str(config), "--out", str(out)]) == 0
    assert "No audit log at" in out.read_text()
    rng = np.random.default_rng(8)
    rows = rng.normal(size=(8_000, 2))
    rows[4_000:, 0] += 1.0  # x drifts and stays drifted
    values = [
        orjson.dumps({"model": HOSTILE_MODEL, "features": {"x": x, HOSTILE_COLUMN: y}})
        for x, y in rows.tolist()
    ]
    records = [Record("in", 0, i, b"m", v, 0) for i, v in enumerate(values)]
    settings = parse_config({"detection": {"warmup_events": 2000, "window_size": 1000}})
    audit = AuditLog(tmp_path / "state" / "audit.sqlite")
    Daemon(settings, MemorySource(records), MemorySink(), [audit], lambda m, v: None).drain()
    history, active = audit.history(1000), audit.active()
    audit.close()
    assert main(["report", "--config", str(config), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().err
    page = out.read_text()
    parsed = _parse(page)
    assert "script" not in [tag for tag, _ in parsed.tags]
    text = "".join(parsed.text)
    assert f"{HOSTILE_MODEL} / version unversioned" in text
    alerts = [d for d in history if d.kind == "alert"]
    fired = sum(d.status == "firing" for d in alerts)
    assert f"Alerts: {fired:,} fired, {len(alerts) - fired:,} resolved" in text
    assert len(re.findall(r'<tr class="(?:firing|resolved)">', page)) == len(alerts)
    retrains = [d for d in history if d.kind == "retrain"]
    assert retrains
    assert f"Retrain requests: {len(retrains):,}" in text
    assert all(d.id in text for d in retrains)  # each request with its idempotency key
    assert "columns drifted" in text
    now = text.split("Firing now: ", 1)[1].split(".", 1)[0]
    assert len(now.split(", ")) == len(active)
    assert "keeps no per-window statistics" in text
    assert set(re.findall(r"https?://[^\s\"'<]+", page)) <= {"http://www.w3.org/2000/svg"}
