"""``updraft cert ca|issue`` (a private CA and the certificates of one cluster) and ``updraft token
create|list|revoke`` (bearer tokens, through the API; admin only).

::

    updraft cert ca --out pki/                       # pki/ca.crt, pki/ca.key (0600)
    updraft cert issue server --ca pki/ --kind server --dns updraft.lan --ip 10.0.0.5
    updraft cert issue edge-1 --ca pki/ --kind agent --dns edge-1   # its node name is the common name
    updraft cert issue alice --ca pki/ --kind client

Files go to ``--out`` (default: the CA's folder) as ``NAME.crt`` and ``NAME.key``; keys are mode 0600 in a
folder of mode 0700, and nothing is overwritten without ``--force``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from updraft.cli.common import DEFAULT, Server, Token, _note

cert_app = typer.Typer(help="Create a CA and TLS certificates (docs/security.md).", no_args_is_help=True)

Force = Annotated[bool, typer.Option("--force", help="Replace existing files.")]
Days = Annotated[int | None, typer.Option(help="Validity in days (CA: 3650, others: 397).")]


@cert_app.command("ca")
def ca(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for ca.crt and ca.key.")] = Path("pki"),
    name: Annotated[str, typer.Option(help="The CA's common name.")] = "updraft CA",
    days: Days = None,
    force: Force = False,
) -> None:
    """Create a CA: ca.crt (give it to every agent, CLI and SDK as --ca) and ca.key (keep it offline)."""
    import datetime as dt

    from updraft.cli.common import _fail
    from updraft.errors import UpdraftError
    from updraft.security import pki

    try:
        pair = pki.create_ca(dt.datetime.now(dt.UTC), name, days or 3650)
        cert, key = pki.save(pair, out, "ca", overwrite=force)
    except UpdraftError as exc:
        _fail(exc)
    print(f"{cert}\n{key}")


@cert_app.command("issue")
def issue(
    name: Annotated[str, typer.Argument(help="Common name: 'server', a node name (agent), a user (client).")],
    ca_dir: Annotated[Path, typer.Option("--ca", help="Folder holding ca.crt and ca.key.")] = Path("pki"),
    kind: Annotated[str, typer.Option(help="server, agent (server + client auth) or client.")] = "server",
    dns: Annotated[list[str] | None, typer.Option("--dns", help="DNS name clients dial (repeat).")] = None,
    ip: Annotated[list[str] | None, typer.Option("--ip", help="IP address clients dial (repeat).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for NAME.crt/.key (default: --ca).")] = None,
    days: Days = None,
    force: Force = False,
) -> None:
    """Issue a certificate signed by the CA in --ca."""
    import datetime as dt

    from updraft.cli.common import _fail
    from updraft.errors import UpdraftError, ValidationError
    from updraft.security import pki

    try:
        if kind not in ("server", "agent", "client"):
            raise ValidationError(f"kind: {kind!r} is not server, agent or client", field="kind")
        authority = pki.load(ca_dir, "ca")
        pair = pki.issue(authority, name, kind, dt.datetime.now(dt.UTC), dns=dns or (), ips=ip or (),  # type: ignore[arg-type]
                         days=days or 397)
        cert, key = pki.save(pair, out or ca_dir, name, overwrite=force)
    except UpdraftError as exc:
        _fail(exc)
    print(f"{cert}\n{key}")


token_app = typer.Typer(help="Create, list and revoke API tokens (admin; docs/security.md).", no_args_is_help=True)


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="admin, operator, submitter, node or metrics.")],
    node: Annotated[str | None, typer.Option(help="node role: the node it acts as (none: a join token).")] = None,
    ttl: Annotated[str | None, typer.Option(help="Lifetime: 3600, 90m, 12h, 30d, 2w (default: none).")] = None,
    description: Annotated[str, typer.Option(help="A note shown by `token list`.")] = "",
    server: Server = DEFAULT,
    token: Token = None,
) -> None:
    """Print a new token on stdout (shown once: the server keeps only its hash)."""
    body = {"role": role, "node": node, "ttl": ttl, "description": description}
    created = _call(server, token, "post", "/v1/tokens", json={k: v for k, v in body.items() if v not in (None, "")})
    record = created["record"]
    where = f" for node {record['node']}" if record.get("node") else (" (join token)" if role == "node" else "")
    _note(f"token {record['id']}: {record['role']}{where}, expires {_when(record.get('expires_at'))}", "2")
    print(created["token"])


@token_app.command("list")
def token_list(server: Server = DEFAULT, token: Token = None) -> None:
    """Ids, roles, nodes and expiry of every token (never a token or a hash)."""
    rows = _call(server, token, "get", "/v1/tokens")
    print(render_tokens(rows))


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="The id `updraft token list` shows (12 hex digits).")],
    server: Server = DEFAULT,
    token: Token = None,
) -> None:
    """Revoke a token: every request with it is refused (401) from now on."""
    record = _call(server, token, "post", f"/v1/tokens/{token_id}/revoke")
    print(f"revoked {record['id']} ({record['role']})")


def render_tokens(rows: list[dict[str, Any]]) -> str:
    """A plain table, one token per line (pure, for tests)."""
    head = ("ID", "ROLE", "NODE", "CREATED", "EXPIRES", "REVOKED", "DESCRIPTION")
    lines = [head] + [
        (r["id"], r["role"], r.get("node") or "-", _when(r.get("created_at")), _when(r.get("expires_at")),
         _when(r.get("revoked_at"), "-"), r.get("description") or "")
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def _when(at: float | None, never: str = "never") -> str:
    import datetime as dt

    return never if at is None else dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _call(server: str, token: str | None, method: str, path: str, **kw: Any) -> Any:
    from updraft.cli.common import _client, _fail
    from updraft.errors import UpdraftError

    try:
        with _client(server, token) as c:
            return getattr(c.http, method)(path, **kw).json()
    except UpdraftError as exc:
        _fail(exc)


def register(app: typer.Typer) -> None:
    app.add_typer(cert_app, name="cert")
    app.add_typer(token_app, name="token")
