"""Client-side networking shared by the agent, the SDK and the CLI.

Small pieces, each usable alone: :class:`RttEstimator` (RFC 6298 adaptive timeouts), :class:`RetryPolicy`
(full-jitter backoff for safe requests), :class:`EndpointSet` (nginx-style weighted failover), and the
:class:`HttpClient` / :class:`AsyncHttpClient` that combine them over httpx.
"""

from updraft.net._call import error_from_response
from updraft.net._syntax import parse_duration
from updraft.net.client import AsyncHttpClient, HttpClient
from updraft.net.endpoints import Endpoint, EndpointSet, EndpointStats, parse_server
from updraft.net.retry import RetryPolicy, is_idempotent
from updraft.net.rtt import RttEstimator, RttSnapshot, RttTicket

__all__ = [
    "AsyncHttpClient",
    "Endpoint",
    "EndpointSet",
    "EndpointStats",
    "HttpClient",
    "RetryPolicy",
    "RttEstimator",
    "RttSnapshot",
    "RttTicket",
    "error_from_response",
    "is_idempotent",
    "parse_duration",
    "parse_server",
]
