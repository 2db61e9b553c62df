"""Hosts made of Linux network namespaces: each a namespace joined to this one by a veth pair with
addresses of the test's own, so a worker in it reaches a Redis bound to the host end of its link,
and cutting the link (``ip link set ... down``) cuts that host off. Nothing leaves the machine.

Names carry a per-run tag, so parallel runs never clash; ``Hosts.remove()`` deletes every
namespace (and with it both ends of its veth pair) whatever happened.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass


def cannot_make_namespaces() -> str | None:
    """Why network namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run the suite as root to include this test"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"jqprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed here (no CAP_SYS_ADMIN?): {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Host:
    namespace: str
    link: str  # the host end of the veth pair: down cuts this host off
    address: str  # this namespace's address
    gateway: str  # the host end's address: where the namespace reaches servers bound to it

    def pids(self) -> set[int]:
        out = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True, text=True).stdout
        return {int(p) for p in out.split()}

    def cut(self) -> None:
        ip("link", "set", self.link, "down")

    def restore(self) -> None:
        ip("link", "set", self.link, "up")


class Hosts:
    """``count`` namespaces on 10.<x>.<i>.0/30 links, ``x`` random per run."""

    def __init__(self, count: int) -> None:
        self.tag = secrets.token_hex(3)
        self.net = 100 + secrets.randbelow(150)
        self.hosts: list[Host] = []
        for i in range(1, count + 1):
            self.hosts.append(
                Host(f"jq{self.tag}h{i}", f"jq{self.tag}v{i}", f"10.{self.net}.{i}.2", f"10.{self.net}.{i}.1")
            )

    def make(self) -> Hosts:
        for host in self.hosts:
            inner = host.link + "n"
            ip("netns", "add", host.namespace)
            ip("link", "add", host.link, "type", "veth", "peer", "name", inner)
            ip("link", "set", inner, "netns", host.namespace)
            ip("addr", "add", f"{host.gateway}/30", "dev", host.link)
            ip("link", "set", host.link, "up")
            ip("-n", host.namespace, "addr", "add", f"{host.address}/30", "dev", inner)
            ip("-n", host.namespace, "link", "set", inner, "up")
            ip("-n", host.namespace, "link", "set", "lo", "up")
        return self

    def remove(self) -> None:
        for host in self.hosts:
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)
            subprocess.run(["ip", "link", "del", host.link], capture_output=True)  # gone with the namespace, mostly
