"""Container hardening, tried as an attacker who can submit tasks (issue 15, item 5).

Real server, real agents, real Docker. Whatever the control plane forwards, the agent refuses host paths
outside its ``allowed_host_paths`` and the engine's socket always, drops capabilities to the documented set,
sets ``no-new-privileges`` and a pids limit, and with ``--refuse-root`` runs nothing as uid 0.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.cluster import BASE_IMAGE, Cluster, ensure_docker
from updraft.agent.hardening import CAPABILITIES, DEFAULT_PIDS_LIMIT

CAP_BITS = {"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
            "SETUID": 7, "SETPCAP": 8, "NET_BIND_SERVICE": 10, "NET_RAW": 13, "SYS_CHROOT": 18, "SYS_ADMIN": 21,
            "MKNOD": 27, "AUDIT_WRITE": 29, "SETFCAP": 31}


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """'edge': an agent with the defaults; 'strict': one that refuses root."""
    ensure_docker()
    cluster = Cluster(tmp_path_factory.mktemp("hardening"))
    try:
        cluster.start_server()
        cluster.start_agent("edge", cpus="1", memory="1Gi")
        cluster.start_agent("strict", cpus="1", memory="1Gi", extra=["--refuse-root"])
        yield cluster
    finally:
        cluster.close()
        for volume in docker.from_env().volumes.list(filters={"name": volume_name(cluster)}):
            volume.remove(force=True)


def volume_name(cluster: Cluster) -> str:
    return f"updraft-hardening-{cluster.port}"


def run(cluster: Cluster, script: str, origin: str = "edge", **fields: Any) -> Any:
    with cluster.client() as c:
        return c.run(image=BASE_IMAGE, command=["python3", "-c", script], origin=origin, offloadable=False,
                     timeout=60, **fields)


def refused(task: Any, code: str) -> None:
    assert task.state == "failed", task.state
    error = task.current.error or ""
    assert f"refused by the agent ({code})" in error, error
    assert task.current.error_code == code  # the rule that refused it, as data beside the message
    assert task.current.container_id is None  # no container was ever created for it
    engine = docker.from_env()
    assert not engine.containers.list(all=True, filters={"label": f"updraft.task={task.id}"})


def test_the_host_root_cannot_be_mounted(nodes: Cluster) -> None:
    refused(run(nodes, "print(open('/host/etc/shadow').read())", volumes=["/:/host"]), "engine_socket")
    refused(run(nodes, "print(1)", volumes=["/etc:/x:ro"]), "host_path_not_allowed")


def test_the_docker_socket_is_never_mounted(nodes: Cluster) -> None:
    for sock in ("/var/run/docker.sock", "/run/docker.sock", "/var/run"):
        refused(run(nodes, "print(1)", volumes=[f"{sock}:/var/run/docker.sock"]), "engine_socket")


def test_a_symlink_under_an_allowed_path_does_not_lead_out_of_it(nodes: Cluster) -> None:
    link = nodes.dir / "escape"
    if not link.is_symlink():
        os.symlink("/etc", link)
    refused(run(nodes, "print(1)", volumes=[f"{link}:/x"]), "host_path_not_allowed")
    refused(run(nodes, "print(1)", volumes=[f"{nodes.dir}/../..:/x"]), "host_path_not_allowed")


def test_allowed_paths_and_named_volumes_work(nodes: Cluster) -> None:
    shared = nodes.dir / "shared"
    shared.mkdir(exist_ok=True)
    shared.chmod(0o777)
    ok = run(nodes, "open('/out/hello', 'w').write('hi')", volumes=[f"{shared}:/out"])
    assert ok.state == "succeeded" and (shared / "hello").read_text() == "hi"
    named = run(nodes, "open('/data/x', 'w').write('1'); print(open('/data/x').read())",
                volumes=[f"{volume_name(nodes)}:/data"])
    assert named.state == "succeeded" and named.current.log_tail.strip() == "1"


STATUS = "print(''.join(l for l in open('/proc/self/status') if l.startswith(('Cap', 'NoNewPrivs'))))"


def _status(log_tail: str) -> dict[str, str]:
    return dict(line.split(":\t") for line in log_tail.strip().splitlines())


def test_a_task_has_only_the_documented_capabilities_and_no_new_privileges(nodes: Cluster) -> None:
    task = run(nodes, STATUS)
    assert task.state == "succeeded", task.current.error
    status = _status(task.current.log_tail)
    documented = sum(1 << CAP_BITS[cap] for cap in CAPABILITIES)
    assert int(status["CapEff"], 16) == documented
    assert int(status["CapBnd"], 16) == documented  # nothing outside it can ever be gained
    assert int(status["CapAmb"], 16) == 0
    assert status["NoNewPrivs"] == "1"


def test_a_task_cannot_use_what_was_dropped(nodes: Cluster) -> None:
    attempts = """
import os, socket
for name, try_it in (("raw socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
                     ("mknod", lambda: os.mknod("/tmp/dev", 0o600 | 0o020000, os.makedev(1, 3))),
                     ("chroot", lambda: os.chroot("/tmp"))):
    try:
        try_it()
        print(name, "ALLOWED")
    except PermissionError:
        print(name, "refused")
"""
    task = run(nodes, attempts)
    assert task.state == "succeeded", task.current.error
    assert task.current.log_tail.split("\n") == ["raw socket refused", "mknod refused", "chroot refused"]


def test_a_pids_limit_is_set(nodes: Cluster) -> None:
    script = """
import glob
print(*[open(p).read().strip() for p in glob.glob('/sys/fs/cgroup/pids.max') + glob.glob('/sys/fs/cgroup/pids/pids.max')])
"""
    task = run(nodes, script)
    assert task.state == "succeeded", task.current.error
    assert task.current.log_tail.strip() == str(DEFAULT_PIDS_LIMIT)


def test_refuse_root_runs_only_numeric_non_root_users(nodes: Cluster) -> None:
    refused(run(nodes, "print(1)", origin="strict"), "root_refused")  # the image's user is root
    refused(run(nodes, "print(1)", origin="strict", user="0:0"), "root_refused")
    refused(run(nodes, "print(1)", origin="strict", user="nobody"), "root_refused")  # a name proves nothing
    ok = run(nodes, "import os; print(os.getuid(), os.getgid())", origin="strict", user="1000:1000")
    assert ok.state == "succeeded" and ok.current.log_tail.strip() == "1000 1000"


def test_a_read_only_root_filesystem_keeps_tmp_writable(nodes: Cluster) -> None:
    script = """
try:
    open('/evil', 'w')
    print('root writable')
except OSError:
    print('root read-only')
open('/tmp/ok', 'w').write('x')
print('tmp writable')
"""
    task = run(nodes, script, read_only_rootfs=True)
    assert task.state == "succeeded", task.current.error
    assert task.current.log_tail.split("\n") == ["root read-only", "tmp writable"]


def test_the_agent_flags_are_what_the_documentation_names(tmp_path: Path) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    for word in ("--allow-host-path", "--refuse-root", "--pids-limit", "--read-only-rootfs", *CAPABILITIES):
        assert word in doc, word
