"""The Docker Engine API served by the edge agent, driven by clients nobody here wrote: Debian's ``docker`` CLI
and docker-py 7. A real server, an edge and a cloud agent, the real dockerd underneath."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.cluster import BASE_IMAGE, NOOP_IMAGE, Cluster, wait_for


@pytest.fixture
def edge_api(cluster: Cluster) -> Iterator[tuple[Cluster, str]]:
    """Two nodes as in ``two_nodes``; the edge agent also serves the Docker API on a unix socket."""
    sock = Path(tempfile.mkdtemp(prefix="ud-")) / "docker.sock"  # short: a socket path has a 108-byte limit
    cluster.start_server()
    cluster.start_agent("edge", tags=["edge"], cpus="0.5", cpuset="0", memory="1Gi",
                        env={"UPDRAFT_DOCKER_API": f"unix://{sock}"})
    cluster.start_agent("cloud", tags=["low-util"], cpus="1", cpuset="1", memory="2Gi")
    wait_for(sock.exists, 10, what="docker api socket")
    yield cluster, f"unix://{sock}"


def docker_cli(host: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=check,
                          env={"DOCKER_HOST": host, "PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp"})


def task_of(cluster: Cluster, container_id: str) -> Any:
    """The Updraft task a container became (its label names the container)."""
    with cluster.client() as c:
        found = [t for t in c.list(limit=1000) if t.spec.labels.get("updraft.docker/container") == container_id[:12]]
    assert len(found) == 1, found
    return found[0]


def test_docker_run_rm_prints_output_and_returns_exit_code(edge_api: tuple[Cluster, str]) -> None:
    cluster, host = edge_api
    script = "import sys; print('hello'); print('oops', file=sys.stderr); sys.exit(3)"
    run = docker_cli(host, "run", "--rm", "--name", "once", BASE_IMAGE, "python3", "-c", script)
    assert (run.returncode, run.stdout, run.stderr) == (3, "hello\n", "oops\n")
    assert docker_cli(host, "ps", "-aq", "--filter", "name=once").stdout == ""  # --rm: gone
    ok = docker_cli(host, "run", "--rm", NOOP_IMAGE)
    assert (ok.returncode, ok.stdout) == (0, "")
    mapped = docker_cli(host, "run", "--rm", "--cpus", "0.25", "-m", "64m", "-e", "FOO=bar", "-w", "/tmp",
                        BASE_IMAGE, "sh", "-c", "echo $FOO $(pwd)")
    assert (mapped.returncode, mapped.stdout) == (0, "bar /tmp\n")
    with cluster.client() as c:  # the tasks behind them: submitted from the edge, run there
        mine = [t for t in c.list(limit=1000) if "updraft.docker/container" in t.spec.labels]
    assert len(mine) == 3 and all(t.spec.origin == "edge" and t.current.node == "edge" for t in mine)
    assert sorted(t.current.exit_code for t in mine) == [0, 0, 3]
    (limited,) = [t for t in mine if t.spec.env]
    assert (limited.spec.env, limited.spec.workdir) == ({"FOO": "bar"}, "/tmp")
    assert (limited.spec.resources.limits.cpu, limited.spec.resources.limits.memory) == ("250m", str(64 * 2**20))


def test_detached_logs_wait_ps_inspect_stop_rm(edge_api: tuple[Cluster, str]) -> None:
    cluster, host = edge_api
    script = "import time\nfor i in range(3): print('tick', i, flush=True); time.sleep(0.2)"
    cid = docker_cli(host, "run", "-d", "--name", "ticker", "-l", "app=demo", BASE_IMAGE, "python3", "-c", script,
                     check=True).stdout.strip()
    assert len(cid) == 64
    logs = docker_cli(host, "logs", "-f", "-t", "ticker", check=True)
    lines = logs.stdout.splitlines()
    assert [ln.split(" ", 1)[1] for ln in lines] == ["tick 0", "tick 1", "tick 2"]
    assert all(ln.split(" ", 1)[0].endswith("Z") for ln in lines)  # RFC 3339 timestamps
    assert docker_cli(host, "wait", "ticker", check=True).stdout.strip() == "0"
    listed = docker_cli(host, "ps", "-a", "--filter", "label=app=demo", "--filter", "status=exited",
                        "--format", "{{.ID}} {{.Names}} {{.Status}}", check=True).stdout.split()
    assert listed[:3] == [cid[:12], "ticker", "Exited"]
    info = json.loads(docker_cli(host, "inspect", "ticker", check=True).stdout)[0]
    assert info["Id"] == cid and info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0
    labels = info["Config"]["Labels"]
    task = task_of(cluster, cid)
    assert labels["app"] == "demo" and labels["updraft.task"] == task.id
    assert (labels["updraft.node"], labels["updraft.placement"]) == ("edge", "local")
    assert info["Updraft"]["Reason"] == task.current.reason and task.current.reason.startswith("local")

    sleeper = docker_cli(host, "run", "-d", "--name", "sleeper", BASE_IMAGE, "sleep", "300", check=True).stdout.strip()
    assert docker_cli(host, "ps", "--format", "{{.Names}}", check=True).stdout.split() == ["sleeper"]
    assert docker_cli(host, "stop", "sleeper", check=True).stdout.strip() == "sleeper"
    stopped = json.loads(docker_cli(host, "inspect", "sleeper", check=True).stdout)[0]["State"]
    assert stopped["Status"] == "exited" and stopped["ExitCode"] != 0
    assert task_of(cluster, sleeper).state == "cancelled"

    doomed = docker_cli(host, "run", "-d", BASE_IMAGE, "sleep", "300", check=True).stdout.strip()
    refused = docker_cli(host, "rm", doomed[:12])  # running: refused without -f, as Docker does
    assert refused.returncode != 0 and "cannot remove a running container" in refused.stderr
    assert docker_cli(host, "rm", "-f", doomed[:12], check=True).stdout.strip() == doomed[:12]
    assert docker_cli(host, "ps", "-aq", "--no-trunc", check=True).stdout.split() == [sleeper, cid]
    wait_for(lambda: task_of(cluster, doomed).state == "cancelled", 30, what="rm -f cancels the task")


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["-p", "8080:80"], "-p/--publish"),
        (["-t"], "-t/--tty"),
        (["-i"], "-i/--interactive"),
        (["--network", "host"], "--network"),
        (["--privileged"], "--privileged"),
        (["-v", "/etc:/host-etc"], "-v/--volume"),
    ],
)
def test_unsupported_options_are_refused_by_name(edge_api: tuple[Cluster, str], flags: list[str], named: str) -> None:
    cluster, host = edge_api
    run = docker_cli(host, "run", "--rm", *flags, BASE_IMAGE, "true")
    assert run.returncode == 125
    assert "Updraft's Docker API cannot honour" in run.stderr and named in run.stderr
    with cluster.client() as c:
        assert c.list(limit=10) == []  # nothing was submitted


def test_docker_py_run_list_and_streamed_logs(edge_api: tuple[Cluster, str]) -> None:
    _, host = edge_api
    client = docker.DockerClient(base_url=host)
    assert client.version()["ApiVersion"] == client.api.api_version  # negotiated
    out = client.containers.run(BASE_IMAGE, ["python3", "-c", "print('from docker-py')"], remove=True)
    assert out == b"from docker-py\n"
    with pytest.raises(docker.errors.ContainerError) as failed:
        client.containers.run(BASE_IMAGE, ["python3", "-c", "import sys; sys.exit('bad')"])
    assert failed.value.exit_status == 1 and b"bad" in failed.value.stderr
    script = "import time\nfor i in range(3): print(i, flush=True); time.sleep(0.2)"
    ctr = client.containers.run(BASE_IMAGE, ["python3", "-c", script], detach=True, labels={"app": "dpy"})
    assert list(ctr.logs(stream=True, follow=True)) == [b"0\n", b"1\n", b"2\n"]
    assert ctr.wait() == {"StatusCode": 0}
    assert [c.id for c in client.containers.list(all=True, filters={"label": "app=dpy"})] == [ctr.id]
    assert client.containers.list(filters={"label": "app=dpy"}) == []  # not running any more
    ctr.reload()
    assert ctr.status == "exited" and ctr.labels["updraft.node"] == "edge"
    ctr.remove()
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(ctr.id)


def test_busy_edge_streams_output_of_a_container_running_on_the_cloud(edge_api: tuple[Cluster, str]) -> None:
    cluster, host = edge_api
    with cluster.client() as c:
        # Occupy the edge: a pinned task requesting all of its cpu makes it 100 % committed.
        hog = c.submit(image=BASE_IMAGE, command=["sleep", "300"], origin="edge", offloadable=False,
                       resources={"requests": {"cpu": "500m"}})
        wait_for(lambda: c.get(hog.id).state == "running", 30, what="hog running")
    script = "import time\nprint('hello from', flush=True)\nwhile True: time.sleep(0.1)"
    proc = subprocess.Popen(["docker", "run", "--name", "far", BASE_IMAGE, "python3", "-c", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"DOCKER_HOST": host, "PATH": "/usr/bin:/bin", "HOME": "/tmp"})
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "hello from\n"  # streamed while the container still runs
        info = json.loads(docker_cli(host, "inspect", "far", check=True).stdout)[0]
        assert info["State"]["Running"] is True
        assert (info["Config"]["Labels"]["updraft.node"], info["Config"]["Labels"]["updraft.placement"]) == (
            "cloud", "offload")
        task = task_of(cluster, info["Id"])
        assert task.spec.origin == "edge" and task.current.node == "cloud" and task.state == "running"
        assert "origin cpu 100% ≥ 75%" in info["Updraft"]["Reason"]
        offloaded = docker_cli(host, "ps", "--filter", "label=updraft.placement=offload", "--format", "{{.Names}}")
        assert offloaded.stdout.split() == ["far"]
        docker_cli(host, "stop", "far", check=True)
        assert proc.wait(60) != 0  # docker run ends with the stopped container's status
    finally:
        if proc.poll() is None:
            proc.kill()
        with cluster.client() as c:
            c.cancel(hog.id)


def test_the_cli_negotiates_the_api_version(edge_api: tuple[Cluster, str]) -> None:
    _, host = edge_api
    # The CLI speaks API 1.50; it pings, reads Api-Version and goes down to ours.
    assert docker_cli(host, "version", "--format", "{{.Server.APIVersion}} {{.Server.MinAPIVersion}}",
                      check=True).stdout.split() == ["1.43", "1.24"]
    pinned = subprocess.run(["docker", "ps", "-a"], capture_output=True, text=True, timeout=60,
                            env={"DOCKER_HOST": host, "DOCKER_API_VERSION": "1.41", "PATH": "/usr/bin:/bin"})
    assert pinned.returncode == 0 and pinned.stdout.startswith("CONTAINER ID")
    too_new = subprocess.run(["docker", "ps"], capture_output=True, text=True, timeout=60,
                             env={"DOCKER_HOST": host, "DOCKER_API_VERSION": "1.50", "PATH": "/usr/bin:/bin"})
    assert too_new.returncode != 0 and "Maximum supported API version is 1.43" in too_new.stderr
