"""Real processes for the HA tests, bench and demo: a 3-member etcd (``scripts/etcd.sh``), several
``updraft server`` processes on it, nginx in front (``scripts/nginx.sh``), and agents.

``HaCluster`` reuses :class:`tests.cluster.Cluster` for the agents (pointed at every server, or at nginx) and
adds the servers; each server is a :class:`Proc`, so a test can ``kill9`` it, ``SIGSTOP`` it and resume it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx

from tests.cluster import ROOT, Cluster, Proc, free_port, wait_for


class EtcdCluster:
    """Three etcd members on loopback, started and stopped with ``scripts/etcd.sh``."""

    def __init__(self, workdir: Path, base: int | None = None) -> None:
        self.base = base or _free_base()
        self.dir = workdir / f"etcd-{self.base}"
        self.env = {**os.environ, "UPDRAFT_ETCD_DIR": str(self.dir)}
        self.endpoints = [f"http://127.0.0.1:{self.base + m}" for m in range(3)]

    def _script(self, *args: str) -> str:
        out = subprocess.run(["bash", str(ROOT / "scripts/etcd.sh"), *args], env=self.env, check=True,
                             capture_output=True, text=True)
        return out.stdout

    def start(self) -> EtcdCluster:
        self._script("start", str(self.base))
        return self

    def stop(self) -> None:
        self._script("stop", str(self.base))

    def kill_member(self, member: int) -> None:
        self._script("kill-member", str(member), str(self.base))

    def start_member(self, member: int) -> None:
        self._script("start-member", str(member), str(self.base))

    def healthy(self, member: int) -> bool:
        try:
            return bool(httpx.get(f"{self.endpoints[member]}/health", timeout=1).json().get("health") == "true")
        except (httpx.HTTPError, ValueError):
            return False

    def __enter__(self) -> EtcdCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_base() -> int:
    """A base port with the 3 client and 3 peer ports after it free (a random pick, checked)."""
    import socket

    for _ in range(50):
        base = free_port()
        if base + 20 > 65535:
            continue
        ok = True
        for port in [*range(base, base + 3), *range(base + 10, base + 13)]:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port range for etcd")


class HaCluster(Cluster):
    """``n`` servers on one etcd cluster, agents pointed at all of them (``server`` lists every URL)."""

    def __init__(self, workdir: Path, etcd: EtcdCluster, n: int = 3, server_config: dict[str, Any] | None = None,
                 lease_ttl: int = 2) -> None:
        super().__init__(workdir, server_config)
        self.etcd = etcd
        self.ports = [free_port() for _ in range(n)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.url = self.urls[0]
        self.servers: list[Proc | None] = [None] * n
        self.prefix = f"/updraft-{self.port}/"
        self.lease_ttl = lease_ttl

    def server_args(self, i: int) -> list[str]:
        cfg = self.dir / f"server{i}.json"
        # auth off (loopback): HA is what these exercise; tokens are per data dir (docs/security.md)
        config = {"image_policy": "off", "auth": False, **self.server_config, "store": "etcd",
                  "etcd_endpoints": self.etcd.endpoints,
                  "etcd_prefix": self.prefix, "etcd_lease_ttl": self.lease_ttl, "server_id": f"s{i}"}
        cfg.write_text(json.dumps(config))
        return [*self._cli(), "server", "--port", str(self.ports[i]),
                "--data-dir", str(self.dir / f"server{i}"), "--config", str(cfg)]

    def start_servers(self) -> None:
        for i in range(len(self.ports)):
            self.start_one(i, wait=False)
        for i in range(len(self.ports)):
            self.wait_server(i)
        self.wait_leader()

    def start_one(self, i: int, wait: bool = True) -> Proc:
        proc = Proc(self.server_args(i), self.dir / f"server{i}.log")
        self.servers[i] = proc
        if wait:
            self.wait_server(i)
        return proc

    def wait_server(self, i: int, timeout: float = 30) -> None:
        def ready() -> bool:
            proc = self.servers[i]
            assert proc is not None
            if not proc.alive():
                raise RuntimeError(f"server {i} exited:\n" + proc.tail())
            return httpx.get(self.urls[i] + "/ready", timeout=1).status_code == 200

        wait_for(ready, timeout, what=f"server {i} ready")

    def cluster_view(self, i: int) -> dict[str, Any] | None:
        try:
            r = httpx.get(self.urls[i] + "/v1/cluster", timeout=1)
            return r.json() if r.status_code == 200 else None
        except httpx.HTTPError:
            return None

    def leader(self, exclude: tuple[int, ...] = ()) -> int | None:
        """The index of the server that says it leads (None if none does)."""
        for i, proc in enumerate(self.servers):
            if i in exclude or proc is None or not proc.alive():
                continue
            view = self.cluster_view(i)
            if view and view.get("self", {}).get("leader"):
                return i
        return None

    def wait_leader(self, exclude: tuple[int, ...] = (), timeout: float = 30) -> int:
        def found() -> list[int]:
            i = self.leader(exclude)
            return [] if i is None else [i]  # a list, so that server 0 counts as found

        return wait_for(found, timeout, interval=0.02, what="a leader")[0]

    def start_nginx(self) -> str:
        """nginx in front of the servers (``scripts/nginx.sh``: the first weight 2, the last a backup)."""
        self.nginx_port = free_port()
        env = {**os.environ, "UPDRAFT_NGINX_DIR": str(self.dir / "nginx")}
        subprocess.run(["bash", str(ROOT / "scripts/nginx.sh"), "start", str(self.nginx_port), *self.urls],
                       env=env, check=True, capture_output=True)
        self.nginx_url = f"http://127.0.0.1:{self.nginx_port}"
        return self.nginx_url

    def live_urls(self) -> str:
        return ",".join(self.urls)

    def pause(self, i: int) -> None:
        proc = self.servers[i]
        assert proc is not None
        proc.signal(signal.SIGSTOP)

    def resume(self, i: int) -> None:
        proc = self.servers[i]
        assert proc is not None
        proc.signal(signal.SIGCONT)

    def close(self) -> None:
        if getattr(self, "nginx_port", None):
            env = {**os.environ, "UPDRAFT_NGINX_DIR": str(self.dir / "nginx")}
            subprocess.run(["bash", str(ROOT / "scripts/nginx.sh"), "stop", str(self.nginx_port)], env=env,
                           capture_output=True)
        for proc in self.agents.values():
            proc.stop()
        for s in self.servers:
            if s is not None:
                s.stop()
        from tests.cluster import cleanup_containers

        cleanup_containers(self.cluster_id)
