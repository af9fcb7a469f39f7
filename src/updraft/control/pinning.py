"""Pinning in the control plane: the image policy at submit, and the pass that retries deferred pins.

The decision itself is :class:`updraft.images.Pinner`'s; this module turns it into task fields and events:

* pinned   — ``spec.image`` becomes ``name@sha256:…`` (the agent pulls and verifies exactly that); the tag as
  submitted is kept in ``Task.image_tag`` and the transfer size in ``Task.image_size`` (pull-time scoring).
* unpinned — under ``warn``: the task runs by tag and an ``image-unpinned`` event says why.
* deferred — under ``enforce`` with the registry not answering: the task is stored pending with
  ``awaiting_pin`` (the scheduler skips it) and :func:`retry_pins` tries again every few seconds.
* refused  — under ``enforce``: a 422 naming the image and why; nothing is stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from updraft.clock import Clock
from updraft.errors import Conflict, ImageError
from updraft.images import PinDecision, Pinner, RegistryClient
from updraft.model import Event, EventKind, Task, TaskSpec, TaskState
from updraft.settings import ServerSettings
from updraft.store import Txn

if TYPE_CHECKING:
    from updraft.control.service import ControlService


def make_pinner(settings: ServerSettings, clock: Clock) -> Pinner:
    """The pinner, with a login per registry host (never sent to another host) and the allowed registries."""
    registry = RegistryClient(
        settings.registry_credentials,
        settings.registry_insecure,
        timeout=settings.registry_timeout,
        allowed=settings.registry_allow,
    )
    return Pinner(settings.image_policy, registry, monotonic=clock.monotonic)


def at_submit(pinner: Pinner, spec: TaskSpec) -> tuple[TaskSpec, dict[str, Any], tuple[str, str] | None]:
    """The spec to store, extra Task fields, and the event (kind, message) to record, if any.

    Raises ImageError (422) when ``enforce`` refuses the image.
    """
    decision = pinner.decide(spec.image)
    if decision.kind == "refused":
        raise ImageError(
            f"{decision.why} (image_policy: enforce)", field="image", image=spec.image, reason=decision.why
        )
    return _apply(pinner, spec, decision)


def _apply(pinner: Pinner, spec: TaskSpec, d: PinDecision) -> tuple[TaskSpec, dict[str, Any], tuple[str, str] | None]:
    fields: dict[str, Any] = {"awaiting_pin": d.kind == "deferred"}
    if d.kind == "deferred":
        fields |= {"image_tag": d.submitted, "reason": d.message()}
        return spec, fields, ("image-pin-deferred", d.message())
    if d.kind == "pinned":
        if d.image != spec.image:
            spec = spec.model_copy(update={"image": d.image})
            fields["image_tag"] = d.submitted
        fields["image_size"] = d.size
        if d.why:
            return spec, fields, ("image-unverified", d.message())
        return spec, fields, ("image-pinned", d.message()) if d.image != d.submitted else None
    if pinner.policy == "off":
        return spec, fields, None
    return spec, fields, ("image-unpinned", d.message())


def decide_pending(service: ControlService) -> list[tuple[Task, PinDecision]]:
    """Ask the registry again for every task waiting on a pin (one request per image). Blocking I/O."""
    waiting = [service.state.parsed(q) for q in service.state.queue() if q.awaiting_pin]
    decided: dict[str, PinDecision] = {}
    out = []
    for task in waiting:
        image = task.image_tag or task.spec.image
        if image not in decided:
            decided[image] = service.pinner.decide(image, probe=True)
        out.append((task, decided[image]))
    return out


def apply_pending(service: ControlService, decisions: list[tuple[Task, PinDecision]]) -> int:
    """Record the outcome for each waiting task; return how many became schedulable or failed."""
    now = service.clock.now()
    changed = 0
    for task, d in decisions:
        if d.kind == "deferred":
            if task.reason != d.message():
                _commit(service, task.model_copy(update={"reason": d.message(), "updated_at": now}), None)
            continue
        if d.kind == "refused":
            new = task.model_copy(
                update={"state": TaskState.FAILED, "awaiting_pin": False, "reason": d.why, "updated_at": now}
            )
            event = ("failed", f"cannot run: {d.why} (image_policy: enforce)")
        else:
            spec, fields, note = _apply(service.pinner, task.spec, d)
            new = task.model_copy(update={**fields, "spec": spec, "reason": "", "updated_at": now})
            event = note or ("image-pinned", d.message())
        if _commit(service, new, event):
            changed += 1
    if changed:
        service.notifier.notify("scheduler")
    return changed


def retry_pins(service: ControlService) -> int:
    """Both steps in one call (tests, or a caller without an event loop)."""
    return apply_pending(service, decide_pending(service))


def _commit(service: ControlService, new: Task, event: tuple[str, str] | None) -> bool:
    txn = Txn().put_task(new)
    if event is not None:
        kind, message = event
        txn.event(Event(at=service.clock.now(), kind=EventKind(kind), message=message, task_id=new.id))
    try:
        service._commit(txn)
    except Conflict:
        return False  # the task moved on meanwhile (e.g. cancelled); the next pass sees it as it is now
    return True
