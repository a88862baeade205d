"""The deployment files, checked without a Docker engine or a Kubernetes cluster: compose
(`docker-compose config` where installed, and its structure), nginx, Prometheus, the Grafana
dashboard against the metrics the app really serves, the Dockerfile, and the Helm chart's
values and templates (no helm binary is packaged here to render it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import opusagent
from opusagent.config import Settings, settings_table
from opusagent.telemetry import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "opusagent"
APPS = {"app1", "app2"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


def served_metric_names() -> set[str]:
    """Every sample name /metrics can show (histogram and counter suffixes included)."""
    return {
        sample_name
        for family in Metrics().registry.collect()
        for sample_name in (
            family.name,
            f"{family.name}_total",
            f"{family.name}_bucket",
            f"{family.name}_sum",
            f"{family.name}_count",
        )
    }


def test_compose_file_is_valid_for_docker_compose() -> None:
    if shutil.which("docker-compose") is None:
        message = "docker-compose is not installed (Debian package docker-compose)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        ["docker-compose", "-f", str(DEPLOY / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_runs_two_apps_behind_nginx_with_the_stores_and_monitoring() -> None:
    services = compose()["services"]

    assert set(services) == APPS | {"nginx", "redis", "postgres", "prometheus", "grafana"}
    for name in APPS:
        app = services[name]
        assert app["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        env = app["environment"]
        assert env["OPUSAGENT_REDIS_URL"].startswith("redis://redis:")
        assert env["OPUSAGENT_DATABASE_URL"].startswith("postgresql+asyncpg://")
        grace = int(app["stop_grace_period"].removesuffix("s"))
        assert grace > float(env["OPUSAGENT_DRAIN_TIMEOUT_S"]), "live calls finish first"
        Settings.model_validate({"drain_timeout_s": env["OPUSAGENT_DRAIN_TIMEOUT_S"]})
    mounted = [Path(v.split(":")[0]) for s in services.values() for v in s.get("volumes", [])]
    for path in mounted:
        if path.parts[0] == ".":
            assert (DEPLOY / path).exists(), f"compose mounts {path}, which is missing"


def test_nginx_balances_both_apps_and_passes_websockets() -> None:
    conf = (DEPLOY / "nginx.conf").read_text()

    assert set(re.findall(r"server (app\d):8080;", conf)) == APPS
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $connection_upgrade;" in conf
    assert re.search(r"proxy_read_timeout (\d+)s;", conf)
    assert "http_503" in conf, "a draining instance's refusal is retried on the other"


def test_prometheus_scrapes_every_app() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]

    assert job["metrics_path"] == "/metrics"
    assert {t.split(":")[0] for t in job["static_configs"][0]["targets"]} == APPS


def test_the_grafana_dashboard_charts_only_metrics_the_app_serves() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "opusagent.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\b(opusagent_[a-z_]+)", expr)}
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "opusagent.yml").read_text()
    )

    assert used <= served_metric_names()
    assert len(used) >= 12
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dockerfile_is_multi_stage_non_root_and_runs_the_build_script() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE)

    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime", 1)[1]
    assert re.search(r"^USER opusagent$", runtime, re.MULTILINE)
    for step in ("deps", "project", "check"):
        assert f"deploy/build-venv.sh {step} /opt/venv" in text
    for sources in copied:
        for source in sources.split():
            assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is missing"


# --- the Helm chart --------------------------------------------------------------------------


def chart_values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return loaded


def templates() -> dict[str, str]:
    return {path.name: path.read_text() for path in (CHART / "templates").iterdir()}


def test_chart_metadata_names_this_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())

    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "opusagent"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert chart["appVersion"] == opusagent.__version__


def test_chart_templates_use_only_defined_values_and_helpers() -> None:
    values = chart_values()
    texts = templates()
    helpers = set(re.findall(r'define "([^"]+)"', texts["_helpers.tpl"]))

    for name, text in texts.items():
        for path in re.findall(r"\.Values((?:\.[A-Za-z_]\w*)+)", text):
            node: Any = values
            for key in path.strip(".").split("."):
                assert isinstance(node, dict) and key in node, f"{name}: .Values{path} undefined"
                node = node[key]
        for used in re.findall(r'include "([^"]+)"', text):
            assert used in helpers, f"{name}: include {used!r} is not defined"
        assert text.count("{{") == text.count("}}"), f"{name}: unbalanced template braces"
        opened = len(re.findall(r"\{\{-? *(?:if|range|with|define)\b", text))
        assert opened == len(re.findall(r"\{\{-? *end *-?\}\}", text)), f"{name}: unclosed block"


def test_chart_has_the_kubernetes_objects_a_deployment_needs() -> None:
    kinds = {
        re.search(r"^kind: (\w+)$", text, re.MULTILINE).group(1): text  # type: ignore[union-attr]
        for name, text in templates().items()
        if name.endswith(".yaml")
    }

    assert set(kinds) == {
        "Deployment",
        "Service",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
    }
    assert "apiVersion: autoscaling/v2" in kinds["HorizontalPodAutoscaler"]
    assert "apiVersion: policy/v1" in kinds["PodDisruptionBudget"]
    assert re.search(r"readinessProbe:\s+httpGet:\s+path: /ready", kinds["Deployment"])
    assert "runAsNonRoot: true" in kinds["Deployment"]


def test_chart_values_drain_before_the_kill_and_scale_on_live_calls() -> None:
    values = chart_values()
    hpa = templates()["hpa.yaml"]
    annotations = values["ingress"]["annotations"]

    assert values["terminationGracePeriodSeconds"] > values["drainTimeoutSeconds"]
    assert f"name: {Metrics().active_calls._name}" in hpa
    assert "name: cpu" in hpa
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert set(values["env"]) <= {row.env_var for row in settings_table()}
