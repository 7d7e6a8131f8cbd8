"""The files under deploy/, checked by the tools that will read them.

promtool (Debian package ``prometheus``, installed by scripts/test.sh) checks and unit-tests
the alerting rules, checks the scrape config and lints what the sidecar exports; without
it these tests skip, except in CI (``CI=true``), where they fail. The rules, their tests
and the dashboard may only name metrics the sidecar's registry really exports.
systemd-analyze, where present, verifies the unit file.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from detector.cli import _parser
from detector.live.metrics import Flagged, Metrics
from detector.settings import Settings, load
from tests.conftest import unavailable

ROOT = Path(__file__).parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules.yml"
RULE_TESTS = PROMETHEUS / "rules.test.yml"
PROMETHEUS_CONFIG = PROMETHEUS / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboard.json"
UNIT = ROOT / "deploy" / "systemd" / "trovewatch.service"
SETTINGS_EXAMPLE = ROOT / "deploy" / "trovewatch.toml.example"
SOURCE = "/var/log/postgresql/*.json"
DS = "${DS_PROMETHEUS}"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool's path; a skip without it, or a failure in CI, where it must be installed."""
    path = shutil.which("promtool")
    if path is None:
        unavailable("promtool not found (Debian package prometheus)")
    return path


@pytest.fixture(scope="module")
def exposition() -> str:
    """The text /metrics serves, with every metric family given at least one sample."""
    m = Metrics()
    m.events.labels(SOURCE, "pgaudit-jsonlog").inc(1200)
    m.lines.labels(SOURCE).inc(2500)
    m.rejected.labels("truncated").inc(3)
    m.late.inc(2)
    m.windows.inc(40)
    m.alerts.labels("critical").inc()
    m.latency.observe(0.4)
    m.scoring.observe(0.02)
    m.model_trained.set(1_792_368_000)
    m.model_loaded.set(1_793_577_600)
    m.last_event.labels(SOURCE).set(1_793_577_590)
    m.last_read.labels(SOURCE).set(1_793_577_600)
    m.checkpoint_lag.labels(SOURCE).set(4096)
    m.archives_damaged.labels(SOURCE).set(1)
    m.files_unreadable.labels(SOURCE).set(1)
    m.zone_guessed.labels("CST").inc(40)
    m.checkpoint_time.set(1_793_577_600)
    m.storage_ok.set(1)
    m.open_windows.set(12)
    m.accounts.set(7)
    m.watch_flagged(lambda: [Flagged("web_shop", "critical", 0.97)], 50)
    return generate_latest(m.registry).decode()


def exported(exposition: str) -> dict[str, set[str]]:
    """Sample name -> the label names it carries, from an exposition."""
    names: dict[str, set[str]] = {}
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
            assert name is not None, line
            names.setdefault(name.group(0), set()).update(re.findall(r'(\w+)="', line))
    return names


# PromQL words that are not metric names when not followed by "(".
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2", "by", "without"}


