"""settings.load: defaults → file (JSON or TOML) → UPDRAFT_* environment → flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from updraft.errors import ValidationError
from updraft.settings import AgentSettings, ServerSettings, load

SEED = {
    "scheduler": "offload",
    "enable_offload": True,
    "threshold_cpu": 75,
    "threshold_memory": 80,
    "target_node_tags": ["edge", "low-util"],
}


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_with_an_empty_environment() -> None:
    s = load(ServerSettings, env={})
    assert s == ServerSettings(data_dir=s.data_dir)
    assert (s.port, s.policy.threshold_cpu, s.policy.target_node_tags) == (8470, 75.0, ["edge", "low-util"])


def test_seed_scheduler_json_is_a_server_settings_file(tmp_path: Path) -> None:
    s = load(ServerSettings, write(tmp_path, "seed.json", json.dumps(SEED)), env={})
    p = s.policy
    assert (p.scheduler, p.enable_offload, p.threshold_cpu, p.threshold_memory) == ("offload", True, 75, 80)
    assert p.target_node_tags == ["edge", "low-util"]
    custom = dict(SEED, threshold_cpu=60, target_node_tags=["cloud"], enable_offload=False)
    s = load(ServerSettings, write(tmp_path, "custom.json", json.dumps(custom)), env={})
    assert (s.policy.threshold_cpu, s.policy.target_node_tags, s.policy.enable_offload) == (60, ["cloud"], False)


def test_nested_and_flat_policy_keys_merge(tmp_path: Path) -> None:
    data = {"port": 9000, "policy": {"threshold_memory": 70, "hysteresis": 5}, "threshold_cpu": 50}
    s = load(ServerSettings, write(tmp_path, "s.json", json.dumps(data)), env={})
    assert (s.port, s.policy.threshold_cpu, s.policy.threshold_memory, s.policy.hysteresis) == (9000, 50, 70, 5)


def test_toml_file(tmp_path: Path) -> None:
    text = """
port = 9100
token = "s3cret"
threshold_cpu = 65

[policy]
target_node_tags = ["cloud"]

[detector]
phi_suspect = 2.5
"""
    s = load(ServerSettings, write(tmp_path, "server.toml", text), env={})
    assert (s.port, s.token, s.policy.threshold_cpu, s.policy.target_node_tags) == (9100, "s3cret", 65, ["cloud"])
    assert s.detector.phi_suspect == 2.5


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    f = write(tmp_path, "s.json", json.dumps({"port": 9000, "threshold_cpu": 60, "heartbeat_interval": 2}))
    env = {"UPDRAFT_PORT": "9001", "UPDRAFT_THRESHOLD_CPU": "70"}
    s = load(ServerSettings, f, env=env, flags={"port": 9002})
    assert s.port == 9002  # flag beats env and file
    assert s.policy.threshold_cpu == 70  # env beats file
    assert s.heartbeat_interval == 2  # file beats default
    assert s.scheduler_interval == 0.5  # default
    assert load(ServerSettings, f, env=env).port == 9001
    assert load(ServerSettings, f, env={}).port == 9000


def test_flags_of_none_do_not_override(tmp_path: Path) -> None:
    f = write(tmp_path, "s.json", json.dumps({"port": 9000, "threshold_cpu": 60}))
    s = load(ServerSettings, f, env={}, flags={"port": None, "threshold_cpu": None, "host": "0.0.0.0"})
    assert (s.port, s.policy.threshold_cpu, s.host) == (9000, 60, "0.0.0.0")


def test_environment_parsing() -> None:
    env = {
        "UPDRAFT_TARGET_NODE_TAGS": '["gpu", "cloud"]',
        "UPDRAFT_ENABLE_OFFLOAD": "false",
        "UPDRAFT_PHI_UNREACHABLE": "12",
        "UPDRAFT_DATA_DIR": "/tmp/updraft-x",
        "UNRELATED": "1",
    }
    s = load(ServerSettings, env=env)
    assert s.policy.target_node_tags == ["gpu", "cloud"] and s.policy.enable_offload is False
    assert s.detector.phi_unreachable == 12 and s.data_dir == Path("/tmp/updraft-x")


def test_agent_settings_from_env_and_flags() -> None:
    env = {"UPDRAFT_SERVER": "http://a:1,http://b:2", "UPDRAFT_LABELS": '{"zone": "a"}', "UPDRAFT_CPUS": "2"}
    a = load(AgentSettings, env=env, flags={"name": "edge-7", "tags": ["edge"]})
    assert (a.server, a.labels, a.cpus, a.name, a.tags) == (
        "http://a:1,http://b:2",
        {"zone": "a"},
        "2",
        "edge-7",
        ["edge"],
    )


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({"port": 70000}, "port"),
        ({"threshold_cpu": "high"}, "policy.threshold_cpu"),
        ({"threshold_cpu": 0}, "policy.threshold_cpu"),
        ({"scheduler": "random"}, "policy.scheduler"),
        ({"log_format": "xml"}, "log_format"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_bad_value_names_the_field(flags: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        load(ServerSettings, env={}, flags=flags)
    assert info.value.details["field"] == field
    assert info.value.message.startswith(f"config: {field}: ")


def test_bad_value_from_env_or_file_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as info:
        load(ServerSettings, env={"UPDRAFT_THRESHOLD_MEMORY": "lots"})
    assert info.value.details["field"] == "policy.threshold_memory"
    f = write(tmp_path, "s.json", json.dumps(dict(SEED, threshold_cpu=150)))
    with pytest.raises(ValidationError) as info:
        load(ServerSettings, f, env={})
    assert info.value.details["field"] == "policy.threshold_cpu"


def test_unreadable_or_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read"):
        load(ServerSettings, tmp_path / "missing.json", env={})
    with pytest.raises(ValidationError, match="not valid JSON"):
        load(ServerSettings, write(tmp_path, "bad.json", "{nope"), env={})
    with pytest.raises(ValidationError, match="not valid TOML"):
        load(ServerSettings, write(tmp_path, "bad.toml", "= 1"), env={})
    with pytest.raises(ValidationError, match="must hold an object"):
        load(ServerSettings, write(tmp_path, "list.json", "[1, 2]"), env={})


def test_settings_are_frozen() -> None:
    s = load(ServerSettings, env={})
    with pytest.raises(Exception, match="frozen"):
        s.port = 1


def test_the_server_tunes_the_interpreter_from_its_settings() -> None:
    import gc
    import sys

    from updraft.control.server import tune_interpreter

    before = gc.get_threshold(), sys.getswitchinterval()
    try:
        env = {"UPDRAFT_GC_THRESHOLDS": "[4321, 7, 99]", "UPDRAFT_GIL_SWITCH_MS": "2.5"}
        tune_interpreter(load(ServerSettings, env=env))
        assert gc.get_threshold() == (4321, 7, 99)
        assert sys.getswitchinterval() == pytest.approx(0.0025)
    finally:
        gc.set_threshold(*before[0])
        sys.setswitchinterval(before[1])


@pytest.mark.parametrize("value", ["0", "-1", "101"])
def test_a_switch_interval_out_of_range_names_the_field(value: str) -> None:
    with pytest.raises(ValidationError, match="gil_switch_ms"):
        load(ServerSettings, env={"UPDRAFT_GIL_SWITCH_MS": value})
