"""Agent reports: attempt status (with its fencing token), probe verdicts and log lines.

Every report names the attempt's token; only the task's current token is accepted (DESIGN.md, decision 3).
A stale one is answered 409 and recorded as an event; a repeated result for a finished attempt is a no-op and a
different one is refused, so a finished attempt's outcome never changes.
"""

from __future__ import annotations

from updraft.control.core import ServiceCore
from updraft.errors import Conflict, StaleToken
from updraft.model import Event, EventKind, Task, TaskState, check_transition
from updraft.model.api import AttemptReport, LogBatch, ProbeReport
from updraft.store import Txn


class ReportCommands(ServiceCore):
    def _current(self, task_id: str, token: int, what: str) -> Task:
        task = self.task(task_id)
        if task.token != token:
            msg = f"stale {what} from token {token} ignored (current token {task.token})"
            self.writer.submit(  # recorded without waiting: the agent needs its 409 now
                Txn().event(
                    Event(at=self.clock.now(), kind=EventKind.STALE_REPORT, message=msg, task_id=task_id, token=token)
                )
            )
            raise StaleToken(msg, task_id=task_id, token=token, current=task.token)
        return task

    def report(self, task_id: str, token: int, report: AttemptReport) -> Task:
        task = self._current(task_id, token, f"report ({report.state})")
        attempt = task.current
        assert attempt is not None
        now = self.clock.now()
        if report.state == "running":
            if attempt.started_at is not None:
                return task
            attempt = attempt.model_copy(
                update={
                    "state": TaskState.RUNNING,
                    "started_at": report.started_at or now,
                    "container_id": report.container_id,
                    "image_digest": report.image_digest,
                }
            )
            state = TaskState.RUNNING if task.state == TaskState.SCHEDULED else task.state
            new = task.model_copy(update={"state": state, "attempts": task.with_attempt(attempt), "updated_at": now})
            self._commit(
                Txn()
                .put_task(new)
                .event(self._event(EventKind.STARTED, f"container {str(report.container_id)[:12]} started on {task.node}", new))
            )
            return new
        if attempt.finished_at is not None:
            same = (attempt.exit_code, attempt.oom_killed) == (report.exit_code, report.oom_killed)
            if same or (report.state == "error" and attempt.error):
                return task  # a duplicate delivery of a result already recorded
            raise Conflict(
                f"attempt {token} of {task_id} already finished with exit code {attempt.exit_code}; "
                f"a different result ({report.state}, exit code {report.exit_code}) is refused",
                task_id=task_id,
                token=token,
            )
        ok = report.state == "exited" and report.exit_code == 0 and not report.oom_killed
        if report.oom_killed:
            why = f"OOMKilled (exit {report.exit_code})"
        elif report.state == "error":
            why = report.error or "the container could not run"
        else:
            why = f"exit code {report.exit_code}" + (f": {report.error}" if report.error else "")
        attempt = attempt.model_copy(
            update={
                "state": TaskState.SUCCEEDED if ok else TaskState.FAILED,
                "started_at": attempt.started_at or report.started_at,
                "finished_at": report.finished_at or now,
                "exit_code": report.exit_code,
                "oom_killed": report.oom_killed,
                "error": None if ok else why,
                "error_code": None if ok else report.error_code,
                "log_tail": report.log_tail,
                "container_id": report.container_id or attempt.container_id,
                "image_digest": report.image_digest or attempt.image_digest,
            }
        )
        update: dict[str, object] = {"attempts": task.with_attempt(attempt), "updated_at": now}
        txn = Txn()
        if task.state.terminal:
            pass  # e.g. cancelled: keep the attempt's outcome, not the state
        elif ok:
            update |= {"state": TaskState.SUCCEEDED, "reason": f"succeeded on {task.node}"}
            txn.event(self._event(EventKind.SUCCEEDED, f"succeeded on {task.node} (exit 0)", task))
        elif task.retries_used < task.spec.max_retries:
            delay = self.retry_delay(task.retries_used)
            update |= {
                "state": TaskState.PENDING,
                "token": None,
                "node": None,
                "retries_used": task.retries_used + 1,
                "not_before": now + delay,
                "reason": f"retrying after {why}",
            }
            txn.event(
                self._event(
                    EventKind.RETRY,
                    f"failed on {task.node} ({why}); retry {task.retries_used + 1}"
                    f"/{task.spec.max_retries} in {delay:.1f} s",
                    task,
                    code=report.error_code,
                )
            )
        else:
            update |= {"state": TaskState.FAILED, "reason": why}
            txn.event(self._event(EventKind.FAILED, f"failed on {task.node}: {why}", task, code=report.error_code))
        new = task.model_copy(update=update)
        if not task.state.terminal:
            check_transition(task.state, new.state)
        self._commit(txn.put_task(new))
        self.notifier.notify("scheduler", f"node:{task.node}")
        return new

    def retry_delay(self, retries_used: int) -> float:
        """Exponential backoff with full jitter."""
        cap = min(self.settings.retry_max_seconds, self.settings.retry_base_seconds * 2**retries_used)
        return self.rng.uniform(0, cap)

    def probe_report(self, task_id: str, token: int, report: ProbeReport) -> Task:
        """What the agent's probes found: readiness goes on the attempt, liveness restarts are counted."""
        task = self._current(task_id, token, "probe report")
        attempt = task.current
        if attempt is None or attempt.finished_at is not None:
            return task
        txn, update = Txn(), dict[str, object]()
        if report.restarts > attempt.restarts:
            update["restarts"] = report.restarts
            txn.event(self._event(EventKind.RESTARTED, f"on {task.node}: {report.message}", task))
        if report.ready is not None and report.ready != attempt.ready:
            update["ready"] = report.ready
            why = report.message if "restarts" not in update else "not ready while the container restarts"
            txn.event(self._event(EventKind.READY if report.ready else EventKind.NOT_READY, why, task))
        if not update:
            return task
        attempts = task.with_attempt(attempt.model_copy(update=update))
        new = task.model_copy(update={"attempts": attempts, "updated_at": self.clock.now()})
        self._commit(txn.put_task(new))
        return new

    def append_logs(self, task_id: str, token: int, batch: LogBatch) -> int:
        self._current(task_id, token, "logs")
        n = self.store.append_logs(task_id, token, [(ln.stream, ln.at, ln.data) for ln in batch.lines])
        self.notifier.notify(f"logs:{task_id}")
        return n
