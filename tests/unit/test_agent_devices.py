"""agent/devices.py: GPU detection, a container's own devices, Docker device requests."""

from __future__ import annotations

import subprocess

import pytest
from builders import spec

from updraft.agent import devices
from updraft.agent.devices import GPU, DevicePool
from updraft.errors import ValidationError

SMI = """GPU 0: Tesla V100-SXM2-16GB (UUID: GPU-1111)
GPU 1: Tesla V100-SXM2-16GB (UUID: GPU-2222)
"""


def test_nvidia_smi_output_gives_capacity_and_labels() -> None:
    gpus = devices.parse_nvidia_smi(SMI + "some warning\n")
    assert [g.index for g in gpus] == ["0", "1"] and gpus[1].uuid == "GPU-2222"
    assert devices.gpu_capacity(gpus) == {GPU: 2}
    assert devices.gpu_labels(gpus) == {"nvidia.com/gpu.product": "Tesla-V100-SXM2-16GB", "nvidia.com/gpu.count": "2"}
    assert devices.gpu_capacity([]) == {} and devices.gpu_labels([]) == {}


def test_detection_without_nvidia_smi_or_when_it_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devices.shutil, "which", lambda _: None)
    assert devices.detect_gpus() == []
    monkeypatch.setattr(devices.shutil, "which", lambda _: "/usr/bin/nvidia-smi")

    def failing(*a: object, **k: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(["nvidia-smi"], 9, "", "NVIDIA-SMI has failed")

    assert devices.detect_gpus(failing) == []

    def working(*a: object, **k: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(["nvidia-smi"], 0, SMI, "")

    assert len(devices.detect_gpus(working)) == 2


def test_declared_by_flag() -> None:
    assert devices.parse_declared(["nvidia.com/gpu=2", "example.com/fpga=1"]) == {GPU: 2, "example.com/fpga": 1}
    for bad in ("gpu=2", "nvidia.com/gpu", "nvidia.com/gpu=two"):
        with pytest.raises(ValidationError):
            devices.parse_declared([bad])


def test_each_container_gets_its_own_gpus() -> None:
    pool = DevicePool({GPU: ["0", "1", "2"]})
    two, one = spec(extended={GPU: 2}), spec(extended={GPU: 1})
    assert pool.take("a", two) == {GPU: ["0", "1"]}
    assert pool.take("b", two) is None  # only one left: nothing reserved
    assert pool.take("b", one) == {GPU: ["2"]}
    pool.release("a")
    assert pool.free(GPU) == ["0", "1"]
    assert pool.take("c", spec()) == {}  # no accelerators asked


def test_docker_device_requests() -> None:
    (req,) = devices.device_requests({GPU: ["0", "2"]})
    assert (req["Driver"], req["DeviceIDs"], req["Capabilities"]) == ("nvidia", ["0", "2"], [["gpu"]])
    (count,) = devices.count_requests(spec(extended={GPU: 2}))
    assert count["Count"] == 2
    assert devices.device_requests({}) == () and devices.count_requests(spec()) == ()


def test_assignment_survives_an_agent_restart_through_the_label() -> None:
    label = devices.label_value({GPU: ["1", "2"]})
    pool = DevicePool({GPU: ["0", "1", "2"]})
    pool.adopt("running", devices.parse_label(label))
    assert pool.free(GPU) == ["0"]
