"""What a user submits: the task spec, validated once at the API edge.

Quantities arrive as Kubernetes strings and are checked here, so a bad one is answered with a 422 naming the
field (``resources.requests.cpu``) instead of surfacing later inside the scheduler.
"""

from __future__ import annotations

import re
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ModelWrapValidatorHandler, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core import ValidationError as PydanticValidationError

from updraft.errors import ValidationError
from updraft.model.limits import (
    CPU_DOC,
    INT64_MAX,
    MAX_EXTENDED,
    MAX_TAINTS,
    MAX_VOLUMES,
    MEMORY_DOC,
    Args,
    Env,
    LabelKey,
    Labels,
    LabelValue,
    Line,
    NodeName,
    OptionalLabelKey,
    Quantity,
    Seconds,
)
from updraft.model.quantity import check_extended_name, parse_cpu, parse_memory

# Docker's reference grammar, simplified: [registry[:port]/]path[:tag][@digest]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)"
IMAGE_REF = re.compile(
    rf"^(?P<name>{_DOMAIN}?{_COMPONENT}(?:/{_COMPONENT})*)(?::(?P<tag>[\w][\w.-]{{0,127}}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$",
    re.ASCII,  # \w is [A-Za-z0-9_] as in Docker's grammar, not any Unicode letter
)


class Effect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Taint(_Strict):
    key: LabelKey
    value: LabelValue = ""
    effect: Effect = Effect.NO_SCHEDULE

    def __str__(self) -> str:
        return f"{self.key}={self.value}:{self.effect}" if self.value else f"{self.key}:{self.effect}"

    @classmethod
    def parse(cls, text: str) -> Taint:
        """``key=value:Effect`` or ``key:Effect`` as in ``kubectl taint``."""
        body, _, effect = text.partition(":")
        key, _, value = body.partition("=")
        try:
            return cls(key=key, value=value, effect=Effect(effect or "NoSchedule"))
        except ValueError as exc:
            raise ValidationError(f"taint: cannot parse {text!r} (key=value:Effect)", field="taint") from exc


class Toleration(_Strict):
    key: OptionalLabelKey = ""
    operator: Literal["Equal", "Exists"] = "Equal"
    value: LabelValue = ""
    effect: Effect | None = None

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> Toleration:
        if self.operator == "Exists" and self.value:
            raise ValueError("a toleration with operator Exists must not set a value")
        if not self.key and self.operator != "Exists":
            raise ValueError("an empty key needs operator Exists (it tolerates everything)")
        return self


def check_extended(data: Any, known: tuple[str, ...], title: str) -> None:
    """Refuse a bad extended resource name or a negative count, with the error located at that key
    (``resources.requests.gpu``) as pydantic locates an unknown field."""
    if not isinstance(data, dict):
        return
    errors = []
    if sum(1 for key in data if key not in known) > MAX_EXTENDED:
        detail = PydanticCustomError("value_error", "Value error, at most {n} extended resources", {"n": MAX_EXTENDED})
        raise PydanticValidationError.from_exception_data(title, [InitErrorDetails(type=detail, loc=(), input=data)])
    for key, value in data.items():
        if key in known:
            continue
        problem = check_extended_name(key) if isinstance(key, str) else "not a resource name"
        if problem is None and isinstance(value, int) and not 0 <= value <= INT64_MAX:
            problem = f"an extended resource count must be between 0 and {INT64_MAX}, got {value}"
        if problem is not None:
            detail = PydanticCustomError("value_error", "Value error, {problem}", {"problem": problem})
            errors.append(InitErrorDetails(type=detail, loc=(key,), input=value))
    if errors:
        raise PydanticValidationError.from_exception_data(title, errors)


