"""deploy/ checked without running it: the compose stack's shape, and every dashboard and alert query names a
metric that the server or an agent really exposes."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from updraft.control import create_app
from updraft.observe.metrics import AgentMetrics
from updraft.settings import ServerSettings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "irate", "histogram_quantile", "and",
    "or", "unless", "on", "ignoring", "clamp_min", "clamp_max", "le", "topk", "bottomk", "abs", "delta", "offset",
}


def exposed_names(text: str) -> set[str]:
    """Series names an exposition can produce: histograms expand to _bucket, _sum and _count."""
    names: set[str] = set()
    for kind_line in re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M):
        name, kind = kind_line
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        if kind == "counter" and not name.endswith("_total"):
            names.add(f"{name}_total")
    return names


def server_exposition(tmp_path: Path) -> str:
    with TestClient(create_app(ServerSettings(data_dir=tmp_path, auth=False))) as api:
        api.put("/v1/nodes/n1", json={"capacity": {"cpu": "1", "memory": "1Gi"}})
        return str(api.get("/metrics").text)


def agent_exposition() -> str:
    from prometheus_client import generate_latest

    metrics = AgentMetrics("edge-1")
    fake = SimpleNamespace(watched={}, cpu_pct=10.0, memory_pct=20.0, cpu_millis=500, memory_bytes=1 << 30,
                           outbox=[], registered=threading.Event(), cut_off=False)
    metrics.bind(fake)  # type: ignore[arg-type]
    return generate_latest(metrics.registry).decode()


@pytest.fixture(scope="module")
def metric_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    names = exposed_names(server_exposition(tmp_path_factory.mktemp("server"))) | exposed_names(agent_exposition())
    return names | {"up"}  # Prometheus's own per-target series


def metrics_in(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values are not metric names
    expr = re.sub(r"\{[^}]*\}", "", expr)  # nor are label names inside selectors
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # nor range durations
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # nor grouping labels
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", expr))
    return {w for w in words if w not in PROMQL_WORDS}


def test_every_metric_family_follows_prometheus_conventions(metric_names: set[str]) -> None:
    ours = {n for n in metric_names if n.startswith("updraft_")}
    assert len(ours) > 40
    for name in ours:
        assert re.fullmatch(r"updraft_[a-z0-9_]+", name), name
        assert not name.endswith(("_milliseconds", "_ms", "_percent", "_pct", "_kb", "_mb")), name


def test_dashboard_loads_and_names_only_existing_metrics(metric_names: set[str]) -> None:
    dash = json.loads((DEPLOY / "grafana/dashboards/updraft.json").read_text())
    assert dash["uid"] and dash["panels"]
    titles = {p["title"] for p in dash["panels"]}
    for wanted in ("Tasks by state", "Offload decisions over time", "Node cpu (ratio of capacity)",
                   "Node memory (ratio of capacity)", "Scheduling latency", "Migrations and retries"):
        assert wanted in titles
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert any(re.search(r"rate\(updraft_\w+_total\[5m\]\)", e) for e in exprs)
    assert any("histogram_quantile(0.99" in e for e in exprs)
    for expr in exprs:
        missing = metrics_in(expr) - metric_names
        assert not missing, f"{expr!r} names {missing}, which nothing exposes"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def test_alert_rules_name_only_existing_metrics(metric_names: set[str]) -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert {"UpdraftNodeUnreachable", "UpdraftOffloadRateHigh", "UpdraftTaskFailureRateHigh",
            "UpdraftSchedulingLatencyHigh"} <= set(alerts)
    for name, rule in alerts.items():
        missing = metrics_in(rule["expr"]) - metric_names
        assert not missing, f"{name} names {missing}"
        assert rule["annotations"]["summary"] and rule["labels"]["severity"]


def test_compose_stack_shape() -> None:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"server", "agent-edge", "agent-cloud", "prometheus", "grafana"} <= set(services)
    agents = [s for s in services.values() if s.get("command", [""])[0] == "agent"]
    assert len(agents) == 2
    for agent in agents:
        assert "/var/run/docker.sock:/var/run/docker.sock" in agent["volumes"]
        assert agent["environment"]["UPDRAFT_SERVER"] == "http://server:8470"
        assert agent["environment"]["UPDRAFT_HOST"] == "0.0.0.0"
        assert agent["environment"]["UPDRAFT_TOKEN_FILE"].startswith("/secrets/")  # a node token of its own
        assert agent["depends_on"]["tokens"]["condition"] == "service_completed_successfully"
        assert agent["environment"]["UPDRAFT_METRICS_TOKEN_FILE"] == "/secrets/metrics.token"
    assert "--log-format" in services["server"]["command"]
    assert "--insecure-http" in services["server"]["command"]  # plain HTTP only on the stack's own network
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), volume
    prom = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    port = str(agents[0]["environment"]["UPDRAFT_PORT"])
    assert targets == {"server:8470", f"agent-edge:{port}", f"agent-cloud:{port}"}
    assert prom["rule_files"] == ["alerts.yml"]
    server_job = next(j for j in prom["scrape_configs"] if j["job_name"] == "updraft-server")
    assert server_job["authorization"]["credentials_file"] == "/secrets/metrics.token"
    seed = json.loads((DEPLOY / "server.json").read_text())
    assert seed == {"scheduler": "offload", "enable_offload": True, "threshold_cpu": 75, "threshold_memory": 80,
                    "target_node_tags": ["edge", "low-util"]}
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    dash = json.loads((DEPLOY / "grafana/dashboards/updraft.json").read_text())
    uids = {p["datasource"]["uid"] for p in dash["panels"]}
    assert uids == {datasource["datasources"][0]["uid"]}
