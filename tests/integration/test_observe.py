"""Observability end to end: a real Prometheus scraping a live server and agents, promtool, one trace per task
across server, agent and container, probes, JSON logs and ``updraft top``.

Nothing here skips: a missing Docker engine or Prometheus fails the test (scripts/prometheus.sh installs
Debian's prometheus when it is absent).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.cluster import BASE_IMAGE, ROOT, Cluster, free_port, wait_for

PROMTOOL = "promtool"
CLIENT_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


# -- helpers ---------------------------------------------------------------------------------------------
class Prometheus:
    """Debian's prometheus, started with scripts/prometheus.sh on a generated config; stopped on exit."""

    def __init__(self, workdir: Path, jobs: dict[str, list[str]], tokens: dict[str, str] | None = None) -> None:
        """``tokens``: job → bearer token for that job's scrapes (the server's /metrics needs a credential)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "UPDRAFT_STATE_DIR": str(workdir / "prometheus")}
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(ROOT / "deploy/prometheus/alerts.yml")],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}],
                 **({"authorization": {"credentials": (tokens or {})[job]}} if job in (tokens or {}) else {})}
                for job, targets in jobs.items()
            ],
        }
        self.config = workdir / "prometheus.yml"
        self.config.write_text(json.dumps(config, indent=2))  # JSON is YAML

    def _script(self, *args: str) -> None:
        subprocess.run(["bash", str(ROOT / "scripts/prometheus.sh"), *args], check=True, env=self.env,
                       stdout=subprocess.DEVNULL, timeout=300)

    def __enter__(self) -> Prometheus:
        self._script("start", str(self.port), str(self.config))
        return self

    def __exit__(self, *exc: object) -> None:
        self._script("stop", str(self.port))

    def query(self, promql: str) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5).json()
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, promql: str, expected: float, timeout: float = 30) -> None:
        wait_for(lambda: self.value(promql) == expected, timeout, 0.5, what=f"{promql} == {expected} "
                 f"(last: {self.value(promql)})")


class DockerSocketProxy:
    """A unix socket forwarding to the real Docker socket, which the test can cut (and restore)."""

    def __init__(self, path: Path, upstream: str = "/var/run/docker.sock") -> None:
        self.path, self.upstream = path, upstream
        self.conns: list[socket.socket] = []
        self.listener: socket.socket | None = None

    def start(self) -> DockerSocketProxy:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen(64)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.upstream)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self.conns.clear()


def promtool(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PROMTOOL, *args], input=stdin, capture_output=True, cwd=cwd, timeout=60)


def start_pair(cluster: Cluster, **server: Any) -> None:
    """A server with the seed's policy, a half-cpu 'obs-edge' origin and a 'obs-cloud' low-util target."""
    cluster.start_server(**server)
    cluster.start_agent("obs-edge", tags=["edge"], cpus="0.5", cpuset="0", memory="1Gi")
    cluster.start_agent("obs-cloud", tags=["low-util"], cpus="1", cpuset="1", memory="2Gi")


def agent_metrics(cluster: Cluster, name: str) -> str:
    return httpx.get(f"http://127.0.0.1:{cluster.agent_ports[name]}/metrics", timeout=5).text


