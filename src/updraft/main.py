"""The composition root: the one module that assembles the processes — ``updraft server`` (the control plane) and
``updraft agent`` (and the Docker API front door beside it) — onto the CLI.

Everything else in ``updraft.cli`` is a client of the HTTP API and imports only the SDK, the model and the network
layer (the import contracts in pyproject.toml hold it to that); the control plane and the agent are wired here,
where starting a process needs them. ``updraft`` (the console script) and ``python -m updraft.main`` run this.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from updraft.cli.common import Token, _fail, _list, _pairs
from updraft.cli.main import app, main

__all__ = ["app", "main"]


def _settings_flags(**flags: Any) -> dict[str, Any]:
    return {k: v for k, v in flags.items() if v is not None and v != [] and v != {}}


@app.command()
def server(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on (default 8470).")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Where the SQLite store lives.")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c", help="JSON or TOML settings file.")] = None,
    log_format: Annotated[str | None, typer.Option(help="text or json")] = None,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="Serve without authentication (refused unless on loopback).")
    ] = False,
    insecure_http: Annotated[
        bool, typer.Option("--insecure-http", help="Allow plain HTTP off loopback (tokens cross in clear).")
    ] = False,
    tls_cert: Annotated[str | None, typer.Option(help="Serve HTTPS with this certificate (updraft cert issue).")] = None,
    tls_key: Annotated[str | None, typer.Option(help="The certificate's private key.")] = None,
    tls_client_ca: Annotated[str | None, typer.Option(help="Require client certificates signed by this CA.")] = None,
) -> None:
    """Run the control plane: API, store, scheduler, failure detector.

    Authentication is on: the first start writes an admin token to DATA_DIR/admin.token (docs/security.md)."""
    from updraft import settings as s
    from updraft.control import run
    from updraft.errors import UpdraftError
    from updraft.observe.logs import setup_logging

    try:
        cfg = s.load(
            s.ServerSettings,
            config,
            flags=_settings_flags(
                host=host,
                port=port,
                data_dir=data_dir,
                log_format=log_format,
                auth=False if no_auth else None,
                insecure_http=True if insecure_http else None,
                tls_cert=tls_cert,
                tls_key=tls_key,
                tls_client_ca=tls_client_ca,
            ),
        )
    except UpdraftError as exc:
        _fail(exc)
    setup_logging(cfg.log_format, cfg.log_level, component="server")
    try:
        run(cfg)
    except UpdraftError as exc:  # e.g. refused exposure: no auth or plain HTTP off loopback
        _fail(exc)


@app.command()
def agent(
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            "-s",
            envvar="UPDRAFT_SERVER",
            help="Control plane URL(s), comma-separated, each with optional nginx-style options: "
            "'http://a:8470 weight=2 max_fails=2 fail_timeout=5s, http://b:8470 backup'.",
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Node name (default: hostname).")] = None,
    cluster: Annotated[str | None, typer.Option(help="Control plane name; labels this agent's containers.")] = None,
    labels: Annotated[list[str] | None, typer.Option("--labels", "--label", help="k=v[,k=v]")] = None,
    tags: Annotated[list[str] | None, typer.Option("--tags", "--tag", help="a[,b]")] = None,
    taints: Annotated[list[str] | None, typer.Option("--taints", "--taint", help="key=value:Effect")] = None,
    cpus: Annotated[str | None, typer.Option(help="Declared cpu capacity, e.g. 0.5 or 500m.")] = None,
    memory: Annotated[str | None, typer.Option(help="Declared memory capacity, e.g. 512Mi.")] = None,
    cpuset: Annotated[str | None, typer.Option(help="Pin containers to these cpus, e.g. 0 or 0-1.")] = None,
    load_source: Annotated[str | None, typer.Option(help="host (psutil) or containers (own cgroup).")] = None,
    cpu_excess: Annotated[
        str | None, typer.Option(help="Unrequested CPU: oldest (jobs finish in order) or shared (Kubernetes).")
    ] = None,
    data_dir: Annotated[str | None, typer.Option(help="Where the outbox lives.")] = None,
    allow_host_path: Annotated[
        list[str] | None,
        typer.Option("--allow-host-path", help="A host directory tasks may bind-mount (repeatable; none by default)."),
    ] = None,
    refuse_root: Annotated[
        bool | None, typer.Option("--refuse-root/--allow-root", help="Refuse tasks that would run as uid 0.")
    ] = None,
    pids_limit: Annotated[int | None, typer.Option(help="Processes one container may run (default 1024).")] = None,
    read_only_rootfs: Annotated[
        bool | None, typer.Option("--read-only-rootfs", help="Every container's root filesystem read-only.")
    ] = None,
    extended_resource: Annotated[
        list[str] | None,
        typer.Option("--extended-resource", help="Declare an extended resource, name=count (e.g. nvidia.com/gpu=2)."),
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port for /health, /ready, /metrics.")] = None,
    config: Annotated[str | None, typer.Option("--config", "-c")] = None,
    token: Token = None,
    log_format: Annotated[str | None, typer.Option(help="text or json")] = None,
    docker_api_token: Annotated[
        str | None,
        typer.Option(
            envvar="UPDRAFT_DOCKER_API_TOKEN",
            help="The Docker API's token (a submitter token; from the environment rather than argv).",
        ),
    ] = None,
    docker_api: Annotated[
        str | None,
        typer.Option(
            envvar="UPDRAFT_DOCKER_API",
            help="Also serve the Docker Engine API here: unix:///path.sock or tcp://127.0.0.1:PORT.",
        ),
    ] = None,
) -> None:
    """Run an agent on this node: register, heartbeat, run assigned containers."""
    from updraft import settings as s
    from updraft.agent import serve_agent
    from updraft.errors import UpdraftError
    from updraft.observe.logs import setup_logging

    try:
        cfg = s.load(
            s.AgentSettings,
            config,
            flags=_settings_flags(
                server=server,
                name=name,
                cluster=cluster,
                labels=_pairs(labels, "--labels"),
                tags=_list(tags),
                taints=_list(taints),
                cpus=cpus,
                memory=memory,
                cpuset=cpuset,
                load_source=load_source,
                cpu_excess=cpu_excess,
                data_dir=data_dir,
                allowed_host_paths=_list(allow_host_path),
                refuse_root=refuse_root,
                pids_limit=pids_limit,
                read_only_rootfs=read_only_rootfs,
                extended_resources=_list(extended_resource),
                port=port,
                token=token,
                log_format=log_format,
            ),
        )
    except UpdraftError as exc:
        _fail(exc)
    if cfg.token is None and cfg.token_file is not None:
        from updraft.security.serving import read_token_file

        try:
            cfg = cfg.model_copy(update={"token": read_token_file(cfg.token_file)})
        except UpdraftError as exc:
            _fail(exc)
    setup_logging(cfg.log_format, cfg.log_level, component="agent", node=cfg.name)
    if docker_api and os.environ.get("DOCKER_HOST") == docker_api:
        # DOCKER_HOST exported for the devices' own tools names this front door: the agent itself must talk to
        # the real engine, not to itself
        del os.environ["DOCKER_HOST"]
    if docker_api:  # beside the agent, in its process: containers created there have this node as origin
        from updraft.dockerapi import serve_docker_api

        try:
            # Its own credential: the agent's node token may act only as the node, and a container created
            # through the Docker API is a submit (UPDRAFT_DOCKER_API_TOKEN: a submitter token).
            serve_docker_api(docker_api, origin=cfg.name, server=cfg.server, token=docker_api_token or cfg.token)
        except (UpdraftError, OSError) as exc:
            _fail(exc)
    try:
        serve_agent(cfg)
    except UpdraftError as exc:  # e.g. an endpoint off loopback without a metrics token
        _fail(exc)


if __name__ == "__main__":
    main()
