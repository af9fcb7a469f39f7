"""``updraft node label|taint|cordon|uncordon|drain`` and ``updraft config check``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from updraft.cli.common import DEFAULT, Server, Token, _client, _fail, _pairs
from updraft.model import Node, format_cpu, format_memory

node_app = typer.Typer(help="Label, taint, cordon and drain nodes.", no_args_is_help=True)
config_app = typer.Typer(help="Check configuration files.", no_args_is_help=True)


def capacity_text(node: Node) -> str:
    """``4 cpu / 8Gi``, then any extended resources: ``4 cpu / 8Gi, nvidia.com/gpu 2`` (for ``updraft nodes``)."""
    text = f"{format_cpu(node.capacity.cpu_millis)} cpu / {format_memory(node.capacity.memory_bytes)}"
    extra = ", ".join(f"{name} {count}" for name, count in sorted(node.capacity.extended.items()))
    return f"{text}, {extra}" if extra else text


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")
    app.add_typer(config_app, name="config")


def _node_cmd(op: str, name: str, server: str, token: str | None, **kw: Any) -> None:
    from updraft.errors import UpdraftError

    try:
        with _client(server, token) as c:
            node = getattr(c, op)(name, **kw)
    except UpdraftError as exc:
        _fail(exc)
    print(
        f"{node.name}: cordoned={node.cordoned} draining={node.draining} labels={node.labels} "
        f"taints={[str(t) for t in node.taints]}"
    )


@node_app.command("label")
def node_label(
    name: str,
    pairs: Annotated[list[str], typer.Argument(help="k=v to set, k- to remove")],
    server: Server = DEFAULT,
    token: Token = None,
) -> None:
    """Set (k=v) or remove (k-) node labels."""
    remove = [p[:-1] for p in pairs if p.endswith("-") and "=" not in p]
    _node_cmd("label", name, server, token, set=_pairs([p for p in pairs if "=" in p], "label"), remove=remove)


@node_app.command("taint")
def node_taint(
    name: str,
    taints: Annotated[list[str], typer.Argument(help="key=value:Effect to add, key- to remove")],
    server: Server = DEFAULT,
    token: Token = None,
) -> None:
    """Add (key=value:Effect) or remove (key-) taints."""
    remove = [t[:-1] for t in taints if t.endswith("-")]
    _node_cmd("taint", name, server, token, add=[t for t in taints if not t.endswith("-")], remove=remove)


@node_app.command("cordon")
def node_cordon(name: str, server: Server = DEFAULT, token: Token = None) -> None:
    """Stop placing new tasks on a node."""
    _node_cmd("cordon", name, server, token)


@node_app.command("uncordon")
def node_uncordon(name: str, server: Server = DEFAULT, token: Token = None) -> None:
    """Allow placements on a node again."""
    _node_cmd("uncordon", name, server, token)


@node_app.command("drain")
def node_drain(name: str, server: Server = DEFAULT, token: Token = None) -> None:
    """Cordon a node and move its tasks to other nodes."""
    _node_cmd("drain", name, server, token)


@config_app.command("check")
def config_check(file: str, kind: Annotated[str, typer.Option(help="server or agent")] = "server") -> None:
    """Validate a settings file (the seed's scheduler JSON is a valid server config)."""
    from updraft import settings as s
    from updraft.errors import UpdraftError

    model = s.ServerSettings if kind == "server" else s.AgentSettings
    try:
        cfg = s.load(model, file, env={})
    except UpdraftError as exc:
        _fail(exc)
    print(f"{file}: valid {kind} configuration")
    if isinstance(cfg, s.ServerSettings):
        print(cfg.policy.model_dump_json(indent=2))
