"""No poisonous input (issue 15, item 8): every rule of ``model.limits``, as the API sees a body.

Bodies are parsed with ``json.loads`` first, as FastAPI does, so ``1e999`` arrives as ``inf`` and ``"\\ud800"``
as a lone surrogate — exactly what an attacker sends.
"""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from updraft.errors import ValidationError
from updraft.model import TaskSpec, parse_cpu, parse_memory
from updraft.model.api import (
    AttemptReport,
    Heartbeat,
    LabelChange,
    LogBatch,
    NodeRegistration,
    ProbeReport,
    SubmitRequest,
    TaintChange,
)
from updraft.model.limits import INT64_MAX, MAX_ENV, MAX_LABELS

CAP = {"cpu": "1", "memory": "1Gi"}


def locs(model: type[pydantic.BaseModel], raw: str) -> list[str]:
    """The fields a body is refused for (empty when it validates)."""
    try:
        model.model_validate(json.loads(raw))
    except pydantic.ValidationError as exc:
        return [".".join(str(p) for p in e["loc"]) for e in exc.errors()]
    return []


def spec_json(**fields: Any) -> str:
    return json.dumps({"image": "busybox", **fields})


# -- numbers: finite and in range --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ('"timeout": 1e999', "timeout"),
        ('"timeout": NaN', "timeout"),
        ('"timeout": -Infinity', "timeout"),
        ('"reschedule_after": 1e999', "reschedule_after"),
        ('"on_disconnect": "stop", "stop_after": Infinity', "stop_after"),
        ('"liveness_probe": {"kind": "tcp", "port": 80, "period_seconds": 1e999}', "liveness_probe.period_seconds"),
        ('"readiness_probe": {"kind": "tcp", "port": 80, "timeout_seconds": NaN}', "readiness_probe.timeout_seconds"),
        ('"readiness_probe": {"kind": "tcp", "port": 80, "initial_delay_seconds": 1e300}',
         "readiness_probe.initial_delay_seconds"),
        ('"readiness_probe": {"kind": "tcp", "port": 80, "failure_threshold": 9223372036854775808}',
         "readiness_probe.failure_threshold"),
    ],
)
def test_spec_numbers_must_be_finite_and_in_range(fields: str, where: str) -> None:
    assert locs(SubmitRequest, '{"image": "busybox", ' + fields + "}") == [where]


def test_heartbeat_sent_at_nan_and_infinite_loads_are_refused() -> None:
    assert locs(Heartbeat, '{"cpu_pct": 1, "memory_pct": 1, "sent_at": NaN}') == ["sent_at"]
    assert locs(Heartbeat, '{"cpu_pct": NaN, "memory_pct": 1}') == ["cpu_pct"]
    assert locs(Heartbeat, '{"cpu_pct": 1, "memory_pct": 1e999}') == ["memory_pct"]
    assert locs(Heartbeat, '{"cpu_pct": 1, "memory_pct": 1, "bandwidth": Infinity}') == ["bandwidth"]
    assert locs(Heartbeat, '{"cpu_pct": 1, "memory_pct": 1, "sent_at": 1700000000.5}') == []


def test_heartbeat_tokens_are_int64() -> None:
    assert locs(Heartbeat, '{"cpu_pct": 1, "memory_pct": 1, "running": [["t-1", 9223372036854775808]]}') == [
        "running.0.1"
    ]
    assert locs(Heartbeat, '{"cpu_pct": 1, "memory_pct": 1, "running": [["t-1", -1]]}') == ["running.0.1"]
    assert locs(Heartbeat, f'{{"cpu_pct": 1, "memory_pct": 1, "running": [["t-1", {INT64_MAX}]]}}') == []


def test_log_at_nan_and_report_times_are_refused() -> None:
    assert locs(LogBatch, '{"lines": [{"at": NaN, "data": "x"}]}') == ["lines.0.at"]
    assert locs(LogBatch, '{"lines": [{"at": 1e999, "data": "x"}]}') == ["lines.0.at"]
    assert locs(AttemptReport, '{"state": "exited", "finished_at": NaN, "exit_code": 0}') == ["finished_at"]
    assert locs(AttemptReport, '{"state": "exited", "exit_code": 9223372036854775808}') == ["exit_code"]
    assert locs(ProbeReport, '{"restarts": 9223372036854775808}') == ["restarts"]


