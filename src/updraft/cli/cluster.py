"""``updraft cluster``: the servers of a control plane on etcd, which one leads, its term, the etcd members."""

from __future__ import annotations

import datetime
import json
from typing import Annotated, Any

import typer

from updraft.cli.common import DEFAULT, Server, Token, _client, _fail


def render(view: dict[str, Any]) -> str:
    """The cluster view as text (pure: tested without a server)."""
    leader = view.get("leader") or {}
    lines = [f"leader: {leader.get('id') or '(none: election under way or no quorum)'}"
             + (f"  term {leader['term']}  {leader.get('url')}" if leader.get("id") else "")]
    lines.append("servers:")
    for m in sorted(view.get("members", []), key=lambda m: str(m.get("id"))):
        since = datetime.datetime.fromtimestamp(float(m.get("since", 0)), datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        mark = "*" if m.get("leader") else " "
        lines.append(f"  {mark} {m.get('id')}  {m.get('url')}  up since {since} UTC")
    lines.append("etcd:")
    for e in view.get("etcd", []):
        lines.append(f"    {e.get('name')}  {', '.join(e.get('client_urls', []))}")
    for what, problem in (view.get("problems") or {}).items():
        lines.append(f"problem ({what}): {problem}")
    return "\n".join(lines)


def cluster(
    server: Server = DEFAULT,
    token: Token = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the raw view.")] = False,
) -> None:
    """Show the servers, the leader and its term (a control plane on etcd; see docs/ha.md)."""
    from updraft.errors import UpdraftError

    try:
        with _client(server, token) as c:
            response = c.http.get("/v1/cluster")
    except UpdraftError as exc:
        if getattr(exc, "status", None) == 404:
            print("this server runs alone on SQLite (store = sqlite): no cluster to show")
            return
        _fail(exc)
    if response.status_code == 404:
        print("this server runs alone on SQLite (store = sqlite): no cluster to show")
        return
    view = response.json()
    print(json.dumps(view, indent=2) if as_json else render(view))


def register(app: typer.Typer) -> None:
    app.command("cluster")(cluster)
