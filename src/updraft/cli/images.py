"""``updraft build``, ``updraft push`` and ``updraft audit images``.

Build and push talk to Docker and the registry directly (credentials from ``--config`` or
``UPDRAFT_REGISTRY_USERNAME`` / ``UPDRAFT_REGISTRY_PASSWORD``, else Docker's own ``docker login`` store);
audit reads the tasks through the SDK. Imports stay inside the commands so ``updraft --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from updraft.images import Credentials, Use
    from updraft.model import Task

audit_app = typer.Typer(help="Check what runs where.", no_args_is_help=True)

Registry = Annotated[
    str | None,
    typer.Option("--registry", "-r", help="host[:port] for names without one (default: UPDRAFT_REGISTRY)."),
]
Config = Annotated[str | None, typer.Option("--config", "-c", help="JSON or TOML file with registry settings.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Print only the pinned reference.")]


def _fail(exc: Exception) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[red]error[/red] ({getattr(exc, 'code', 'error')}): {getattr(exc, 'message', exc)}")
    raise typer.Exit(2)


def _registry_settings(config: str | None, registry: str | None) -> tuple[str | None, Credentials | None]:
    from updraft import settings as s
    from updraft.images import Credentials

    cfg = s.load(s.RegistrySettings, config, flags={"registry": registry})
    creds = None
    if cfg.registry_username is not None:
        creds = Credentials(cfg.registry_username, cfg.registry_password or "")
    return cfg.registry, creds


def _progress(quiet: bool) -> Any:
    if quiet:
        return None
    return lambda line: print(line, file=sys.stderr, flush=True)


def build(
    path: Annotated[str, typer.Argument(help="Build context (holds the Dockerfile).")],
    tag: Annotated[str | None, typer.Option("--tag", "-t", help="NAME[:TAG]; default: the folder's name.")] = None,
    file: Annotated[str | None, typer.Option("--file", "-f", help="Dockerfile name within PATH.")] = None,
    registry: Registry = None,
    config: Config = None,
    quiet: Quiet = False,
) -> None:
    """Build an image (multi-stage Dockerfiles as they are), push it, print NAME@sha256:…."""
    from updraft.errors import UpdraftError
    from updraft.images import build_and_push

    try:
        where, creds = _registry_settings(config, registry)
        pushed = build_and_push(path, tag, where, file, creds, progress=_progress(quiet))
    except UpdraftError as exc:
        _fail(exc)
    print(pushed.ref)


def push(
    image: Annotated[str, typer.Argument(help="A local image; its name gets the registry host if it has none.")],
    registry: Registry = None,
    config: Config = None,
    quiet: Quiet = False,
) -> None:
    """Push a local image to the registry and print NAME@sha256:…."""
    from updraft.errors import UpdraftError
    from updraft.images import push as push_image
    from updraft.images import qualify

    try:
        where, creds = _registry_settings(config, registry)
        ref = qualify(image, where)
        if str(ref) != image:
            import docker

            docker.from_env().images.get(image).tag(ref.name, tag=ref.tag)
        pushed = push_image(str(ref), creds, progress=_progress(quiet))
    except UpdraftError as exc:
        _fail(exc)
    except Exception as exc:  # docker-py errors while tagging (image not found, engine down)
        from updraft.errors import ImageError

        _fail(ImageError(f"cannot push {image}: {exc}", image=image))
    print(pushed.ref)


def uses_of(tasks: list[Task]) -> list[Use]:
    """One audit row per task: the image it runs, where, and the digest its agent reported."""
    from updraft.images import Use

    rows = []
    for t in tasks:
        att = t.current
        reported = att.image_digest if att and att.image_digest and att.image_digest.startswith("sha256:") else None
        rows.append(Use(t.id, t.spec.image, str(t.state), t.node, t.image_tag, reported))
    return rows


@audit_app.command("images")
def audit_images(
    server: Annotated[str, typer.Option("--server", "-s", envvar="UPDRAFT_SERVER")] = "http://127.0.0.1:8470",
    token: Annotated[str | None, typer.Option("--token", envvar="UPDRAFT_TOKEN")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable report.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Also fail on unpinned tasks.")] = False,
) -> None:
    """For every image name, which digests run or are assigned on which nodes. Exits 1 on drift."""
    from updraft.errors import UpdraftError
    from updraft.images import audit
    from updraft.sdk import Client

    try:
        with Client(server, token=token) as c:
            tasks = [t for state in ("scheduled", "running") for t in c.list(state=state, limit=10000)]
    except UpdraftError as exc:
        _fail(exc)
    report = audit(uses_of(tasks))
    if json_out:
        import json

        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.render())
    raise typer.Exit(report.exit_code(strict))


def register(app: typer.Typer) -> None:
    app.command()(build)
    app.command()(push)
    app.add_typer(audit_app, name="audit")
