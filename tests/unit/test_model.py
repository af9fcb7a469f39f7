"""Quantities, TaskSpec validation, tolerations and the task state machine."""

from __future__ import annotations

import pydantic
import pytest
from builders import DIGEST, spec, tol

from updraft.errors import Conflict, ValidationError
from updraft.model import (
    TRANSITIONS,
    Effect,
    ResourceList,
    Resources,
    Taint,
    TaskSpec,
    TaskState,
    check_transition,
    format_cpu,
    format_memory,
    parse_cpu,
    parse_memory,
)

# -- quantities ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "millis"),
    [("500m", 500), ("2", 2000), (0.5, 500), ("0.25", 250), (3, 3000), ("1m", 1), (" 750m ", 750)],
)
def test_parse_cpu(text: str | float, millis: int) -> None:
    assert parse_cpu(text) == millis


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("256Mi", 256 * 2**20),
        ("1Gi", 2**30),
        ("1G", 10**9),
        ("512Ki", 512 * 1024),
        ("1.5Gi", 3 * 2**29),
        ("1000", 1000),
        (4096, 4096),
        ("2k", 2000),
    ],
)
def test_parse_memory(text: str | int, n: int) -> None:
    assert parse_memory(text) == n


@pytest.mark.parametrize("bad", ["12Zi", "abc", "-1", "", "1.5.2", "1 Gi", "5m"])
def test_bad_memory_raises_validation_error_naming_the_field(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_memory(bad, field="resources.limits.memory")
    assert info.value.details["field"] == "resources.limits.memory"
    assert info.value.message.startswith("resources.limits.memory:")


@pytest.mark.parametrize("bad", ["abc", "-1", "12Zi", "2cores", "0.0001", "1.5m"])
def test_bad_cpu_raises_validation_error_naming_the_field(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_cpu(bad, field="capacity.cpu")
    assert info.value.details["field"] == "capacity.cpu"
    assert "capacity.cpu" in info.value.message


def test_format_round_trips() -> None:
    assert format_cpu(2000) == "2" and format_cpu(250) == "250m"
    assert format_memory(2**30) == "1Gi" and format_memory(3 * 2**20) == "3Mi" and format_memory(1000) == "1000"
    for millis in (1, 999, 1000, 4500):
        assert parse_cpu(format_cpu(millis)) == millis
    for n in (1, 1024, 2**20 * 7, 10**9):
        assert parse_memory(format_memory(n)) == n


# -- TaskSpec ------------------------------------------------------------------------------------------


def _error_locs(exc: pydantic.ValidationError) -> list[str]:
    return [".".join(str(p) for p in e["loc"]) for e in exc.errors()]


def test_spec_forbids_unknown_fields() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        TaskSpec(image="busybox", bogus=1)  # type: ignore[call-arg]
    assert _error_locs(info.value) == ["bogus"]
    assert info.value.errors()[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "busybox:1.36",
        "library/busybox:latest",
        "127.0.0.1:5000/updraft/worker:v1.2",
        "localhost:5000/app",
        "registry.example.com/team/app_x:1",
        f"busybox@{DIGEST}",
        f"127.0.0.1:5000/app:v1@{DIGEST}",
    ],
)
def test_valid_image_references(image: str) -> None:
    assert TaskSpec(image=image).image == image


@pytest.mark.parametrize(
    "image", ["Busybox", "bad image", "app:", "app@sha256:abc", "-app", "app//x", ":tag", "app:-x", "a" * 513]
)
def test_invalid_image_references(image: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        TaskSpec(image=image)
    assert _error_locs(info.value) == ["image"]


def test_image_name_drops_tag_and_digest() -> None:
    assert TaskSpec(image=f"127.0.0.1:5000/app:v1@{DIGEST}").image_name == "127.0.0.1:5000/app"


def test_requests_above_limits_rejected() -> None:
    with pytest.raises(pydantic.ValidationError, match=r"requests\.cpu 2 exceeds limits\.cpu 1"):
        Resources(requests=ResourceList(cpu="2"), limits=ResourceList(cpu="1"))
    with pytest.raises(pydantic.ValidationError, match=r"requests\.memory"):
        Resources(requests=ResourceList(memory="2Gi"), limits=ResourceList(memory="1Gi"))
    ok = Resources(requests=ResourceList(cpu="500m", memory="1Gi"), limits=ResourceList(cpu="500m", memory="1Gi"))
    assert ok.request_cpu() == 500


def test_bad_quantity_in_spec_names_its_path() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        TaskSpec.model_validate({"image": "busybox", "resources": {"requests": {"memory": "12Zi"}}})
    assert _error_locs(info.value) == ["resources.requests.memory"]
    assert "12Zi" in str(info.value)


def test_request_defaults_to_limit_kubernetes_rule() -> None:
    res = Resources(limits=ResourceList(cpu="1", memory="1Gi"))
    assert (res.request_cpu(), res.request_memory()) == (1000, 2**30)
    assert Resources().request_cpu() == 0


def test_spec_field_rules() -> None:
    with pytest.raises(pydantic.ValidationError, match="stop_after"):
        TaskSpec(image="busybox", on_disconnect="stop")
    with pytest.raises(pydantic.ValidationError):
        TaskSpec(image="busybox", env={"A=B": "x"})
    with pytest.raises(pydantic.ValidationError):
        TaskSpec(image="busybox", node_selector={"-bad": "x"})
    with pytest.raises(pydantic.ValidationError):
        TaskSpec(image="busybox", priority=1001)


def test_spec_is_immutable() -> None:
    s = spec()
    with pytest.raises(pydantic.ValidationError):
        s.image = "other"


# -- taints and tolerations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "value", "effect"),
    [
        ("gpu=true:NoSchedule", "gpu", "true", Effect.NO_SCHEDULE),
        ("dedicated:NoExecute", "dedicated", "", Effect.NO_EXECUTE),
        ("busy=yes:PreferNoSchedule", "busy", "yes", Effect.PREFER_NO_SCHEDULE),
        ("solo", "solo", "", Effect.NO_SCHEDULE),
        ("k=v", "k", "v", Effect.NO_SCHEDULE),
    ],
)
def test_taint_parse(text: str, key: str, value: str, effect: Effect) -> None:
    t = Taint.parse(text)
    assert (t.key, t.value, t.effect) == (key, value, effect)
    if ":" in text:
        assert str(t) == text


@pytest.mark.parametrize("bad", ["k=v:Sometimes", ":NoSchedule", "=v:NoSchedule"])
def test_taint_parse_rejects(bad: str) -> None:
    with pytest.raises(ValidationError) as info:
        Taint.parse(bad)
    assert info.value.details["field"] == "taint"


def test_toleration_rules() -> None:
    with pytest.raises(pydantic.ValidationError, match="Exists must not set a value"):
        tol("k", "Exists", "v")
    with pytest.raises(pydantic.ValidationError, match="empty key needs operator Exists"):
        tol("", "Equal")
    with pytest.raises(pydantic.ValidationError):
        tol("k", "In")
    assert tol("", "Exists").key == ""


GPU = Taint.parse("gpu=true:NoSchedule")


@pytest.mark.parametrize(
    ("toleration", "tolerated"),
    [
        (tol("gpu", "Equal", "true"), True),  # effect None matches every effect
        (tol("gpu", "Equal", "true", "NoSchedule"), True),
        (tol("gpu", "Equal", "true", "NoExecute"), False),  # wrong effect
        (tol("gpu", "Equal", "false"), False),  # wrong value
        (tol("gpu", "Equal", ""), False),  # Equal with empty value only matches an empty value
        (tol("gpu", "Exists"), True),  # Exists ignores the value
        (tol("gpu", "Exists", effect="PreferNoSchedule"), False),
        (tol("other", "Exists"), False),
        (tol("", "Exists"), True),  # empty key + Exists tolerates everything
        (tol("", "Exists", effect="NoSchedule"), True),
        (tol("", "Exists", effect="NoExecute"), False),  # ... but only of its effect when one is set
    ],
)
def test_tolerates_kubernetes_semantics(toleration: object, tolerated: bool) -> None:
    assert spec(tolerations=[toleration]).tolerates(GPU) is tolerated


def test_tolerates_needs_one_matching_toleration() -> None:
    s = spec(tolerations=[tol("x", "Exists"), tol("gpu", "Equal", "true", "NoSchedule")])
    assert s.tolerates(GPU)
    assert not spec().tolerates(GPU)
    assert spec(tolerations=[tol("k", "Equal", "")]).tolerates(Taint.parse("k:NoSchedule"))


# -- state machine -------------------------------------------------------------------------------------

ALL_PAIRS = [(a, b) for a in TaskState for b in TaskState]


@pytest.mark.parametrize(("old", "new"), ALL_PAIRS, ids=[f"{a}->{b}" for a, b in ALL_PAIRS])
def test_check_transition_follows_the_table(old: TaskState, new: TaskState) -> None:
    if old == new or new in TRANSITIONS[old]:
        check_transition(old, new)
    else:
        with pytest.raises(Conflict) as info:
            check_transition(old, new)
        assert info.value.details == {"state": str(old), "requested": str(new)}


def test_transition_table_shape() -> None:
    for terminal in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED):
        assert terminal.terminal and TRANSITIONS[terminal] == frozenset()
    # drift and retry go back to pending; pending never jumps straight to running
    assert TaskState.PENDING in TRANSITIONS[TaskState.RUNNING]
    assert TaskState.PENDING in TRANSITIONS[TaskState.SCHEDULED]
    assert TaskState.RUNNING not in TRANSITIONS[TaskState.PENDING]
    with pytest.raises(Conflict):
        check_transition(TaskState.SUCCEEDED, TaskState.PENDING)
