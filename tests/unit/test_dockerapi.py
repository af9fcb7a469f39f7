"""The Docker API's pure parts: create → task spec or refusals, container views, filters, frames, addresses."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from updraft.dockerapi import CreatePlan, parse_address, plan_create
from updraft.dockerapi.frames import encode_lines, frame, parse_tail, read_frames, rfc3339
from updraft.dockerapi.views import Container, matches, parse_filters, state_of, wait_result
from updraft.errors import ValidationError

# What Debian's docker CLI 28 sends for ``docker run --rm updraft/base:bookworm python3 -c 'print(1)'``.
CLI_BODY: dict[str, Any] = json.loads("""{"Hostname":"","Domainname":"","User":"","AttachStdin":false,
"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,
"Cmd":["python3","-c","print(1)"],"Image":"updraft/base:bookworm","Volumes":{},"WorkingDir":"","Entrypoint":null,
"OnBuild":null,"Labels":{},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},
"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":true,
"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],
"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,
"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,
"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"",
"BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],
"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"",
"CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,
"MemorySwappiness":-1,"OomKillDisable":false,"PidsLimit":0,"Ulimits":[],"CpuCount":0,"CpuPercent":0,
"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},
"NetworkingConfig":{"EndpointsConfig":{"default":{"IPAMConfig":null,"Links":null,"Aliases":null,"MacAddress":"",
"DriverOpts":null,"GwPriority":0,"NetworkID":"","EndpointID":"","Gateway":"","IPAddress":"","IPPrefixLen":0,
"IPv6Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"DNSNames":null}}}}""")


def body(**changes: Any) -> dict[str, Any]:
    """The CLI's body with changes; ``HostConfig__X=v`` sets a HostConfig field."""
    out = copy.deepcopy(CLI_BODY)
    for key, value in changes.items():
        if key.startswith("HostConfig__"):
            out["HostConfig"][key.removeprefix("HostConfig__")] = value
        else:
            out[key] = value
    return out


def test_the_clis_plain_run_maps_without_refusals() -> None:
    plan = plan_create(CLI_BODY)
    assert plan.refusals == ()
    assert plan.spec == {"image": "updraft/base:bookworm", "command": ["python3", "-c", "print(1)"]}
    assert plan.auto_remove is True


def test_fields_map_onto_the_task_spec() -> None:
    plan = plan_create(body(Env=["A=1", "B=x=y"], WorkingDir="/w", Labels={"app": "demo"}, Entrypoint=["python3"],
                            Cmd=["-c", "pass"], HostConfig__NanoCpus=500_000_000, HostConfig__CpuShares=512,
                            HostConfig__Memory=64 * 2**20, HostConfig__MemoryReservation=32 * 2**20))
    assert plan.refusals == ()
    assert plan.spec == {
        "image": "updraft/base:bookworm",
        "command": ["python3", "-c", "pass"],
        "env": {"A": "1", "B": "x=y"},
        "workdir": "/w",
        "labels": {"app": "demo"},
        "resources": {"requests": {"cpu": "500m", "memory": str(32 * 2**20)},
                      "limits": {"cpu": "500m", "memory": str(64 * 2**20)}},
    }
    assert plan.config["Entrypoint"] == ["python3"] and plan.config["Cmd"] == ["-c", "pass"]


def test_cpu_quota_maps_to_a_limit_and_a_matching_swap_is_accepted() -> None:
    plan = plan_create(body(HostConfig__CpuQuota=25_000, HostConfig__CpuPeriod=50_000, HostConfig__Memory=2**20,
                            HostConfig__MemorySwap=2**20))
    assert plan.refusals == () and plan.spec["resources"]["limits"] == {"cpu": "500m", "memory": str(2**20)}


@pytest.mark.parametrize(
    ("changes", "code", "option"),
    [
        ({"Tty": True}, "tty", "-t/--tty"),
        ({"OpenStdin": True, "AttachStdin": True}, "stdin", "-i/--interactive"),
        ({"ExposedPorts": {"80/tcp": {}}}, "ports", "--expose"),
        ({"HostConfig__PortBindings": {"80/tcp": [{"HostPort": "8080"}]}}, "ports", "-p/--publish"),
        ({"HostConfig__PublishAllPorts": True}, "ports", "-P/--publish-all"),
        ({"HostConfig__NetworkMode": "host"}, "network", "--network"),
        ({"HostConfig__Privileged": True}, "privileged", "--privileged"),
        ({"HostConfig__Binds": ["/etc:/x"]}, "mounts", "-v/--volume"),
        ({"HostConfig__Mounts": [{"Type": "bind", "Source": "/etc", "Target": "/x"}]}, "mounts", "--mount"),
        ({"HostConfig__RestartPolicy": {"Name": "always"}}, "restart", "--restart"),
        ({"HostConfig__MemorySwap": -1, "HostConfig__Memory": 2**20}, "resources", "--memory-swap"),
        ({"User": "1000"}, "user", "-u/--user"),
        ({"Env": ["LONELY"]}, "env", "-e LONELY"),
        ({"Labels": {"updraft.node": "cloud"}}, "labels", "--label updraft.node"),
        ({"Entrypoint": [""]}, "entrypoint", '--entrypoint ""'),
        ({"HostConfig__BlkioWeight": 300}, "unsupported", "HostConfig.BlkioWeight"),
        ({"SomethingNew": {"x": 1}}, "unsupported", "SomethingNew"),
    ],
)
def test_unsupported_options_are_refused_by_name(changes: dict[str, Any], code: str, option: str) -> None:
    plan = plan_create(body(**changes))
    assert code in {r.code for r in plan.refusals}
    assert option in plan.message and plan.message.startswith("Updraft's Docker API cannot honour")


def test_a_network_endpoint_with_settings_is_refused() -> None:
    endpoints = {"EndpointsConfig": {"default": {"Aliases": ["db"]}}}
    assert [r.code for r in plan_create(body(NetworkingConfig=endpoints)).refusals] == ["network"]
    assert plan_create(body(NetworkingConfig={"EndpointsConfig": {"mynet": {}}})).refusals[0].code == "network"


def container(task: dict[str, Any] | None = None, started: float | None = None, labels: dict[str, str] | None = None,
              name: str = "c1") -> Container:
    plan = plan_create(body(Labels=labels or {}))
    c = Container("ab" * 32, name, 100.0, plan, started=started)
    if task is not None:
        c.task_id, c.task, c.started = task["id"], task, started or 101.0
    return c


def task(state: str, exit_code: int | None = None, error: str | None = None, node: str = "edge") -> dict[str, Any]:
    attempt = {"node": node, "placement": "local" if node == "edge" else "offload", "reason": "why", "token": 1,
               "exit_code": exit_code, "error": error, "started_at": 102.0, "finished_at": 103.0}
    return {"id": "t-1", "state": state, "spec": {"origin": "edge"}, "attempts": [attempt]}


@pytest.mark.parametrize(
    ("c", "status", "code", "error"),
    [
        (container(), "created", 0, ""),
        (container(started=101.0), "running", 0, ""),
        (container(task("pending")), "running", 0, ""),
        (container(task("succeeded", 0)), "exited", 0, ""),
        (container(task("failed", 3)), "exited", 3, ""),
        (container(task("failed", None, "image not found")), "exited", 125, "image not found"),
        (container(task("cancelled")), "exited", 137, ""),
    ],
)
def test_docker_state_follows_the_task(c: Container, status: str, code: int, error: str) -> None:
    st = state_of(c)
    assert (st.status, st.exit_code, st.error) == (status, code, error)


def test_wait_result_carries_the_engine_error_only_when_the_program_did_not_run() -> None:
    assert wait_result(container(task("failed", 3))) == {"StatusCode": 3}
    assert wait_result(container(task("failed", None, "no node"))) == {"StatusCode": 125, "Error": {"Message": "no node"}}


def test_filters_in_both_encodings() -> None:
    assert parse_filters('{"label": ["a=b"], "status": ["exited"]}') == {"label": ["a=b"], "status": ["exited"]}
    assert parse_filters('{"label": {"a=b": true}}') == {"label": ["a=b"]}
    with pytest.raises(ValidationError, match="invalid filter 'volume'"):
        parse_filters('{"volume": ["x"]}')
    with pytest.raises(ValidationError, match="status=sleeping"):
        parse_filters('{"status": ["sleeping"]}')


def test_filters_match_labels_including_where_it_ran() -> None:
    c = container(task("succeeded", 0, node="cloud"), labels={"app": "demo"})
    assert matches(c, {"label": ["app"]}) and matches(c, {"label": ["app=demo", "updraft.placement=offload"]})
    assert not matches(c, {"label": ["app=other"]})
    assert matches(c, {"status": ["running", "exited"], "name": ["c1"], "id": ["abab"]})
    assert not matches(c, {"status": ["running"]})
    assert matches(c, {"exited": ["0"]}) and not matches(c, {"exited": ["1"]})


def test_frames_round_trip_and_select_streams() -> None:
    data = frame(1, b"out\n") + frame(2, b"err\n")
    assert data[:8] == b"\x01\x00\x00\x00\x00\x00\x00\x04"
    assert read_frames(data) == [(1, b"out\n"), (2, b"err\n")]
    lines = [{"stream": "stdout", "at": 0.0, "data": "a"}, {"stream": "stderr", "at": 1.5, "data": "b"}]
    assert read_frames(encode_lines(lines, frozenset({"stderr"}), timestamps=False)) == [(2, b"b\n")]
    stamped = read_frames(encode_lines(lines, frozenset({"stdout", "stderr"}), timestamps=True))
    assert stamped[1] == (2, b"1970-01-01T00:00:01.500000000Z b\n")
    assert encode_lines(lines, frozenset({"stdout"}), False, multiplexed=False) == b"a\n"


def test_rfc3339_and_tail() -> None:
    assert rfc3339(1_700_000_000.25) == "2023-11-14T22:13:20.250000000Z"
    assert (parse_tail("all"), parse_tail(None), parse_tail("3")) == (None, None, 3)
    with pytest.raises(ValidationError):
        parse_tail("x")


def test_addresses() -> None:
    assert str(parse_address("unix:///run/u/docker.sock")) == "unix:///run/u/docker.sock"
    tcp = parse_address("tcp://127.0.0.1:2375")
    assert (tcp.host, tcp.port) == ("127.0.0.1", 2375)
    assert parse_address("tcp://[::1]:2375").host == "::1"
    for bad, why in [("tcp://0.0.0.0:2375", "not a loopback"), ("tcp://10.1.2.3:2375", "not a loopback"),
                     ("unix://rel.sock", "absolute path"), ("http://127.0.0.1:1", "unix:// or tcp://"),
                     ("tcp://127.0.0.1", "tcp://HOST:PORT")]:
        with pytest.raises(ValidationError, match=why):
            parse_address(bad)


def test_plan_is_plain_data() -> None:
    assert isinstance(plan_create(CLI_BODY), CreatePlan)


def test_the_agent_refuses_a_docker_api_beyond_loopback(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from updraft.main import app

    result = CliRunner().invoke(app, ["agent", "--name", "edge", "--data-dir", str(tmp_path),
                                      "--docker-api", "tcp://0.0.0.0:2375"])
    assert result.exit_code == 2
    assert "0.0.0.0 is not a loopback address" in result.output.replace("\n", " ")
