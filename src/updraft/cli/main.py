"""``updraft`` — the CLI. Imports are lazy so ``updraft --help`` starts fast on a small device."""

from __future__ import annotations

import sys
from typing import Annotated, Any, NoReturn

import typer

from updraft.cli.cluster import register as _register_cluster
from updraft.cli.common import DEFAULT, Server, Token, _client, _fail, _note, _pairs
from updraft.cli.images import register as _register_images
from updraft.cli.nodes import register as _register_nodes
from updraft.cli.security import register as _register_security

# Keep httpx from importing its own command-line client (httpx._main: rich, pygments, click): ~65 ms of the
# start of ``updraft run`` and ~4 MB resident in a long-lived agent, for something no updraft command uses.
# httpx falls back to a stub ``httpx.main`` when that import fails, which a None entry makes it do.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

app = typer.Typer(
    help="Offload containerized tasks from busy edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain (click) help and errors: rich's help renderer pulls in rich.markdown and markdown-it, which
    # would more than double the start of ``updraft --help`` (sub-commands inherit this).
    rich_markup_mode=None,
)


def _spec(
    image: str,
    cmd: list[str] | None,
    origin: str | None,
    cpu: str | None,
    memory: str | None,
    cpu_limit: str | None,
    memory_limit: str | None,
    env: list[str] | None,
    label: list[str] | None,
    selector: list[str] | None,
    priority: int,
    no_offload: bool,
    timeout: float | None,
    max_retries: int,
) -> dict[str, Any]:
    requests = {k: v for k, v in {"cpu": cpu, "memory": memory}.items() if v}
    limits = {k: v for k, v in {"cpu": cpu_limit, "memory": memory_limit}.items() if v}
    spec: dict[str, Any] = {
        "image": image,
        "priority": priority,
        "offloadable": not no_offload,
        "max_retries": max_retries,
    }
    if cmd:
        spec["command"] = cmd
    if origin:
        spec["origin"] = origin
    if requests or limits:
        spec["resources"] = {"requests": requests, "limits": limits}
    for key, value in (
        ("env", _pairs(env, "--env")),
        ("labels", _pairs(label, "--label")),
        ("node_selector", _pairs(selector, "--selector")),
    ):
        if value:
            spec[key] = value
    if timeout:
        spec["timeout"] = timeout
    return spec