# -- Prometheus and promtool ------------------------------------------------------------------------------
def test_prometheus_sees_the_workload_and_promtool_accepts_the_metrics(cluster: Cluster, tmp_path: Path) -> None:
    start_pair(cluster)
    with cluster.client() as c:
        local = [c.run(image=BASE_IMAGE, command=["true"], origin="obs-edge", timeout=60) for _ in range(2)]
        hog = c.submit(image=BASE_IMAGE, command=["sleep", "120"], origin="obs-edge", offloadable=False,
                       resources={"requests": {"cpu": "500m"}})
        wait_for(lambda: c.get(hog.id).state == "running", 30, what="hog running")
        burst = [c.submit(image=BASE_IMAGE, command=["true"], origin="obs-edge") for _ in range(3)]
        done = [c.wait(t.id, timeout=60) for t in burst]
        c.cancel(hog.id)
        tasks = [*local, *done, c.get(hog.id)]
    assert all(t.state == "succeeded" for t in [*local, *done])
    offloaded = sum(1 for t in tasks if t.current and t.current.placement == "offload")
    kept = sum(1 for t in tasks if t.current and t.current.placement == "local")
    assert offloaded >= 3 and offloaded + kept == len(tasks)

    jobs = {
        "updraft-server": [f"127.0.0.1:{cluster.port}"],
        "updraft-agent": [f"127.0.0.1:{cluster.agent_ports[n]}" for n in ("obs-edge", "obs-cloud")],
    }
    scrape = httpx.post(f"{cluster.url}/v1/tokens", json={"role": "metrics"}, headers=cluster.headers, timeout=10)
    assert scrape.status_code == 201, scrape.text
    with Prometheus(tmp_path, jobs, tokens={"updraft-server": scrape.json()["token"]}) as prom:
        prom.wait_value('sum(up{job=~"updraft-.*"})', 3)
        prom.wait_value('sum(updraft_offload_decisions_total{outcome="offload"})', offloaded)
        prom.wait_value('sum(updraft_offload_decisions_total{outcome="local"})', kept)
        prom.wait_value('updraft_offload_decisions_total{outcome="local",reason="not-offloadable"}', 1)
        prom.wait_value("updraft_tasks_submitted_total", len(tasks))
        prom.wait_value('updraft_tasks_finished_total{state="succeeded"}', 5)
        prom.wait_value('updraft_tasks_finished_total{state="cancelled"}', 1)
        prom.wait_value("sum(updraft_scheduling_latency_seconds_count)", len(tasks))
        prom.wait_value('sum(updraft_agent_attempts_total{node="obs-cloud",result="succeeded"})',
                        sum(1 for t in done if t.current and t.current.node == "obs-cloud"))
        nodes = {r["metric"]["node"] for r in prom.query("updraft_node_cpu_ratio")}
        assert nodes == {"obs-edge", "obs-cloud"}
        assert prom.value('updraft_node_state{node="obs-edge",state="ready"}') == 1
        assert prom.value('updraft_offload_threshold_ratio{resource="cpu"}') == 0.75
        assert prom.value('sum(updraft_api_request_duration_seconds_count{route="/v1/tasks",method="POST"})') == len(
            tasks
        )
        # the workload ran before Prometheus started, so the quantile is over the cumulative buckets, not a rate
        p99 = prom.value("histogram_quantile(0.99, sum by (le) (updraft_scheduling_latency_seconds_bucket))")
        assert p99 is not None and 0 < p99 < 60
        assert (prom.value("sum(updraft_agent_heartbeat_rtt_seconds_count)") or 0) > 0
        groups = httpx.get(f"{prom.url}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {r["name"] for g in groups for r in g["rules"]} >= {"UpdraftNodeUnreachable", "UpdraftOffloadRateHigh"}

    assert httpx.get(cluster.url + "/metrics", timeout=5).status_code == 401  # no credential, no metrics
    for name, text in [("server", httpx.get(cluster.url + "/metrics", timeout=5, headers=cluster.headers).text),
                       ("obs-edge", agent_metrics(cluster, "obs-edge")),
                       ("obs-cloud", agent_metrics(cluster, "obs-cloud"))]:
        checked = promtool("check", "metrics", stdin=text.encode())
        assert checked.returncode == 0 and not checked.stdout.strip(), (name, checked.stdout, checked.stderr)


def test_promtool_checks_and_unit_tests_the_alert_rules(tmp_path: Path) -> None:
    rules = ROOT / "deploy/prometheus"
    checked = promtool("check", "rules", "alerts.yml", cwd=rules)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert b"SUCCESS: 6 rules found" in checked.stdout
    tested = promtool("test", "rules", "alerts_test.yml", cwd=rules)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # promtool checks that the scrape token's file exists: the compose stack's /secrets is stood in for here
    token = tmp_path / "metrics.token"
    token.write_text("a-metrics-token\n")
    (tmp_path / "alerts.yml").write_text((rules / "alerts.yml").read_text())
    config_text = (rules / "prometheus.yml").read_text()
    assert "/secrets/metrics.token" in config_text
    (tmp_path / "prometheus.yml").write_text(config_text.replace("/secrets/metrics.token", str(token)))
    config = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert config.returncode == 0, config.stdout + config.stderr


# -- tracing ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def in_process_server(settings: Any, tracing: Any) -> Iterator[str]:
    import uvicorn

    from updraft.control import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, tracing=tracing), host="127.0.0.1", port=port,
                                           log_level="warning", log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(url + "/ready", timeout=1).status_code == 200, 30, what="in-process server")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


