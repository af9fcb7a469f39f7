"""Real processes for integration tests, chaos tests, benchmarks and the demo.

``Cluster`` starts a real ``updraft server`` and real ``updraft agent`` processes (the same entry point a
user runs) against the real Docker engine, and can kill, pause and restart them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
BASE_IMAGE = "updraft/base:bookworm"
NOOP_IMAGE = "updraft/noop:latest"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last error on timeout
            last = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last})" if last else ""))


def ensure_docker() -> None:
    """Start the engine and build the base images with the project's own scripts; fail loudly if impossible."""
    subprocess.run(["bash", str(ROOT / "scripts/ensure-docker.sh")], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["bash", str(ROOT / "scripts/build-base-image.sh")], check=True, stdout=subprocess.DEVNULL)


class Proc:
    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.log_path = args, log
        self.env = {**os.environ, **(env or {})}
        self.popen: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env,
                                      start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen is None:
            return
        if self.alive():
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._log.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        return ""


class Cluster:
    """A server and any number of agents, each a real process, in a temporary directory."""

    def __init__(self, workdir: Path | None = None, server_config: dict[str, Any] | None = None) -> None:
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="updraft-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cluster_id = f"test-{self.port}"
        self.server_config = server_config or {}
        self.admin_token: str | None = None
        """The server's first-start admin token (DATA_DIR/admin.token), read once the server is up."""
        self.server: Proc | None = None
        self.agents: dict[str, Proc] = {}
        self.agent_ports: dict[str, int] = {}
        self.agent_tokens: dict[str, str] = {}

    def _cli(self) -> list[str]:
        return [sys.executable, "-m", "updraft.main"]

    def start_server(self, prefix: list[str] | None = None, **extra: Any) -> Proc:
        import json

        cfg = self.dir / "server.json"
        cfg.write_text(json.dumps({**self.server_config, **extra}))
        self.server = Proc([*(prefix or []), *self._cli(), "server", "--port", str(self.port), "--data-dir", str(self.dir / "server"),
                            "--config", str(cfg)], self.dir / "server.log")
        self.wait_ready()
        self.read_admin_token()
        return self.server

    def read_admin_token(self) -> str | None:
        """Authentication is on by default: the tests act as the admin the server created at its first start."""
        path = self.dir / "server" / "admin.token"
        if path.exists():
            self.admin_token = path.read_text().strip()
        return self.admin_token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else {}

    def env(self) -> dict[str, str]:
        """Environment for a CLI process run against this cluster (the token never goes in argv)."""
        return {**os.environ, "UPDRAFT_SERVER": self.url, **({"UPDRAFT_TOKEN": self.admin_token} if self.admin_token else {})}

    def new_token(self, role: str, node: str | None = None) -> str:
        """What `updraft token create --role ROLE [--node NAME]` prints."""
        import httpx

        body = {"role": role, **({"node": node} if node else {})}
        r = httpx.post(f"{self.url}/v1/tokens", json=body, headers=self.headers, timeout=10)
        r.raise_for_status()
        return str(r.json()["token"])

    def node_token(self, name: str) -> str | None:
        """A node token that acts only as ``name`` (none while the server runs without authentication)."""
        return self.new_token("node", name) if self.admin_token else None

    def wait_ready(self, timeout: float = 30) -> None:
        import httpx

        def ready() -> bool:
            assert self.server is not None
            if not self.server.alive():
                raise RuntimeError("server exited:\n" + self.server.tail())
            return httpx.get(self.url + "/ready", timeout=1).status_code == 200

        wait_for(ready, timeout, what="server ready")

    def start_agent(self, name: str, *, tags: list[str] | None = None, labels: dict[str, str] | None = None,
                    taints: list[str] | None = None, cpus: str | None = None, memory: str | None = None,
                    cpuset: str | None = None, load_source: str = "containers", server: str | None = None,
                    cpu_excess: str | None = None, wait: bool = True, env: dict[str, str] | None = None, prefix: list[str] | None = None,
                    allow_host_paths: list[str] | None = None, extra: list[str] | None = None) -> Proc:
        """``allow_host_paths``: what tasks may bind-mount (default: this cluster's directory, where tests keep
        their ledgers); ``extra``: more ``updraft agent`` flags."""
        port = self.agent_ports.setdefault(name, free_port())
        args = [*(prefix or []), *self._cli(), "agent", "--name", name, "--cluster", self.cluster_id, "--server", server or self.url,
                "--port", str(port),
                "--data-dir", str(self.dir / "agents"), "--load-source", load_source]
        for tag in tags or []:
            args += ["--tags", tag]
        for k, v in (labels or {}).items():
            args += ["--labels", f"{k}={v}"]
        for t in taints or []:
            args += ["--taints", t]
        for flag, value in (("--cpus", cpus), ("--memory", memory), ("--cpuset", cpuset), ("--cpu-excess", cpu_excess)):
            if value:
                args += [flag, value]
        for path in [str(self.dir)] if allow_host_paths is None else allow_host_paths:
            args += ["--allow-host-path", path]
        args += extra or []
        token = self.node_token(name) if name not in self.agent_tokens else self.agent_tokens[name]
        if token:
            self.agent_tokens[name] = token
        creds = {"UPDRAFT_TOKEN": token} if token else {}
        if token and (any(flag.startswith("--docker-api") for flag in extra or []) or "UPDRAFT_DOCKER_API" in (env or {})):
            creds["UPDRAFT_DOCKER_API_TOKEN"] = self.new_token("submitter")
        proc = Proc(args, self.dir / f"agent-{name}.log", env={**creds, **(env or {})})
        self.agents[name] = proc
        if wait:
            self.wait_node(name)
        return proc

    def wait_node(self, name: str, state: str = "ready", timeout: float = 30) -> None:
        import httpx

        def check() -> bool:
            proc = self.agents.get(name)
            if proc is not None and not proc.alive():
                raise RuntimeError(f"agent {name} exited:\n" + proc.tail())
            r = httpx.get(f"{self.url}/v1/nodes/{name}", timeout=1, headers=self.headers)
            return r.status_code == 200 and r.json()["state"] == state

        try:
            wait_for(check, timeout, what=f"node {name} {state}")
        except TimeoutError as exc:  # say why: the agent's and the server's last lines
            agent, server = self.agents.get(name), self.server
            tails = [f"{what} log:\n{p.tail(15)}" for what, p in (("agent", agent), ("server", server)) if p]
            raise TimeoutError("\n".join([str(exc), *tails])) from None

    def client(self) -> Any:
        from updraft.sdk import Client

        return Client(self.url, token=self.admin_token)

    def close(self) -> None:
        for proc in self.agents.values():
            proc.stop()
        if self.server is not None:
            self.server.stop()
        cleanup_containers(self.cluster_id)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cleanup_containers(cluster: str | None = None) -> None:
    """Remove the containers agents of ``cluster`` started (all updraft containers if None)."""
    label = f"label=updraft.cluster={cluster}" if cluster else "label=updraft.task"
    out = subprocess.run(["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True)
    ids = out.stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
