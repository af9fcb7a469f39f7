"""Where the Docker Engine API listens: ``unix:///path/docker.sock`` or ``tcp://127.0.0.1:PORT``.

Whoever can reach a Docker API can run any program on the cluster, so the default is what a local engine
does: a unix socket (file permissions say who may use it) or a loopback port. Any wider TCP address is
refused until the API has an authentication option of its own (the security issue's rules); the refusal
says so rather than quietly binding.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from updraft.errors import ValidationError


@dataclass(frozen=True)
class Address:
    scheme: str  # "unix" | "tcp"
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.scheme == "unix" else f"tcp://{self.host}:{self.port}"

    @property
    def docker_host(self) -> str:
        """The value a client puts in ``DOCKER_HOST``."""
        return str(self)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_address(text: str) -> Address:
    """Parse and check an address; a non-loopback TCP host is refused (no authentication option yet)."""
    text = text.strip()
    if text.startswith("unix://"):
        path = text.removeprefix("unix://")
        if not path.startswith("/"):
            raise ValidationError(f"--docker-api: {text!r} needs an absolute path (unix:///run/updraft/docker.sock)",
                                  field="docker_api")
        return Address("unix", path=path)
    if text.startswith("tcp://"):
        parts = urlsplit(text)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None or parts.path not in ("", "/"):
            raise ValidationError(f"--docker-api: {text!r} is not tcp://HOST:PORT", field="docker_api")
        if not is_loopback(parts.hostname):
            raise ValidationError(
                f"--docker-api: {parts.hostname} is not a loopback address; whoever reaches a Docker API can run "
                "any program on the cluster, and this API has no authentication option yet: use a unix socket "
                "or 127.0.0.1",
                field="docker_api",
            )
        return Address("tcp", host=parts.hostname, port=port)
    raise ValidationError(f"--docker-api: {text!r} must start with unix:// or tcp://", field="docker_api")
