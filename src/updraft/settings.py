"""One validated settings object per process (DESIGN.md, decision 6): defaults → file → environment → flags.

Nothing reads the environment or a file anywhere else; the CLI builds these once and passes them in.
Files may be JSON or TOML. Environment variables are ``UPDRAFT_<FIELD>`` (``UPDRAFT_THRESHOLD_CPU`` sets
``policy.threshold_cpu`` for the server).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator
from pydantic import ValidationError as PydanticValidationError

from updraft.errors import ValidationError
from updraft.model.limits import NODE_NAME_PATTERN
from updraft.model.policy import Policy

T = TypeVar("T", bound=BaseModel)


def default_data_dir(component: str) -> Path:
    return Path(platformdirs.user_data_dir("updraft")) / component


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorSettings(_Settings):
    """φ-accrual failure detector: a node is suspect above ``phi_suspect`` and unreachable above ``phi_unreachable``."""

    phi_suspect: float = Field(default=3.0, gt=0)
    phi_unreachable: float = Field(default=8.0, gt=0)
    min_std_seconds: float = Field(default=0.1, gt=0, description="floor on the heartbeat interval deviation")
    acceptable_pause_seconds: float = Field(default=0.25, ge=0, description="slack added to the mean interval")
    window: int = Field(default=100, ge=4, le=10000)
    max_silence_seconds: float = Field(default=5.0, gt=0, description="unreachable after this long regardless")
    max_delay_slack_seconds: float = Field(
        default=2.0, ge=0, description="cap on the extra time allowed for a node's observed heartbeat delays (0: off)"
    )


class RegistryLogin(_Settings):
    """A login for one registry host (``registry_credentials = {"HOST[:PORT]" = {username, password}}``)."""

    username: str = Field(min_length=1, max_length=256)
    password: str = Field(default="", max_length=4096, repr=False)
    realms: list[str] = Field(
        default_factory=list, description="token realm hosts on another host that may receive this login"
    )


RegistryLogins = dict[
    Annotated[str, Field(min_length=1, max_length=260, pattern=r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9a-fA-F:]+\](:[0-9]{1,5})?$")],
    RegistryLogin,
]


class ServerSettings(_Settings):
    host: str = "127.0.0.1"
    port: int = Field(default=8470, ge=0, le=65535)
    data_dir: Path = Field(default_factory=lambda: default_data_dir("server"))
    token: str | None = Field(
        default=None, repr=False, description="not used by the server (a warning says so); see `updraft token create`"
    )
    auth: bool = Field(default=True, description="authenticate every request (off only on loopback: --no-auth)")
    tokens_file: Path | None = Field(
        default=None, description="token records (hashes); default DATA_DIR/tokens.json; servers of one cluster share it"
    )
    insecure_http: bool = Field(default=False, description="allow plain HTTP off loopback")
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = Field(default=None, description="require client certificates signed by this CA")
    policy: Policy = Policy()
    heartbeat_interval: float = Field(default=1.0, gt=0)
    scheduler_interval: float = Field(default=0.5, gt=0)
    reschedule_after: float = Field(default=0.0, ge=0, description="seconds unreachable before tasks drift")
    stop_margin: float = Field(default=2.0, ge=0, description="extra wait past a task's stop_after before drift")
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=60.0, gt=0)
    detector: DetectorSettings = DetectorSettings()
    max_body_bytes: int = Field(default=1 << 20, gt=0)
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    image_policy: Literal["off", "warn", "enforce"] = "warn"
    registry_username: str | None = Field(
        default=None, repr=False, description="deprecated and unused: it names no host (use registry_credentials)"
    )
    registry_password: str | None = Field(default=None, repr=False, description="deprecated, see registry_username")
    registry_credentials: RegistryLogins = Field(
        default_factory=dict, repr=False, description="per registry host: the login sent to that host only"
    )
    registry_allow: list[str] | None = Field(
        default=None, description="registry hosts the server resolves images from (None: any a submitter names)"
    )
    registry_insecure: list[str] = Field(
        default_factory=list, description="registries spoken to over plain HTTP (loopback ones always are)"
    )
    registry_timeout: float = Field(default=3.0, gt=0, description="seconds for one registry request at submit")
    image_pin_retry_seconds: float = Field(
        default=2.0, gt=0, description="how often tasks waiting for an unreachable registry retry their pin"
    )
    # -- admission and pacing (README, "Limits") -----------------------------------------------------------
    max_pending_submits: int = Field(
        default=256, ge=1, description="submits admitted at once (being validated or committed); more answer 429"
    )
    max_pending_tasks: int = Field(
        default=100_000, ge=1, description="tasks waiting to be placed; beyond it submits answer 429"
    )
    max_loop_lag_ms: float = Field(
        default=1.0,
        ge=0,
        description="submits answer 429 while the event loop runs this late (heartbeats and probes first); 0: off",
    )
    gc_thresholds: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        default=(3_000, 3, 600),
        description="CPython's collector thresholds (gc.set_threshold): allocations before a young collection, "
        "then young collections per middle one and middle ones per full one (README, 'Load')",
    )
    gil_switch_ms: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description="CPython's switch interval (sys.setswitchinterval): how long a scheduling pass or the writer "
        "may keep the interpreter lock while the event loop's thread waits for it (README, 'Load')",
    )
    max_inflight_reads: int = Field(
        default=64, ge=1, description="list, event and log reads served at once; more answer 429"
    )
    scheduler_batch: int = Field(default=1000, ge=1, description="pending tasks decided per scheduling pass")
    worker_threads: int = Field(
        default=64, ge=1, le=1024, description="threads that run store reads and wait for commits (FastAPI sync routes)"
    )
    node_flush_seconds: float = Field(
        default=30.0, gt=0, description="how often a node's metrics and heartbeat time are written to the store"
    )
    # -- high availability on etcd (docs/ha.md) ------------------------------------------------------------
    store: Literal["sqlite", "etcd"] = Field(default="sqlite", description="sqlite: one server; etcd: several")
    etcd_endpoints: list[str] = Field(
        default_factory=lambda: ["http://127.0.0.1:2379"], min_length=1, description="etcd client URLs"
    )
    etcd_prefix: str = Field(default="/updraft/", pattern=r"^/[A-Za-z0-9._/-]*$", description="key prefix")
    etcd_lease_ttl: int = Field(
        default=2, ge=1, le=60, description="seconds a silent leader keeps the lease (renewed every third of it)"
    )
    etcd_timeout: float = Field(default=2.0, gt=0, description="seconds for one etcd request")
    etcd_history_ttl: int = Field(
        default=3600, ge=60, description="seconds events and log lines are kept in etcd (between half and all of it)"
    )
    server_id: str | None = Field(default=None, max_length=128, description="this server's name in the cluster")
    advertise_url: str | None = Field(
        default=None, description="the URL other servers reach this one at (default http://HOST:PORT)"
    )

    @field_validator("etcd_endpoints", mode="before")
    @classmethod
    def _endpoint_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return value


class RegistrySettings(_Settings):
    """For ``updraft build`` and ``updraft push``: where to push, and as whom (``UPDRAFT_REGISTRY_*``)."""

    registry: str | None = Field(default=None, description="host[:port] for names without a registry host")
    registry_username: str | None = Field(default=None, repr=False)
    registry_password: str | None = Field(default=None, repr=False)


class AgentSettings(_Settings):
    server: str = "http://127.0.0.1:8470"
    """One URL, or several separated by commas, each optionally with nginx-style options (docs/net.md).

    A file may give a list of server lines instead, e.g. TOML ``server = ["http://a:8470 weight=2",
    "http://b:8470 backup"]``; the lines are checked when the settings are loaded.
    """

    @field_validator("server", mode="before")
    @classmethod
    def _server_lines(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            value = ", ".join(str(v) for v in value)
        if isinstance(value, str):
            from updraft.net import EndpointSet

            try:
                EndpointSet.parse(value)
            except ValidationError as exc:
                raise ValueError(str(exc)) from exc
        return value

    token: str | None = Field(default=None, repr=False)
    token_file: Path | None = Field(default=None, description="read the token from this file (first line)")
    ca: Path | None = Field(default=None, description="verify the control plane's TLS certificate with this CA")
    client_cert: Path | None = Field(default=None, description="mutual TLS: this agent's certificate")
    client_key: Path | None = Field(default=None, description="mutual TLS: its private key")
    name: str = Field(default_factory=lambda: os.uname().nodename, min_length=1, max_length=253,
                      pattern=NODE_NAME_PATTERN, description="node name (grammar: docs/security.md)")
    cluster: str = Field(default="default", min_length=1, max_length=63,
                         description="control plane this agent belongs to; labels its containers")
    labels: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    taints: list[str] = Field(default_factory=list)
    cpus: str | None = None
    memory: str | None = None
    cpuset: str | None = None
    load_source: Literal["host", "containers"] = "host"
    cpu_excess: Literal["oldest", "shared"] = Field(
        default="oldest",
        description="CPU beyond the running containers' requests: all to the oldest container without a "
        "CPU limit (a burst of jobs finishes in order), or shared in proportion to requests (Kubernetes)",
    )
    data_dir: Path = Field(default_factory=lambda: default_data_dir("agent"))
    heartbeat_interval: float = Field(default=1.0, gt=0)
    host: str = "127.0.0.1"
    port: int = Field(default=0, ge=0, le=65535, description="probe and /metrics port; 0 picks a free one")
    metrics_token_file: Path | None = Field(
        default=None, description="/metrics answers only a request bearing this file's token (required off loopback)"
    )
    endpoint_tls_cert: Path | None = Field(default=None, description="serve /health, /ready, /metrics over HTTPS")
    endpoint_tls_key: Path | None = None
    insecure_http: bool = Field(default=False, description="allow the endpoint plain HTTP off loopback")
    log_format: Literal["text", "json"] = "text"
    log_level: str = "INFO"
    log_tail_bytes: int = Field(default=4096, ge=0)
    allowed_host_paths: list[str] = Field(
        default_factory=list,
        description="host directories tasks may bind-mount (with what lies under them); none by default. The "
        "container engine's socket is refused whatever this says",
    )
    refuse_root: bool = Field(default=False, description="refuse tasks that would run as root (uid 0)")
    pids_limit: int = Field(default=1024, ge=16, le=4_194_304, description="processes one container may run")
    read_only_rootfs: bool = Field(default=False, description="every container's root filesystem read-only")
    extended_resources: list[str] = Field(
        default_factory=list, description="extended resources to declare, name=count (e.g. nvidia.com/gpu=2); "
        "NVIDIA GPUs are found with nvidia-smi when it is installed"
    )
    device_mode: Literal["docker", "env"] = Field(
        default="docker",
        description="how a container gets its GPUs: docker (device requests, --gpus) or env (NVIDIA_VISIBLE_DEVICES "
        "only, for the NVIDIA runtime as the engine's default runtime)",
    )

    @field_validator("allowed_host_paths")
    @classmethod
    def _absolute(cls, value: list[str]) -> list[str]:
        for path in value:
            if not path.startswith("/"):
                raise ValueError(f"allowed_host_paths: {path!r} is not an absolute path")
        return value


def read_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ValidationError(f"config: cannot read {p}: {exc.strerror}", field="config") from exc
    try:
        data = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValidationError(f"config: {p} is not valid {'TOML' if p.suffix == '.toml' else 'JSON'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValidationError(f"config: {p} must hold an object", field="config")
    return data


def _from_env(model: type[BaseModel], env: Mapping[str, str], prefix: str = "UPDRAFT_") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = prefix + name.upper()
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            nested = _from_env(sub, env, prefix)
            if nested:
                out[name] = nested
        elif key in env:
            raw = env[key]
            try:
                out[name] = json.loads(raw) if raw[:1] in "[{" else raw
            except ValueError:
                out[name] = raw
    return out


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        elif value is not None:
            out[key] = value
    return out


def _normalise(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """Accept the seed's flat scheduler JSON as a server config: policy keys at the top level."""
    if model is ServerSettings:
        policy_keys = set(Policy.model_fields)
        flat = {k: data.pop(k) for k in list(data) if k in policy_keys and k not in ServerSettings.model_fields}
        if flat:
            data["policy"] = _merge(dict(data.get("policy", {})), flat)
    return data


def load(
    model: type[T],
    file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> T:
    """Build settings from defaults, then the file, then ``UPDRAFT_*`` variables, then flags."""
    data: dict[str, Any] = {}
    if file is not None:
        data = _normalise(model, read_file(file))
    data = _merge(data, _normalise(model, _from_env(model, env if env is not None else os.environ)))
    data = _merge(data, _normalise(model, dict(flags or {})))
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ValidationError(f"config: {loc}: {first['msg']}", field=loc, errors=len(exc.errors())) from exc
