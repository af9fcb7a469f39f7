"""A network namespace joined to the host by a veth pair, and iptables to cut it off.

Lets a test run an agent as if on another device, then partition it (``cut``) and heal it (``heal``) without
touching loopback or any other traffic. Needs root and iproute2/iptables (installed by ensure-docker.sh).
"""

from __future__ import annotations

import itertools
import os
import subprocess

_ids = itertools.count(os.getpid() % 200)


def _run(*args: str) -> None:
    subprocess.run(list(args), check=True, capture_output=True)


class NetNs:
    def __init__(self) -> None:
        n = next(_ids) % 250 + 1
        self.name = f"upd{os.getpid() % 10000}-{n}"
        self.host_if, self.ns_if = f"uh{os.getpid() % 10000}{n}"[:15], f"un{os.getpid() % 10000}{n}"[:15]
        self.host_ip, self.ns_ip = f"10.213.{n}.1", f"10.213.{n}.2"
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _run("ip", "link", "set", self.ns_if, "netns", self.name)
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _run("ip", "link", "set", self.host_if, "up")
        self.exec("ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if)
        self.exec("ip", "link", "set", self.ns_if, "up")
        self.exec("ip", "link", "set", "lo", "up")
        self.is_cut = False

    def exec(self, *args: str) -> None:
        _run("ip", "netns", "exec", self.name, *args)

    def prefix(self) -> list[str]:
        """Prepend to a command to run it inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        """Drop everything between the namespace and the host (a partition, not a reset)."""
        if not self.is_cut:
            self.exec("iptables", "-I", "OUTPUT", "-d", self.host_ip, "-j", "DROP")
            self.exec("iptables", "-I", "INPUT", "-s", self.host_ip, "-j", "DROP")
            self.is_cut = True

    def heal(self) -> None:
        if self.is_cut:
            self.exec("iptables", "-D", "OUTPUT", "-d", self.host_ip, "-j", "DROP")
            self.exec("iptables", "-D", "INPUT", "-s", self.host_ip, "-j", "DROP")
            self.is_cut = False

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