def metric_names(promql: str) -> set[str]:
    """The metric names a PromQL expression selects; Grafana variables may be in it."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', promql)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for word in re.finditer(r"(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if word.group(0) in KEYWORDS or text[word.end() :].lstrip().startswith("("):
            continue
        names.add(word.group(0))
    return names


def rule_exprs(text: str) -> list[str]:
    """Every ``expr:`` of a rules file, single-line or block (no YAML parser needed)."""
    lines = text.splitlines()
    exprs = []
    for i, line in enumerate(lines):
        found = re.match(r"^(\s*)expr:\s*(.*)$", line)
        if found is None:
            continue
        indent, value = len(found.group(1)), found.group(2).strip()
        if value in ("|", "|-", ">", ">-"):
            body = []
            for following in lines[i + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                body.append(following.strip())
            value = " ".join(body)
        exprs.append(value.strip("'\""))
    return exprs


def template_queries(text: str) -> list[str]:
    """The PromQL of ``printf "..." ... | query`` in annotation templates."""
    return [
        m.replace('\\"', '"') for m in re.findall(r'printf "((?:[^"\\]|\\.)*)"[^}]*\| query', text)
    ]


def alert_names(text: str) -> list[str]:
    return re.findall(r"^\s*- alert: (\w+)\s*$", text, flags=re.M)


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows are only headings), nested rows included."""
    found = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def dashboard_exprs(board: dict[str, Any]) -> list[str]:
    """The PromQL of every panel target and query variable (``label_values(expr, label)``,
    Grafana's own function, as its ``expr``)."""
    exprs = [t["expr"] for p in panels(board) for t in p["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            query = query["query"] if isinstance(query, dict) else query
            exprs.append(re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", query))
    return exprs


# ------------------------------------------------------------------------- promtool


def test_rules_pass_promtool_check_and_lint(promtool: str) -> None:
    result = run(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    n = len(alert_names(RULES.read_text()))
    assert f"SUCCESS: {n} rules found" in result.stdout


def test_rule_unit_tests_pass(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    tests = RULE_TESTS.read_text()
    for alert in alert_names(RULES.read_text()):
        fires = re.search(rf"alertname: {alert}\n\s+exp_alerts:\n\s+- exp_labels:", tests)
        silent = re.search(rf"alertname: {alert}\n\s+exp_alerts: \[\]", tests)
        assert fires, f"no test expects {alert} to fire"
        assert silent, f"no test expects {alert} to stay silent"


def test_every_alert_has_a_row_in_the_operators_guide() -> None:
    """An SRE paged by an alert finds what it means and what to do in docs/operations.md."""
    guide = (ROOT / "docs" / "operations.md").read_text()
    rows = set(re.findall(r"^\| `(Trovewatch\w+)` \|", guide, flags=re.MULTILINE))
    assert set(alert_names(RULES.read_text())) <= rows


def test_example_scrape_config_loads_the_rules(promtool: str) -> None:
    result = run(promtool, "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    assert f"SUCCESS: {len(alert_names(RULES.read_text()))} rules found" in result.stdout


def test_commented_bearer_token_option_is_valid_config(promtool: str, tmp_path: Path) -> None:
    token = tmp_path / "trovewatch.token"
    token.write_text("not-a-real-token\n")
    text = PROMETHEUS_CONFIG.read_text()
    option = re.search(r"^    # authorization:\n(?:^    #   .*\n)+", text, flags=re.M)
    assert option is not None, "the commented authorization block is gone"
    enabled = option.group(0).replace("    #   ", "      ").replace("    # ", "    ")
    enabled = re.sub(r"credentials_file: .*", f"credentials_file: {token}", enabled)
    (tmp_path / "prometheus.yml").write_text(text.replace(option.group(0), enabled))
    shutil.copy(RULES, tmp_path / "rules.yml")
    result = run(promtool, "check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_exported_metrics_pass_promtool_lint(promtool: str, exposition: str) -> None:
    result = run(promtool, "check", "metrics", stdin=exposition)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    """Each dashboard query, Grafana variables filled in, as a recording rule promtool parses."""
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(dashboard_exprs(dashboard())):
        promql = expr.replace("$__rate_interval", "5m").replace("$instance", ".*")
        assert "$" not in promql, f"unknown Grafana variable in {expr}"
        rules += [f"      - record: dashboard_query_{i}", f"        expr: {json.dumps(promql)}"]
    (tmp_path / "dashboard-rules.yml").write_text("\n".join(rules) + "\n")
    result = run(promtool, "check", "rules", "--lint=none", str(tmp_path / "dashboard-rules.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------ names against the registry


def test_every_metric_family_is_in_the_fixture(exposition: str) -> None:
    """So the name checks below see every metric the sidecar can export."""
    families = re.findall(r"^# TYPE (\S+) ", exposition, flags=re.M)
    samples = exported(exposition)
    for family in families:
        assert any(s == family or s.startswith(family + "_") for s in samples), family


def test_rules_and_dashboard_name_only_exported_metrics(exposition: str) -> None:
    samples = set(exported(exposition))
    rules = RULES.read_text()
    exprs = rule_exprs(rules)
    assert len(exprs) == len(alert_names(rules))
    used = {
        "rules.yml": set().union(*map(metric_names, exprs + template_queries(rules))),
        "dashboard.json": set().union(*map(metric_names, dashboard_exprs(dashboard()))),
    }
    for where, names in used.items():
        assert names, where
        assert names - {"up"} <= samples, f"{where} names {sorted(names - {'up'} - samples)}"
    assert {"trovewatch_flagged_account", "trovewatch_events_total"} <= used["rules.yml"]


def test_rule_test_inputs_look_like_the_exporter(exposition: str) -> None:
    """Input series of rules.test.yml: real names, real labels, plus the scrape's own."""
    samples = exported(exposition)
    series = re.findall(r"series: '([^']*)'", RULE_TESTS.read_text())
    assert series
    for one in series:
        name = one.split("{")[0]
        labels = set(re.findall(r'(\w+)="', one)) - {"job", "instance"}
        assert name == "up" or name in samples, one
        assert name == "up" or labels <= samples[name], f"{one}: unknown labels"


def test_metric_name_extraction() -> None:
    expr = (
        'sum by (job, source) (rate(a_total{reason=~"x|y"}[5m])) / ignoring (le) '
        'b_bytes > 1e3 unless on (job) count(c offset 5m) and time() - d{i=~"$instance"} '
        "> 30 * 86400"
    )
    assert metric_names(expr) == {"a_total", "b_bytes", "c", "d"}


# ------------------------------------------------------------------------- Grafana


def test_dashboard_is_importable_and_every_panel_queries_prometheus() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36 and board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    shown = panels(board)
    assert len(shown) >= 10
    for panel in shown:
        assert panel["datasource"] == {"type": "prometheus", "uid": DS}, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == DS, panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    ids = [p["id"] for p in board["panels"]] + [p["id"] for p in shown if p not in board["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_panels_fit_the_grid_without_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_dashboard_covers_what_an_operator_needs() -> None:
    exprs = " ".join(dashboard_exprs(dashboard()))
    for needed in (
        "sort_desc(trovewatch_flagged_account",
        "trovewatch_flagged_accounts_omitted",
        "sum by (source, format) (rate(trovewatch_events_total",
        "sum by (reason) (rate(trovewatch_lines_rejected_total",
        "histogram_quantile(0.99, sum by (le) (rate(trovewatch_score_latency_seconds_bucket",
        "trovewatch_scoring_duration_seconds_bucket",
        "time() - max by (instance) (trovewatch_model_trained_timestamp_seconds",
        "trovewatch_checkpoint_lag_bytes",
        "trovewatch_storage_writable",
        "sum by (severity) (increase(trovewatch_alerts_total",
    ):
        assert needed in exprs, needed


# ------------------------------------------------------------------ settings and systemd


def test_settings_example_loads_and_its_commented_values_are_the_defaults() -> None:
    conf = load(SETTINGS_EXAMPLE)
    assert conf.state_dir == Path("/var/lib/trovewatch")
    assert conf.follow and conf.format == "pgaudit-jsonlog"
    defaults = Settings()
    lines = re.findall(r"^# ((\w+) = .+?)(?:\s{2,}#.*)?$", SETTINGS_EXAMPLE.read_text(), re.M)
    commented = [line for line, key in lines if key in Settings.model_fields]
    assert len(commented) >= 10
    for line in commented:
        ((key, value),) = tomllib.loads(line).items()
        assert getattr(defaults, key) == value, line


def unit_value(key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", UNIT.read_text(), flags=re.M)


def test_unit_runs_the_documented_command_with_a_cli_that_accepts_it() -> None:
    (exec_start,) = unit_value("ExecStart")
    binary, *args = exec_start.split()
    assert binary == "/opt/trovewatch/.venv/bin/trovewatch"
    parsed = _parser().parse_args(args)
    assert parsed.config == Path("/etc/trovewatch/trovewatch.toml")
    assert unit_value("StateDirectory") == ["trovewatch"]
    assert unit_value("EnvironmentFile") == ["-/etc/trovewatch/env"]
    assert unit_value("CapabilityBoundingSet") == [""]


@pytest.fixture(scope="module")
def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze not found (Debian package systemd)")
    return path


def unit_with_local_binary(tmp_path: Path) -> Path:
    """The unit with its binary pointed at this checkout's (verify checks that it exists)."""
    binary = Path(sys.executable).parent / "trovewatch"
    if not binary.exists():
        pytest.skip(f"{binary} not installed (uv sync)")
    unit = tmp_path / "trovewatch.service"
    unit.write_text(UNIT.read_text().replace("/opt/trovewatch/.venv/bin/trovewatch", str(binary)))
    return unit


def test_systemd_accepts_the_unit(systemd_analyze: str, tmp_path: Path) -> None:
    result = run(systemd_analyze, "verify", str(unit_with_local_binary(tmp_path)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trovewatch" not in result.stdout + result.stderr
    # The unit as shipped: its only possible complaint is a trovewatch not yet installed.
    result = run(systemd_analyze, "verify", str(UNIT))
    output = (result.stdout + result.stderr).splitlines()
    complaints = [line for line in output if "trovewatch" in line]  # not the host's units
    missing = "Command /opt/trovewatch/.venv/bin/trovewatch is not executable"
    assert all(missing in line for line in complaints), complaints


def test_unit_exposure_is_ok(systemd_analyze: str, tmp_path: Path) -> None:
    unit = unit_with_local_binary(tmp_path)
    result = run(systemd_analyze, "security", "--offline=yes", "--no-pager", str(unit))
    if "--offline" in result.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd 250+")
    level = re.search(r"Overall exposure level for trovewatch\.service: ([\d.]+)", result.stdout)
    assert level is not None, result.stdout + result.stderr
    assert float(level.group(1)) <= 2.0, result.stdout
