"""``updraft cert ca`` and ``updraft cert issue``: a private CA and the certificates of one cluster.

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
from typing import Annotated

import typer

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


def register(app: typer.Typer) -> None:
    app.add_typer(cert_app, name="cert")