# -- quantities --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["9" * 400, "99999999Ei", "9223372036854775808", "1e3", "inf", "NaN"])
def test_absurd_memory_is_a_validation_error_not_an_overflow(bad: str) -> None:
    with pytest.raises(ValidationError):
        parse_memory(bad)
    where = locs(SubmitRequest, spec_json(resources={"limits": {"memory": bad}}))
    assert where == ["resources.limits.memory"]


@pytest.mark.parametrize("bad", ["9" * 400, "9223372036854775808", "9223372036854775808m", "9223372036854776", float("inf"), float("nan")])
def test_absurd_cpu_is_a_validation_error_not_an_overflow(bad: str | float) -> None:
    with pytest.raises(ValidationError):
        parse_cpu(bad)


def test_capacity_beyond_int64_names_the_field() -> None:
    body = json.dumps({"capacity": {"cpu": "9" * 400, "memory": "1Gi"}})
    assert locs(NodeRegistration, body) == ["capacity.cpu"]


def test_quantities_are_exact_at_the_edges() -> None:
    assert parse_memory(str(INT64_MAX)) == INT64_MAX
    assert parse_memory("7Ei") == 7 * 2**60
    assert parse_cpu("9223372036854775807m") == INT64_MAX
    assert parse_cpu("0.001") == 1 and parse_memory("1.5Gi") == 3 * 2**29


def test_a_long_bad_quantity_is_not_echoed_whole() -> None:
    with pytest.raises(ValidationError) as info:
        parse_memory("x" * 100_000)
    assert len(info.value.message) < 200


# -- strings -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ('"env": {"K": "\\ud800"}', "env.K"),
        ('"env": {"\\udfff": "v"}', "env.*.[key]"),
        ('"secret_env": {"K": "a\\u0000b"}', "secret_env.K"),
        ('"command": ["sh", "\\ud83d"]', "command.1"),
        ('"args": ["a\\u0000"]', "args.0"),
        ('"labels": {"k": "\\ud800"}', "labels.k"),
        ('"workdir": "/tmp\\n"', "workdir"),
        ('"volumes": ["data:/d\\u0000"]', "volumes.0"),
    ],
)
def test_strings_are_valid_unicode_without_nul(fields: str, where: str) -> None:
    got = locs(SubmitRequest, '{"image": "busybox", ' + fields + "}")
    head, _, tail = where.partition("*")  # "*": a key pydantic cannot print (a lone surrogate)
    assert len(got) == 1 and got[0].startswith(head) and got[0].endswith(tail) and len(got[0]) >= len(where) - 1


def test_env_values_may_hold_newlines_and_any_script() -> None:
    assert locs(SubmitRequest, spec_json(env={"PEM": "-----BEGIN-----\nabc\n", "GREETING": "grüß 👋"})) == []


@pytest.mark.parametrize("name", ["", "A=B", "A B", "A\nB", "é", "x" * 257])
def test_env_names(name: str) -> None:
    assert locs(SubmitRequest, spec_json(env={name: "v"})) == [f"env.{name}.[key]"]


# -- names and labels --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key", ["zone", "site-3", "example.com/zone", "a.b-c/x_y.z", "k" * 63, "A1"]
)
def test_label_keys_that_follow_the_grammar(key: str) -> None:
    assert locs(LabelChange, json.dumps({"set": {key: "v"}})) == []


@pytest.mark.parametrize("key", ["-bad", "bad-", "a/b/c", "zone\n", "k" * 64, "Ex.com/k", "", "é", "a b", "x\u202e"])
def test_label_keys_that_do_not(key: str) -> None:
    assert locs(LabelChange, json.dumps({"set": {key: "v"}})) == [f"set.{key}.[key]"]


@pytest.mark.parametrize("value", ["a\nb", "x" * 64, "-x", "a b", "\u0000", "\ud800"])
def test_label_values_that_do_not(value: str) -> None:
    assert locs(LabelChange, json.dumps({"set": {"k": value}})) == ["set.k"]


def test_label_values_may_be_empty() -> None:
    assert locs(LabelChange, json.dumps({"set": {"k": ""}, "remove": ["old"]})) == []


def test_node_selector_and_origin() -> None:
    assert locs(SubmitRequest, spec_json(node_selector={"zone\r": "a"})) == ["node_selector.zone\r.[key]"]
    assert locs(SubmitRequest, spec_json(origin="edge-1\nINFO forged line")) == ["origin"]
    assert locs(SubmitRequest, spec_json(origin="edge-1")) == []


