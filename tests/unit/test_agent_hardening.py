"""The agent's hardening rules, pure: what a task may mount and run as."""

from __future__ import annotations

import ast
from pathlib import Path

from builders import spec

from updraft.agent.hardening import (
    CAPABILITIES,
    Hardened,
    Policy,
    Refusal,
    RefusalCode,
    check_mount,
    check_user,
    harden,
)
from updraft.agent.runtime import Mount

LINKS = {"/srv/data/escape": "/etc", "/var/run": "/run", "/var/run/docker.sock": "/run/docker.sock"}


def resolve(path: str) -> str:
    for link, target in LINKS.items():
        if path == link or path.startswith(link + "/"):
            return target + path[len(link):]
    return path


ALLOW = Policy(allowed_host_paths=("/srv/data",))


def code(got: Mount | Refusal) -> str:
    return got.code if isinstance(got, Refusal) else "ok"


def test_host_paths_only_under_the_allowed_ones() -> None:
    assert check_mount("/srv/data/in:/in:ro", ALLOW, resolve) == Mount("/srv/data/in", "/in", True, bind=True)
    assert code(check_mount("/srv/data:/in", ALLOW, resolve)) == "ok"
    assert code(check_mount("/srv/database:/in", ALLOW, resolve)) == RefusalCode.HOST_PATH  # a prefix is not a parent
    assert code(check_mount("/srv/data/../../etc:/in", ALLOW, resolve)) == RefusalCode.HOST_PATH
    assert code(check_mount("/srv/data/escape:/in", ALLOW, resolve)) == RefusalCode.HOST_PATH  # a symlink out
    assert code(check_mount("/srv/data/x:/in", Policy(), resolve)) == RefusalCode.HOST_PATH  # none by default


def test_the_engine_socket_never_even_when_allowed() -> None:
    everything = Policy(allowed_host_paths=("/",))
    for source in ("/", "/run", "/var/run", "/var/run/docker.sock", "/run/containerd/containerd.sock"):
        assert code(check_mount(f"{source}:/x", everything, resolve)) == RefusalCode.ENGINE_SOCKET, source


def test_named_volumes_and_syntax() -> None:
    assert check_mount("cache:/data", Policy(), resolve) == Mount("cache", "/data", False, bind=False)
    for bad in ("cache", "cache:data", "/srv/data:/x:rshared", "../x:/x", ":/x", "a:/b:ro:z"):
        assert code(check_mount(bad, ALLOW, resolve)) == RefusalCode.VOLUME, bad


def test_refuse_root_wants_a_numeric_non_zero_uid() -> None:
    strict = Policy(refuse_root=True)
    for user in (None, "", "0", "0:1000", "root", "app:app"):
        assert isinstance(check_user(user, strict, "the task's"), Refusal), user
    for user in ("1000", "1000:1000", "65534"):
        assert check_user(user, strict, "the task's") is None
    assert check_user(None, Policy(), "the image's") is None  # off by default


def test_harden_applies_every_default() -> None:
    got = harden(spec(volumes=["cache:/c"], user="1000", read_only_rootfs=True), Policy(), resolve)
    assert isinstance(got, Hardened)
    h = got.hardening
    assert h.cap_add == CAPABILITIES and h.no_new_privileges and h.pids_limit == 1024
    assert h.read_only_rootfs and h.user == "1000" and got.mounts == (Mount("cache", "/c", False, bind=False),)
    forced = harden(spec(), Policy(read_only_rootfs=True, pids_limit=64), resolve)
    assert isinstance(forced, Hardened) and forced.hardening.read_only_rootfs and forced.hardening.pids_limit == 64
    refusal = harden(spec(volumes=["cache:/c", "/etc:/e"]), ALLOW, resolve)
    assert isinstance(refusal, Refusal) and str(refusal).startswith("refused by the agent (host_path_not_allowed): ")


def test_the_agent_imports_none_of_sdk_control_cli() -> None:
    root = Path(__file__).resolve().parents[2] / "src" / "updraft" / "agent"
    forbidden = ("updraft.sdk", "updraft.control", "updraft.cli", "docker.models", "docker.api")
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"
            if isinstance(node, ast.Attribute):  # docker-py's private helpers (_url, _get, …)
                assert not (node.attr.startswith("_") and not node.attr.startswith("__")
                            and isinstance(node.value, ast.Attribute) and node.value.attr in ("api", "client")), \
                    f"{path.name} uses {node.value.attr}.{node.attr}"
