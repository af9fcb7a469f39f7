"""The control plane: HTTP routes → service commands → the plan applier; background loops."""

from updraft.control.server import create_app, run
from updraft.control.service import ControlService

__all__ = ["ControlService", "create_app", "run"]
