"""Prometheus and Grafana configuration, offline: promtool checks and rule unit tests, the dashboard is
generated from code, every PromQL expression parses, every panel reads the provisioned data source."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import promql_parser
import pytest
import yaml

from loadtests.dashboards import DASHBOARD_FILE, PANELS, build_dashboard, expressions, render
from loadtests.observability import PROMETHEUS_DIR, render_prometheus_config

REPO_ROOT = Path(__file__).resolve().parents[2]
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian: apt-get install -y prometheus)"
)


def _promtool(*args: str, cwd: Path = PROMETHEUS_DIR) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@needs_promtool
def test_promtool_accepts_the_compose_config_and_the_rules() -> None:
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout + result.stderr
    rules = sorted(str(p) for p in (PROMETHEUS_DIR / "rules").glob("*.yml"))
    result = _promtool("check", "rules", *rules)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_loopback_config(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(render_prometheus_config(triton_metrics="127.0.0.1:18002", gateway="127.0.0.1:18080"))
    result = _promtool("check", "config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = yaml.safe_load(config.read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in rendered["scrape_configs"]}
    assert targets == {"triton": ["127.0.0.1:18002"], "hepsonic-gateway": ["127.0.0.1:18080"]}


@needs_promtool
def test_rule_unit_tests_pass() -> None:
    result = _promtool("test", "rules", "tests/hepsonic-rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_committed_dashboard_is_the_generated_one() -> None:
    assert DASHBOARD_FILE.read_text() == render(), "run: python -m loadtests.dashboards"
    assert json.loads(DASHBOARD_FILE.read_text())["uid"] == "hepsonic-overview"


@pytest.mark.parametrize(("title", "expr"), expressions())
def test_every_dashboard_expression_parses(title: str, expr: str) -> None:
    parsed = promql_parser.parse(expr.replace("$model", ".*"))
    assert parsed is not None, title


def test_a_broken_expression_does_not_parse() -> None:
    with pytest.raises(ValueError):  # noqa: PT011  (the parser's message varies between versions)
        promql_parser.parse("sum by (model (rate(x[1m]))")


def test_dashboard_covers_what_operators_need_and_uses_the_provisioned_source() -> None:
    titles = " | ".join(panel.title for panel in PANELS).lower()
    for topic in ("request rate", "latency percentiles", "queue vs compute", "batch sizes", "failures",
                  "rejections", "gpu utilisation"):  # fmt: skip
        assert topic in titles, topic
    source = yaml.safe_load((GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = source["datasources"][0]["uid"]
    dashboard = build_dashboard()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid
        assert all(target["datasource"]["uid"] == uid for target in panel["targets"])
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "hepsonic.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboard_reads_the_recording_rules_that_exist() -> None:
    recorded = {
        rule["record"]
        for path in (PROMETHEUS_DIR / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    used = {name for _, expr in expressions() for name in recorded if name in expr}
    referenced = {token.split("{")[0] for _, expr in expressions() for token in expr.split() if ":" in token}
    assert referenced <= recorded | {""}, referenced - recorded
    assert "model:hepsonic_triton_queue_us_per_request:rate1m" in used
    assert "model:hepsonic_gateway_latency_seconds:p99_1m" in used