class ExtendedKeys(BaseModel):
    """cpu and memory fields, and any other key an extended resource count (``"nvidia.com/gpu": 1``)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, int] = Field(init=False)

    @model_validator(mode="wrap")
    @classmethod
    def _extended_names(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        check_extended(data, ("cpu", "memory"), cls.__name__)
        return handler(data)

    @property
    def extended(self) -> dict[str, int]:
        """Extended resources by name (``{"nvidia.com/gpu": 1}``)."""
        return self.__pydantic_extra__ or {}


class ResourceList(_Strict, ExtendedKeys):
    """cpu and memory as Kubernetes quantities; every other key is an extended resource counted in whole units
    (``"nvidia.com/gpu": 1``), as in Kubernetes. Parsed values are cached on the (immutable) object."""

    model_config = ConfigDict(extra="allow", frozen=True)

    cpu: Quantity | None = Field(default=None, json_schema_extra=CPU_DOC)
    memory: Quantity | None = Field(default=None, json_schema_extra=MEMORY_DOC)

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_cpu(v)
            except ValidationError as exc:
                raise ValueError(exc.message.removeprefix("cpu: ")) from exc
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_memory(v)
            except ValidationError as exc:
                raise ValueError(exc.message.removeprefix("memory: ")) from exc
        return v

    @cached_property
    def cpu_millis(self) -> int:
        return parse_cpu(self.cpu) if self.cpu is not None else 0

    @cached_property
    def memory_bytes(self) -> int:
        return parse_memory(self.memory) if self.memory is not None else 0


class Resources(_Strict):
    requests: ResourceList = ResourceList()
    limits: ResourceList = ResourceList()

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> Resources:
        for name in ("cpu", "memory"):
            req, lim = getattr(self.requests, name), getattr(self.limits, name)
            if req is not None and lim is not None:
                attr = "cpu_millis" if name == "cpu" else "memory_bytes"
                if getattr(self.requests, attr) > getattr(self.limits, attr):
                    raise ValueError(f"requests.{name} {req} exceeds limits.{name} {lim}")
        for name, count in self.requests.extended.items():  # Kubernetes: extended requests equal their limits
            lim = self.limits.extended.get(name)
            if lim is not None and lim != count:
                raise ValueError(f"requests.{name} {count} must equal limits.{name} {lim} (extended resource)")
        return self

    @cached_property
    def _request_cpu(self) -> int:
        return self.requests.cpu_millis if self.requests.cpu is not None else self.limits.cpu_millis

    @cached_property
    def _request_memory(self) -> int:
        return self.requests.memory_bytes if self.requests.memory is not None else self.limits.memory_bytes

    @cached_property
    def _request_extended(self) -> dict[str, int]:
        merged = {**self.limits.extended, **self.requests.extended}
        return {name: n for name, n in sorted(merged.items()) if n > 0}

    def request_cpu(self) -> int:
        """Requested millicores; a task that only sets a limit requests its limit (Kubernetes rule)."""
        return self._request_cpu

    def request_memory(self) -> int:
        return self._request_memory

    def request_extended(self) -> dict[str, int]:
        """Requested extended resources, positive counts only; a limit alone is the request (Kubernetes rule)."""
        return self._request_extended


class Probe(_Strict):
    """A container probe with Kubernetes semantics.

    ``http`` succeeds iff 200 ≤ status < 400 for ``GET path`` on ``port``; ``tcp`` iff a connection to ``port``
    opens; ``exec`` iff ``command`` exits 0 inside the container. The agent probes from inside the container's
    network namespace, so ``port`` is the container's port and need not be published. A verdict flips after
    ``failure_threshold`` consecutive failures or ``success_threshold`` consecutive successes.
    """

    kind: Literal["http", "tcp", "exec"]
    path: Line = Field(default="/", max_length=2048, description="http: the path to GET")
    port: int | None = Field(default=None, ge=1, le=65535, description="http, tcp: the container's port")
    command: Args | None = Field(default=None, description="exec: argv run inside the container")
    initial_delay_seconds: Seconds = 0.0
    period_seconds: Seconds = Field(default=10.0, gt=0)
    timeout_seconds: Seconds = Field(default=1.0, gt=0)
    failure_threshold: int = Field(default=3, ge=1, le=10000)
    success_threshold: int = Field(default=1, ge=1, le=10000)

    @model_validator(mode="after")
    def _target(self) -> Probe:
        if self.kind in ("http", "tcp") and self.port is None:
            raise ValueError(f"a {self.kind} probe needs a port")
        if self.kind == "exec" and not self.command:
            raise ValueError("an exec probe needs a command")
        if self.kind == "http" and not self.path.startswith("/"):
            raise ValueError("an http probe path must start with /")
        return self


LabelMap = Labels


Operator = Literal["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]


class NodeSelectorRequirement(_Strict):
    """One expression on a node label, with Kubernetes' semantics: ``NotIn`` and ``DoesNotExist`` match a node
    without the label; ``Gt``/``Lt`` compare the label as an integer and never match a non-integer label."""

    key: LabelKey
    operator: Operator
    values: list[Annotated[Line, Field(max_length=63)]] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _values_fit_operator(self) -> NodeSelectorRequirement:
        op, values = self.operator, self.values
        if op in ("In", "NotIn") and not values:
            raise ValueError(f"operator {op} needs at least one value (key {self.key!r})")
        if op in ("Exists", "DoesNotExist") and values:
            raise ValueError(f"operator {op} takes no values (key {self.key!r})")
        if op in ("Gt", "Lt") and (len(values) != 1 or not re.fullmatch(r"-?\d{1,18}", values[0])):
            raise ValueError(f"operator {op} needs exactly one integer value (key {self.key!r}), got {values}")
        return self


class NodeSelectorTerm(_Strict):
    """Its expressions are ANDed; an empty term matches no node (as in Kubernetes)."""

    matchExpressions: list[NodeSelectorRequirement] = Field(default_factory=list, max_length=32)


class NodeSelector(_Strict):
    """Its terms are ORed."""

    nodeSelectorTerms: list[NodeSelectorTerm] = Field(min_length=1, max_length=16)


class PreferredSchedulingTerm(_Strict):
    weight: int = Field(ge=1, le=100)
    preference: NodeSelectorTerm


class NodeAffinity(_Strict):
    requiredDuringSchedulingIgnoredDuringExecution: NodeSelector | None = None
    preferredDuringSchedulingIgnoredDuringExecution: list[PreferredSchedulingTerm] = Field(
        default_factory=list, max_length=16
    )


class Affinity(_Strict):
    """Kubernetes' field names, so a pod's ``affinity.nodeAffinity`` block can be pasted as it is."""

    nodeAffinity: NodeAffinity | None = None


class TaskSpec(_Strict):
    """A containerized task. ``origin`` is the node it was submitted from (None: anywhere)."""

    image: str = Field(min_length=1, max_length=512)
    command: Args | None = None
    args: Args | None = None
    env: Env = Field(default_factory=dict)
    secret_env: Env = Field(
        default_factory=dict,
        description="environment variables whose values are secret: set in the container like env, returned "
        "only to admins (others see '<redacted>'), never logged",
    )
    workdir: Line | None = Field(default=None, max_length=4096)
    resources: Resources = Resources()
    node_selector: LabelMap = Field(default_factory=dict)
    affinity: Affinity | None = Field(default=None, description="node affinity: required and preferred terms")
    tolerations: list[Toleration] = Field(default_factory=list, max_length=MAX_TAINTS)
    priority: int = Field(default=0, ge=-1000, le=1000)
    offloadable: bool = True
    origin: NodeName | None = None
    timeout: Seconds | None = Field(default=None, gt=0, description="seconds before the container is stopped")
    max_retries: int = Field(default=0, ge=0, le=100)
    labels: LabelMap = Field(default_factory=dict)
    reschedule_after: Seconds | None = Field(
        default=None, description="seconds a node may be unreachable before its task drifts"
    )
    on_disconnect: Literal["keep", "stop"] = Field(
        default="keep", description="keep: run on while cut off (edge autonomy); stop: self-fence"
    )
    stop_after: Seconds | None = Field(
        default=None, gt=0, description="with on_disconnect=stop: seconds cut off before the agent stops it"
    )
    volumes: list[Annotated[Line, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=MAX_VOLUMES, description="host:container[:ro]"
    )
    user: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$",
        description="uid[:gid] or name[:group] the container runs as (default: the image's user)",
    )
    read_only_rootfs: bool = Field(default=False, description="mount the container's root filesystem read-only")
    liveness_probe: Probe | None = Field(default=None, description="failing it restarts the container")
    readiness_probe: Probe | None = Field(default=None, description="its verdict is the attempt's ready flag")

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        if not IMAGE_REF.fullmatch(v):  # fullmatch: "$" alone would let a trailing newline through
            raise ValueError(f"{v!r} is not a valid image reference (name[:tag][@sha256:digest])")
        return v

    @model_validator(mode="after")
    def _disconnect(self) -> TaskSpec:
        if self.on_disconnect == "stop" and self.stop_after is None:
            raise ValueError("on_disconnect=stop needs stop_after (seconds)")
        if self.liveness_probe is not None and self.liveness_probe.success_threshold != 1:
            raise ValueError("liveness_probe.success_threshold must be 1 (as in Kubernetes)")
        both = sorted(set(self.env) & set(self.secret_env))
        if both:
            raise ValueError(f"{both[0]!r} is in both env and secret_env")
        return self

    def container_env(self) -> dict[str, str]:
        """Every variable the container gets: ``env`` and ``secret_env`` together (the agent sets these)."""
        return {**self.env, **self.secret_env}

    def tolerates(self, taint: Taint) -> bool:
        """Kubernetes semantics: an Exists with empty key tolerates every taint; effect None matches all."""
        for tol in self.tolerations:
            if tol.effect is not None and tol.effect != taint.effect:
                continue
            if tol.operator == "Exists" and (not tol.key or tol.key == taint.key):
                return True
            if tol.operator == "Equal" and tol.key == taint.key and tol.value == taint.value:
                return True
        return False

    @property
    def image_name(self) -> str:
        match = IMAGE_REF.match(self.image)
        assert match is not None
        return match.group("name")
