"""Options and helpers shared by the CLI's command modules."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from updraft.sdk import Client

Server = Annotated[
    str,
    typer.Option(
        "--server",
        "-s",
        envvar="UPDRAFT_SERVER",
        help="Server URL(s), comma-separated, each with optional nginx-style options (weight=N max_fails=N "
        "fail_timeout=5s backup), e.g. 'http://a:8470, http://b:8470 backup'.",
    ),
]
Token = Annotated[str | None, typer.Option("--token", envvar="UPDRAFT_TOKEN", help="API bearer token.")]
DEFAULT = "http://127.0.0.1:8470"


def _client(server: str, token: str | None) -> Client:
    from updraft.sdk import Client

    return Client(server, token=token)


def _fail(exc: Exception) -> NoReturn:
    from rich.console import Console

    code = getattr(exc, "code", "error")
    Console(stderr=True).print(f"[red]error[/red] ({code}): {getattr(exc, 'message', str(exc))}")
    raise typer.Exit(2)


def _note(text: str, sgr: str) -> None:
    """A line on stderr, styled (ANSI SGR) on a terminal; plain, unlike rich, costs no import on ``run``."""
    import os

    if sys.stderr.isatty() and "NO_COLOR" not in os.environ:
        text = f"\x1b[{sgr}m{text}\x1b[0m"
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        for part in item.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise typer.BadParameter(f"{what} must be KEY=VALUE, got {part!r}")
            out[key.strip()] = value.strip()
    return out


def _list(items: list[str] | None) -> list[str]:
    return [p.strip() for item in items or [] for p in item.split(",") if p.strip()]