Origin = Annotated[str | None, typer.Option(envvar="UPDRAFT_ORIGIN", help="Node the task is submitted from.")]
Cpu = Annotated[str | None, typer.Option("--cpu", help="cpu request, e.g. 500m")]
Mem = Annotated[str | None, typer.Option("--memory", help="memory request, e.g. 256Mi")]
CpuLim = Annotated[str | None, typer.Option("--cpu-limit")]
MemLim = Annotated[str | None, typer.Option("--memory-limit")]
Env = Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE")]
Label = Annotated[list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE")]
Selector = Annotated[list[str] | None, typer.Option("--selector", help="node label KEY=VALUE required")]
Priority = Annotated[int, typer.Option(help="Higher runs first.")]
NoOffload = Annotated[bool, typer.Option("--no-offload", help="Pin to the origin.")]
Timeout = Annotated[float | None, typer.Option(help="Seconds before the container is stopped.")]
Retries = Annotated[int, typer.Option(help="Retries after a failure.")]
Cmd = Annotated[list[str] | None, typer.Argument(help="Command and arguments.")]


@app.command(context_settings={"allow_interspersed_args": False})
def run(
    image: str,
    cmd: Cmd = None,
    origin: Origin = None,
    cpu: Cpu = None,
    memory: Mem = None,
    cpu_limit: CpuLim = None,
    memory_limit: MemLim = None,
    env: Env = None,
    label: Label = None,
    selector: Selector = None,
    priority: Priority = 0,
    no_offload: NoOffload = False,
    timeout: Timeout = None,
    max_retries: Retries = 0,
    server: Server = DEFAULT,
    token: Token = None,
) -> None:
    """Submit a task, stream its logs, say where it ran and why, exit with its exit code (like docker run)."""
    from updraft.errors import UpdraftError

    try:
        with _client(server, token) as c:
            # The API's JSON, not the models: building the pydantic models would be a good part of the start.
            task = c.submit_json(
                _spec(
                    image,
                    cmd,
                    origin,
                    cpu,
                    memory,
                    cpu_limit,
                    memory_limit,
                    env,
                    label,
                    selector,
                    priority,
                    no_offload,
                    timeout,
                    max_retries,
                )
            )
            for line in c.logs(task["id"], follow=True):
                stream = sys.stdout if line["stream"] == "stdout" else sys.stderr
                stream.write(line["data"] + "\n")
                stream.flush()
            task = c.wait_json(task["id"])
    except UpdraftError as exc:
        _fail(exc)
    att = task["attempts"][-1] if task.get("attempts") else None  # Task.current
    state = task["state"]
    where = f"{att['node']} ({att['placement']})" if att else "nowhere"
    _note(f"{task['id']} {state} on {where}: {att['reason'] if att else task.get('reason')}", "2")  # dim
    if att is not None and att.get("error") and state != "succeeded":
        _note(att["error"], "31")  # red
    exit_code = att.get("exit_code") if att else None
    code = exit_code if exit_code is not None else (0 if state == "succeeded" else 1)
    raise typer.Exit(code)


@app.command()
def submit(
    image: str,
    cmd: Cmd = None,
    origin: Origin = None,
    cpu: Cpu = None,
    memory: Mem = None,
    cpu_limit: CpuLim = None,
    memory_limit: MemLim = None,
    env: Env = None,
    label: Label = None,
    selector: Selector = None,
    priority: Priority = 0,
    no_offload: NoOffload = False,
    timeout: Timeout = None,
    max_retries: Retries = 0,
    server: Server = DEFAULT,
    token: Token = None,
) -> None:
    """Submit a task and print its id."""
    from updraft.errors import UpdraftError

    try:
        with _client(server, token) as c:
            task = c.submit(
                _spec(
                    image,
                    cmd,
                    origin,
                    cpu,
                    memory,
                    cpu_limit,
                    memory_limit,
                    env,
                    label,
                    selector,
                    priority,
                    no_offload,
                    timeout,
                    max_retries,
                )
            )
    except UpdraftError as exc:
        _fail(exc)
    print(task.id)


@app.command()
def ps(
    state: Annotated[str | None, typer.Option(help="Only tasks in this state.")] = None,
    limit: int = 50,
    server: Server = DEFAULT,
    token: Token = None,
) -> None:
    """List tasks, newest first."""
    from updraft.cli.render import tasks_table
    from updraft.errors import UpdraftError

    try:
        with _client(server, token) as c:
            tasks_table(c.list(state=state, limit=limit))
    except UpdraftError as exc:
        _fail(exc)


@app.command()
def inspect(
    task_id: str,
    server: Server = DEFAULT,
    token: Token = None,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show a task: spec, state, every attempt, and every decision with its reason."""
    from updraft.cli.render import task_detail
    from updraft.errors import UpdraftError

    try:
        with _client(server, token) as c:
            task, events = c.get(task_id), c.events(task_id)
    except UpdraftError as exc:
        _fail(exc)
    if json_out:
        import json

        print(json.dumps({"task": task.model_dump(mode="json"), "events": [e.model_dump() for e in events]}, indent=2))
    else:
        task_detail(task, events)


@app.command()
def logs(
    task_id: str,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    server: Server = DEFAULT,
    token: Token = None,
) -> None:
    """Print a task's output; ``-f`` follows it until the task ends."""
    from updraft.errors import UpdraftError

    try:
        with _client(server, token) as c:
            for line in c.logs(task_id, follow=follow):
                (sys.stdout if line["stream"] == "stdout" else sys.stderr).write(line["data"] + "\n")
    except UpdraftError as exc:
        _fail(exc)


@app.command()
def cancel(task_id: str, server: Server = DEFAULT, token: Token = None) -> None:
    """Cancel a task; its container is stopped."""
    from updraft.errors import UpdraftError

    try:
        with _client(server, token) as c:
            print(f"{task_id} {c.cancel(task_id).state}")
    except UpdraftError as exc:
        _fail(exc)


@app.command()
def top(
    interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 1.0,
    limit: Annotated[int, typer.Option(help="How many tasks to show.")] = 20,
    once: Annotated[bool, typer.Option("--once", help="Print one picture and exit.")] = False,
    server: Server = DEFAULT,
    token: Token = None,
) -> None:
    """Live view: node load against the offload thresholds; tasks with where they ran and why."""
    from updraft.cli.top import run as run_top
    from updraft.errors import UpdraftError

    try:
        with _client(server, token) as c:
            run_top(c, interval=interval, limit=limit, once=once)
    except UpdraftError as exc:
        _fail(exc)


@app.command()
def nodes(server: Server = DEFAULT, token: Token = None) -> None:
    """List nodes with their state, load, tags and taints."""
    from updraft.cli.render import nodes_table
    from updraft.errors import UpdraftError

    try:
        with _client(server, token) as c:
            nodes_table(c.nodes())
    except UpdraftError as exc:
        _fail(exc)


_register_images(app)  # build, push, audit images
_register_nodes(app)  # node label|taint|cordon|uncordon|drain, config check
_register_security(app)  # cert ca|issue, token create|list|revoke
_register_cluster(app)  # cluster: servers, leader and term (HA on etcd)


def main() -> None:
    try:
        app()
    except SystemExit as exc:
        if sys.argv[1:2] == ["run"]:
            _exit_now(exc.code)
        raise


def _exit_now(code: object) -> NoReturn:
    """End ``updraft run`` as ``docker run`` does: at once. Its work is done and its client closed; the
    interpreter's teardown (collecting every module's objects) would add 50-150 ms to each run."""
    import contextlib
    import os

    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