def test_tags_taints_and_tolerations_follow_the_grammar() -> None:
    assert locs(NodeRegistration, json.dumps({"capacity": CAP, "tags": ["edge\n"]})) == ["tags.0"]
    assert locs(NodeRegistration, json.dumps({"capacity": CAP, "taints": [{"key": "a\u0000"}]})) == ["taints.0.key"]
    assert locs(TaintChange, json.dumps({"remove": ["k\n"]})) == ["remove.0"]
    assert locs(SubmitRequest, spec_json(tolerations=[{"key": "k", "value": "v\n"}])) == ["tolerations.0.value"]
    assert locs(SubmitRequest, spec_json(tolerations=[{"operator": "Exists"}])) == []


def test_node_name_grammar() -> None:
    adapter = pydantic.TypeAdapter(__import__("updraft.model.limits", fromlist=["NodeName"]).NodeName)
    for ok in ("edge-1", "cloud.example.com", "n_1", "A", "x" * 253):
        adapter.validate_python(ok)
    for bad in ("", "-x", "x-", "a b", "a\nb", "a/b", "x" * 254, "é"):
        with pytest.raises(pydantic.ValidationError):
            adapter.validate_python(bad)


# -- collection sizes --------------------------------------------------------------------------------------
def test_collections_are_capped() -> None:
    env = {f"K{i}": "v" for i in range(MAX_ENV + 1)}
    assert locs(SubmitRequest, spec_json(env=env)) == ["env"]
    labels = {f"k{i}": "v" for i in range(MAX_LABELS + 1)}
    assert locs(SubmitRequest, spec_json(labels=labels)) == ["labels"]
    assert locs(SubmitRequest, spec_json(command=["x"] * 1025)) == ["command"]
    assert locs(SubmitRequest, spec_json(volumes=["v:/v"] * 17)) == ["volumes"]
    hb = {"cpu_pct": 1, "memory_pct": 1, "running": [["t", 1]] * 4097}
    assert locs(Heartbeat, json.dumps(hb)) == ["running"]
    assert locs(NodeRegistration, json.dumps({"capacity": CAP, "images": ["a"] * 4097})) == ["images"]
    assert locs(LogBatch, json.dumps({"lines": [{"at": 1, "data": ""}] * 10001})) == ["lines"]


# -- secrets -----------------------------------------------------------------------------------------------
def test_secret_env_is_set_in_the_container_but_kept_apart() -> None:
    s = TaskSpec(image="busybox", env={"A": "1"}, secret_env={"TOKEN": "s3cret"})
    assert s.container_env() == {"A": "1", "TOKEN": "s3cret"}
    with pytest.raises(pydantic.ValidationError, match="both env and secret_env"):
        TaskSpec(image="busybox", env={"A": "1"}, secret_env={"A": "2"})


