"""The Docker Engine API, served by the agent: the unchanged ``docker`` CLI and docker-py get offload.

A client of the control plane like the SDK (it imports sdk, model, net, errors, clock; never control or the
agent's internals)::

    address ──▶ http.DockerApiServer ──▶ http.DockerApi (routes, versions, hijacked attach)
                                             ├── containers.Engine  create → start = submit a task (origin:
                                             │                      this node), wait/logs/kill/stop/rm
                                             ├── system.System      /_ping, /version, /info
                                             └── images.ImageCatalog pull (deferred), image inspect

Pure parts: ``translate`` (a create request → task spec, or the refused options), ``views`` (how a
container and its task look to Docker clients), ``frames`` (the multiplexed stream), ``address``.
docs/docker-api.md has the supported matrix.
"""

from __future__ import annotations

from updraft.dockerapi.address import Address, parse_address
from updraft.dockerapi.containers import ControlPlane, Engine, SdkControlPlane
from updraft.dockerapi.http import API_VERSION, MIN_API_VERSION, DockerApi, DockerApiServer
from updraft.dockerapi.images import ImageCatalog
from updraft.dockerapi.system import System
from updraft.dockerapi.translate import CreatePlan, Refusal, plan_create

__all__ = [
    "API_VERSION",
    "MIN_API_VERSION",
    "Address",
    "ControlPlane",
    "CreatePlan",
    "DockerApi",
    "DockerApiServer",
    "Engine",
    "ImageCatalog",
    "Refusal",
    "SdkControlPlane",
    "System",
    "build",
    "parse_address",
    "plan_create",
    "serve_docker_api",
]


def build(control: ControlPlane, origin: str) -> DockerApi:
    """The API over any control plane (tests pass an in-memory one)."""
    engine = Engine(control, origin)
    return DockerApi(engine, System(origin, control.nodes), ImageCatalog(control.nodes))


def serve_docker_api(address: str, origin: str, server: str, token: str | None = None) -> DockerApiServer:
    """Serve the Docker API at ``address`` for the agent of node ``origin`` (the agent's servers and token)."""
    from updraft.sdk import Client

    parsed = parse_address(address)
    return DockerApiServer(build(SdkControlPlane(Client(server, token=token)), origin), parsed)
