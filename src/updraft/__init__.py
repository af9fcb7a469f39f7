"""Updraft: offload containerized tasks from busy edge devices to other nodes.

The public surface is small and lazy, so ``import updraft`` (and the CLI's start) stays fast::

    from updraft import Client
    with Client("http://cloud-1:8470") as c:
        task = c.run(image="updraft/base:bookworm", command=["python3", "-c", "print(6*7)"], origin="edge-1")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "TaskSpec", "UpdraftError", "__version__"]

if TYPE_CHECKING:
    from updraft.errors import UpdraftError
    from updraft.model import TaskSpec
    from updraft.sdk import AsyncClient, Client


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from updraft import sdk

        return getattr(sdk, name)
    if name == "TaskSpec":
        from updraft.model import TaskSpec

        return TaskSpec
    if name == "UpdraftError":
        from updraft.errors import UpdraftError

        return UpdraftError
    raise AttributeError(name)