# -- round trip --------------------------------------------------------------------------------------------
_any_char = st.characters(codec=None, exclude_categories=())  # includes lone surrogates and controls
_hostile_text = st.text(_any_char, max_size=8) | st.sampled_from(["edge-1", "zone", "a", "", "/data:/d"])
_hostile_float = st.floats(allow_nan=True, allow_infinity=True) | st.floats(0, 1e6)
_hostile_int = st.integers(-(2**70), 2**70) | st.integers(0, 100)
_quantity = st.sampled_from(["500m", "2", "1Gi", "0.5", "99999999Ei", "9" * 40, "1.5Gi", "7Ei", "1e3"])
_probe = st.fixed_dictionaries(
    {"kind": st.sampled_from(["tcp", "http", "exec"])},
    optional={
        "port": _hostile_int,
        "path": _hostile_text,
        "command": st.lists(_hostile_text, max_size=3),
        "period_seconds": _hostile_float,
        "timeout_seconds": _hostile_float,
        "initial_delay_seconds": _hostile_float,
        "failure_threshold": _hostile_int,
    },
)
_spec = st.fixed_dictionaries(
    {"image": st.sampled_from(["busybox", "127.0.0.1:5000/app:1", "Bad Image"])},
    optional={
        "command": st.lists(_hostile_text, max_size=3),
        "args": st.lists(_hostile_text, max_size=3),
        "env": st.dictionaries(_hostile_text, _hostile_text, max_size=3),
        "secret_env": st.dictionaries(_hostile_text, _hostile_text, max_size=2),
        "workdir": _hostile_text,
        "labels": st.dictionaries(_hostile_text, _hostile_text, max_size=3),
        "node_selector": st.dictionaries(_hostile_text, _hostile_text, max_size=2),
        "priority": _hostile_int,
        "origin": _hostile_text,
        "timeout": _hostile_float,
        "max_retries": _hostile_int,
        "reschedule_after": _hostile_float,
        "volumes": st.lists(_hostile_text, max_size=2),
        "resources": st.fixed_dictionaries(
            {}, optional={"requests": st.fixed_dictionaries(
                {}, optional={"cpu": _quantity, "memory": _quantity, "x.io/gpu": _hostile_int}
            )}
        ),
        "affinity": st.fixed_dictionaries({"nodeAffinity": st.fixed_dictionaries({
            "requiredDuringSchedulingIgnoredDuringExecution": st.fixed_dictionaries({"nodeSelectorTerms": st.lists(
                st.fixed_dictionaries({"matchExpressions": st.lists(st.fixed_dictionaries({
                    "key": _hostile_text, "operator": st.sampled_from(["In", "Exists", "Gt"]),
                    "values": st.lists(_hostile_text, max_size=2)}), max_size=2)}), min_size=1, max_size=2)})})}),
        "tolerations": st.lists(
            st.fixed_dictionaries({"key": _hostile_text, "operator": st.just("Exists")}), max_size=2
        ),
        "liveness_probe": _probe,
        "readiness_probe": _probe,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_spec)
def test_any_spec_that_validates_round_trips_through_json(body: dict[str, Any]) -> None:
    try:
        spec = TaskSpec.model_validate(body)
    except pydantic.ValidationError:
        return
    text = spec.model_dump_json()
    text.encode("utf-8")  # storable as UTF-8 (no lone surrogates)
    assert TaskSpec.model_validate_json(text) == spec
    assert TaskSpec.model_validate(json.loads(text)) == spec
    assert spec.resources.request_cpu() <= INT64_MAX and spec.resources.request_memory() <= INT64_MAX


def test_extended_resource_counts_are_int64_and_capped() -> None:
    assert locs(SubmitRequest, spec_json(resources={"requests": {"x.io/gpu": 2**63}})) == [
        "resources.requests.x.io/gpu"
    ]
    many = {f"x.io/r{i}": 1 for i in range(33)}
    assert locs(SubmitRequest, spec_json(resources={"limits": many})) == ["resources.limits"]
    assert locs(NodeRegistration, json.dumps({"capacity": {**CAP, "x.io/gpu": 2**63}})) == ["capacity.x.io/gpu"]
    assert locs(SubmitRequest, spec_json(resources={"requests": {"x.io/gpu": INT64_MAX}})) == []


def test_node_affinity_keys_and_values_follow_the_grammar() -> None:
    def affinity(key: str, values: list[str]) -> str:
        term = {"matchExpressions": [{"key": key, "operator": "In", "values": values}]}
        return spec_json(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [term]}}})

    where = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms.0.matchExpressions.0"
    assert locs(SubmitRequest, affinity("zone", ["a", "b"])) == []
    assert locs(SubmitRequest, affinity("zone\n", ["a"])) == [f"{where}.key"]
    assert locs(SubmitRequest, affinity("zone", ["\ud800"])) == [f"{where}.values.0"]
    assert locs(SubmitRequest, affinity("zone", ["x" * 64])) == [f"{where}.values.0"]


@pytest.mark.parametrize("image", ["busybox\n", "busybox:1\n", "busybox:v1\u00e9", "busybox:\u0661"])
def test_an_image_reference_is_ascii_and_whole(image: str) -> None:
    """``$`` alone lets a trailing newline through and ``\\w`` any Unicode letter: both are refused."""
    assert locs(SubmitRequest, json.dumps({"image": image})) == ["image"]


def test_a_quantity_is_one_line() -> None:
    assert locs(SubmitRequest, spec_json(resources={"requests": {"cpu": "500m\n"}})) == ["resources.requests.cpu"]
    assert locs(NodeRegistration, json.dumps({"capacity": {"cpu": "1\r", "memory": "1Gi"}})) == ["capacity.cpu"]
