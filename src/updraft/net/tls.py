"""How a client (agent, SDK, CLI) verifies the control plane: the transport for a server list.

* every endpoint plain ``http://``: a TLS context that trusts no one — httpx would otherwise load certifi's CA
  bundle up front (~40 ms of every CLI start, ~3 MB resident in an agent) for connections never opened; it
  still fails closed if an https URL ever turns up;
* any ``https://`` endpoint: the system's trust store, or only ``ca`` when given (a private CA made with
  ``updraft cert ca``), plus ``cert``/``key`` for mutual TLS (agents with ``updraft cert issue --kind agent``).

The clients read ``UPDRAFT_CA``, ``UPDRAFT_CLIENT_CERT`` and ``UPDRAFT_CLIENT_KEY`` (the agent also takes them as
settings), so a CA need not be named on every command line.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from pathlib import Path

import httpx

from updraft.errors import ValidationError
from updraft.net.endpoints import EndpointSet


def tls_context(ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None) -> ssl.SSLContext:
    """Verify servers against ``ca`` (or the system's trust store); present ``cert``/``key`` if given."""
    try:
        ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
        if cert:
            ctx.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValidationError(f"TLS: cannot load {ca or cert}: {exc}", field="ca") from exc
    return ctx


def from_env(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None, str | None]:
    e = os.environ if env is None else env
    return e.get("UPDRAFT_CA") or None, e.get("UPDRAFT_CLIENT_CERT") or None, e.get("UPDRAFT_CLIENT_KEY") or None


def _verify(server: str, ca: str | Path | None, cert: str | Path | None, key: str | Path | None) -> ssl.SSLContext:
    if all(ep.url.startswith("http://") for ep in EndpointSet.parse(server).endpoints):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # plain http only: trusts no one (see the docstring)
    return tls_context(ca, cert, key)


def transport(
    server: str, ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
) -> httpx.HTTPTransport:
    return httpx.HTTPTransport(verify=_verify(server, ca, cert, key))


def async_transport(
    server: str, ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
) -> httpx.AsyncHTTPTransport:
    return httpx.AsyncHTTPTransport(verify=_verify(server, ca, cert, key))
