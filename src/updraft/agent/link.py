"""The agent's side of the control-plane link, as pure state: registration, heartbeats, the long poll and the
cut-off rule (written here, once). Part of the agent's state machine (:mod:`updraft.agent.state`)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from updraft.agent import events as ev
from updraft.agent.events import Instruction
from updraft.agent.runtime import Key

log = logging.getLogger("updraft.agent")


class Link:
    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        self.registered = False
        self.index: int | None = None  # the assignments' index: the next long poll waits for a change past it
        self.last_contact, self.cut_off = now, False
        self._in_flight: set[str] = set()
        self._at = {"register": now, "heartbeat": now, "poll": now}
        self._heartbeat_sent = now

    def silent(self, now: float) -> float:
        return now - self.last_contact

    def due(self, now: float, may_poll: bool, running: Callable[[], tuple[Key, ...]]) -> list[Instruction]:
        """What is due on the link now; also where the agent notices it is cut off."""
        out: list[Instruction] = []
        if not self.cut_off and self.silent(now) > 2 * self.interval:  # the cut-off rule
            self.cut_off = True
            log.warning("cut off from the control plane; running on (edge autonomy), results go to the outbox")
        if not self.registered:
            if self._free("register", now):
                out.append(ev.Register())
        elif self._free("heartbeat", now):
            self._heartbeat_sent = now
            out.append(ev.SendHeartbeat(running()))
        if self.registered and may_poll and self._free("poll", now):
            out.append(ev.Poll(self.index))
        return out

    def _free(self, what: str, now: float) -> bool:
        """True, and ``what`` is now in flight, if it is due and not in flight already (one at a time)."""
        if what in self._in_flight or now < self._at[what]:
            return False
        self._in_flight.add(what)
        return True

    def register_answered(self, ok: bool, now: float) -> None:
        self._in_flight.discard("register")
        if ok:
            self.registered, self.index = True, None
            self._at["heartbeat"] = self._at["poll"] = now
        else:
            self._at["register"] = now + self.interval

    def heartbeat_answered(self, sent_at: float, known: bool, now: float) -> bool:
        """Record a delivered heartbeat; True if it ends a cut-off."""
        self._in_flight.discard("heartbeat")
        self._at["heartbeat"] = sent_at + self.interval
        back = self.cut_off
        if back:
            log.info("link to the control plane is back after %.1f s", now - self.last_contact)
            self.cut_off = False
        # Only a delivered heartbeat moves last_contact, and to when it was *sent*: the server recorded it no
        # earlier, so this agent's self-fencing clock never runs behind the server's.
        self.last_contact = max(self.last_contact, sent_at)
        if not known:
            self.registered = False
        return back

    def heartbeat_failed(self, unknown: bool = False) -> None:
        self._in_flight.discard("heartbeat")
        if unknown:
            self.registered = False
        self._at["heartbeat"] = self._heartbeat_sent + self.interval

    def polled(self, index: int) -> None:
        self._in_flight.discard("poll")
        self.index = index

    def poll_failed(self, not_found: bool, transport: bool, now: float) -> None:
        self._in_flight.discard("poll")
        self.index = None
        if not_found:
            self.registered = False
        self._at["poll"] = now + (0.5 if transport else 1.0)
