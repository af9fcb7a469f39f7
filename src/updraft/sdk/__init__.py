"""Python SDK for the Updraft API."""

from updraft.sdk.client import DEFAULT_SERVER, AsyncClient, Client

__all__ = ["DEFAULT_SERVER", "AsyncClient", "Client"]
