"""Image plumbing for integration tests and benchmarks: a real registry, a second Docker engine, the example.

* :class:`Registry` runs Debian's ``docker-registry`` on 127.0.0.1 through ``scripts/registry.sh`` (state in a
  directory of the caller's choosing, so a stop and a start keep what was pushed).
* :class:`ExtraDockerd` starts a second ``dockerd`` with its own image store and socket: an agent pointed at it
  (``DOCKER_HOST``) is a node that holds none of the images, as a separate device would.
* :func:`build_example` fetches the example's wheels and runs ``updraft build`` on it.

Each fails loudly (raises) when what it needs is missing; nothing here skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.cluster import ROOT, free_port, wait_for

EXAMPLE = ROOT / "examples" / "task-app"


class Registry:
    def __init__(self, state_dir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.state_dir = state_dir
        self.env = {**os.environ, "UPDRAFT_STATE_DIR": str(state_dir)}

    def _script(self, cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(ROOT / "scripts/registry.sh"), cmd, str(self.port)], env=self.env,
                              capture_output=True, text=True, timeout=180)

    def start(self) -> Registry:
        out = self._script("start")
        if out.returncode != 0:
            raise RuntimeError(f"registry did not start on {self.host}:\n{out.stdout}{out.stderr}")
        return self

    def stop(self) -> None:
        self._script("stop")

    def __enter__(self) -> Registry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ExtraDockerd:
    """A second Docker engine with an empty image store and a bridge of its own.

    Never ``--bridge=none``: with it dockerd deletes the host's ``docker0`` at start-up, under the feet of the
    main engine. The bridge made here has its own name and subnet; iptables and forwarding are left alone.
    """

    BRIDGE, ADDRESS = "updraft-dd0", "172.29.247.1/24"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="updraft-dockerd-", dir="/var/tmp"))
        self.socket = self.dir / "docker.sock"
        self.host = f"unix://{self.socket}"
        self.proc: subprocess.Popen[bytes] | None = None

    def _bridge(self, up: bool) -> None:
        subprocess.run(["ip", "link", "del", self.BRIDGE], capture_output=True)
        if up:
            for cmd in (["ip", "link", "add", self.BRIDGE, "type", "bridge"],
                        ["ip", "addr", "add", self.ADDRESS, "dev", self.BRIDGE],
                        ["ip", "link", "set", self.BRIDGE, "up"]):
                subprocess.run(cmd, check=True, capture_output=True)

    def start(self) -> ExtraDockerd:
        self._bridge(up=True)
        log = open(self.dir / "dockerd.log", "ab")  # noqa: SIM115 - the daemon writes to it until stop()
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", str(self.dir / "root"), "--exec-root", str(self.dir / "exec"),
             "--pidfile", str(self.dir / "dockerd.pid"), "-H", self.host, f"--bridge={self.BRIDGE}",
             "--iptables=false", "--ip-masq=false", "--ip-forward=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("second dockerd exited:\n" + (self.dir / "dockerd.log").read_text()[-2000:])
            return subprocess.run(["docker", "-H", self.host, "info"], capture_output=True, timeout=10).returncode == 0

        wait_for(up, 60, 0.3, what="second dockerd")
        return self

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker", "-H", self.host, *args], capture_output=True, text=True, timeout=300)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-aq").stdout.split()
            if ids:
                self.docker("rm", "-f", *ids)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._bridge(up=False)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)

    def __enter__(self) -> ExtraDockerd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fetch_wheels() -> None:
    """The example installs its requirements from ./wheels (hash-checked); PyPI is reached from the host."""
    subprocess.run(["bash", str(EXAMPLE / "fetch-wheels.sh"), f"{sys.executable} -m pip"], check=True,
                   capture_output=True, timeout=300)


def updraft(*args: str, timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "updraft.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def build_example(name: str, dockerfile: str | None = None) -> str:
    """``updraft build examples/task-app -t NAME``; returns the printed ``NAME@sha256:…``."""
    fetch_wheels()
    started = time.monotonic()
    out = updraft("build", str(EXAMPLE), "-t", name, "-q", *(["-f", dockerfile] if dockerfile else []))
    if out.returncode != 0:
        raise RuntimeError(f"updraft build failed after {time.monotonic() - started:.0f} s:\n{out.stderr}")
    return out.stdout.strip().splitlines()[-1]


def untag_pushed(registry_host: str) -> None:
    """Remove the local tags of images pushed to a test registry (its port, and so its names, are new each run)."""
    import docker

    client = docker.from_env()
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith(registry_host + "/"):
                with contextlib.suppress(docker.errors.APIError):
                    client.images.remove(tag)
    for image in client.images.list():  # what a later push of the same tag left with only a digest
        digests = image.attrs.get("RepoDigests") or []
        if not image.tags and digests and all(d.startswith(registry_host + "/") for d in digests):
            with contextlib.suppress(docker.errors.APIError):
                client.images.remove(image.id, force=True)