def test_one_trace_spans_server_agent_and_container(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from updraft.agent import Agent
    from updraft.observe import tracing
    from updraft.settings import AgentSettings, ServerSettings

    exporter = InMemorySpanExporter()
    server_tracing = tracing.setup("server", env={}, exporter=exporter)
    agent_tracing = tracing.setup("agent", "obs-trace", env={}, exporter=exporter)
    with in_process_server(ServerSettings(data_dir=tmp_path / "server", auth=False), server_tracing) as url:
        agent = Agent(AgentSettings(server=url, name="obs-trace", data_dir=tmp_path / "agent", cpus="1",
                                    memory="1Gi", load_source="containers"), tracing=agent_tracing)
        agent.start()
        try:
            agent.registered.wait(30)
            from updraft.sdk import Client

            with Client(url) as c:
                resp = httpx.post(url + "/v1/tasks", headers={"traceparent": CLIENT_TRACEPARENT}, json={
                    "image": BASE_IMAGE, "origin": "obs-trace",
                    "command": ["python3", "-c", "import os; print(os.environ['TRACEPARENT'])"]})
                assert resp.status_code == 201, resp.text
                task = c.wait(resp.json()["id"], timeout=60)
                assert task.state == "succeeded", task
                wait_for(lambda: any(s.name == "report" and s.attributes.get("updraft.state") == "exited"
                                     and s.resource.attributes["service.name"] == "updraft-server"
                                     for s in exporter.get_finished_spans()), 15, what="the server's report span")
        finally:
            agent.stop()
    trace_id = CLIENT_TRACEPARENT.split("-")[1]
    spans = [s for s in exporter.get_finished_spans() if f"{s.context.trace_id:032x}" == trace_id]
    by_service: dict[str, set[str]] = {}
    for s in spans:
        by_service.setdefault(s.resource.attributes["service.name"], set()).add(s.name)
    assert by_service["updraft-server"] >= {"submit", "schedule", "report"}
    assert by_service["updraft-agent"] >= {"assign", "pull", "create", "run", "report"}
    seen = task.current.log_tail.strip() if task.current else ""
    run = next(s for s in spans if s.name == "run")
    assert seen == f"00-{trace_id}-{run.context.span_id:016x}-01", "the container continues the run span"
    schedule = next(s for s in spans if s.name == "schedule")
    assert schedule.attributes["updraft.decision"] == "placed-local"


# -- probes ----------------------------------------------------------------------------------------------
def test_agent_ready_goes_503_when_docker_stops_answering(cluster: Cluster, tmp_path: Path) -> None:
    proxy = DockerSocketProxy(tmp_path / "docker.sock").start()
    try:
        cluster.start_server()
        cluster.start_agent("obs-proxy", env={"DOCKER_HOST": f"unix://{proxy.path}"})
        url = f"http://127.0.0.1:{cluster.agent_ports['obs-proxy']}"
        assert httpx.get(url + "/ready", timeout=5).status_code == 200
        proxy.stop()
        wait_for(lambda: httpx.get(url + "/ready", timeout=5).status_code == 503, 20, what="/ready 503")
        body = httpx.get(url + "/ready", timeout=5).json()
        assert body["status"] == "not ready" and "docker" in body["problems"]
        assert httpx.get(url + "/health", timeout=5).status_code == 200  # alive, just not ready
        proxy.start()
        wait_for(lambda: httpx.get(url + "/ready", timeout=5).status_code == 200, 20, what="/ready 200 again")
    finally:
        proxy.stop()


SERVICE = """
import http.server, time
T0 = time.time()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        ok = self.path == '/ready' or time.time() - T0 < 4
        self.send_response(200 if ok else 500)
        self.end_headers()
        self.wfile.write(b'ok' if ok else b'sick')
    def log_message(self, *args):
        pass
print('serving', flush=True)
http.server.HTTPServer(('0.0.0.0', 8080), H).serve_forever()
"""


def test_failing_liveness_probe_restarts_the_container(cluster: Cluster) -> None:
    cluster.start_server()
    cluster.start_agent("obs-probe", cpus="1", memory="1Gi")
    period, threshold = 1.0, 3
    with cluster.client() as c:
        task = c.submit(
            image=BASE_IMAGE, command=["python3", "-c", SERVICE], origin="obs-probe",
            liveness_probe={"kind": "http", "path": "/healthz", "port": 8080, "period_seconds": period,
                            "failure_threshold": threshold, "initial_delay_seconds": 1},
            readiness_probe={"kind": "tcp", "port": 8080, "period_seconds": 0.5},
        )
        wait_for(lambda: (t := c.get(task.id)).current is not None and t.current.ready is True, 30, what="ready")
        running = c.get(task.id)
        assert running.current is not None and running.current.started_at is not None
        restarted = wait_for(lambda: [e for e in c.events(task.id) if e.kind == "restarted"], 30, what="restart")
        after = restarted[0].at - running.current.started_at
        # healthy for 4 s, then the restart only after `threshold` failed checks one period apart
        assert 4 + (threshold - 1) * period <= after <= 4 + threshold * period + 4, after
        assert f"failed {threshold} times" in restarted[0].message and "HTTP 500" in restarted[0].message
        again = wait_for(lambda: (t := c.get(task.id)).current is not None and t.current.ready is True
                         and t.current.restarts >= 1 and t, 30, what="ready after the restart")
        assert again.state == "running" and again.token == running.token  # the same attempt, restarted in place
        assert again.current.container_id == running.current.container_id
        kinds = [e.kind for e in c.events(task.id)]
        assert kinds.index("ready") < kinds.index("restarted")
        metrics = agent_metrics(cluster, "obs-probe")
        assert 'updraft_agent_container_restarts_total{node="obs-probe"} 1.0' in metrics or \
            'updraft_agent_container_restarts_total{node="obs-probe"} 2.0' in metrics
        assert 'probe="liveness",result="failure"' in metrics
        c.cancel(task.id)


# -- logs and top ----------------------------------------------------------------------------------------
def test_json_logs_carry_task_attempt_and_trace(cluster: Cluster) -> None:
    cluster.start_server(log_format="json")
    cluster.start_agent("obs-json", env={"UPDRAFT_LOG_FORMAT": "json"})
    resp = httpx.post(cluster.url + "/v1/tasks", headers={"traceparent": CLIENT_TRACEPARENT, **cluster.headers},
                      json={"image": BASE_IMAGE, "command": ["true"], "origin": "obs-json"})
    with cluster.client() as c:
        task = c.wait(resp.json()["id"], timeout=60)
    assert task.state == "succeeded"
    trace_id = CLIENT_TRACEPARENT.split("-")[1]
    fields = {"timestamp", "level", "component", "node", "task_id", "attempt", "trace_id", "message"}

    def lines(name: str) -> list[dict[str, Any]]:
        out = [json.loads(ln) for ln in (cluster.dir / name).read_text().splitlines() if ln.strip()]
        assert all(fields <= set(o) for o in out)
        return out

    agent = wait_for(lambda: [o for o in lines("agent-obs-json.log") if o["task_id"] == task.id
                              and "attempt succeeded" in o["message"]], 15, what="agent attempt log line")
    assert agent[0]["attempt"] == task.token and agent[0]["trace_id"] == trace_id
    assert agent[0]["component"] == "agent" and agent[0]["node"] == "obs-json"
    server = [o for o in lines("server.log") if o["task_id"] == task.id]
    assert {"submitted", "placed-local", "succeeded"} <= {o["message"].split(":")[0] for o in server}
    assert all(o["component"] == "server" for o in server)


def test_updraft_top_shows_load_against_thresholds_and_where_tasks_ran(cluster: Cluster) -> None:
    start_pair(cluster)
    with cluster.client() as c:
        hog = c.submit(image=BASE_IMAGE, command=["sleep", "60"], origin="obs-edge", offloadable=False,
                       resources={"requests": {"cpu": "500m"}})
        wait_for(lambda: c.get(hog.id).state == "running", 30, what="hog running")
        moved = c.run(image=BASE_IMAGE, command=["true"], origin="obs-edge", timeout=60)
        out = subprocess.run([sys.executable, "-m", "updraft.main", "top", "--once", "--server", cluster.url],
                             capture_output=True, text=True, timeout=60, env={**cluster.env(), "COLUMNS": "220"})
        c.cancel(hog.id)
    assert out.returncode == 0, out.stderr
    screen = out.stdout
    assert "obs-edge" in screen and "obs-cloud" in screen and "/ 75%" in screen and "/ 80%" in screen
    assert moved.id in screen and "obs-edge → obs-cloud" in screen and "offload" in screen
    assert "offloaded: origin cpu" in screen
