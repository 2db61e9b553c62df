"""Which hosts and origins the dashboard answers to, as pure functions of the request's headers.

- Loopback names (``localhost``, ``127.0.0.1`` and any ``127.x``, ``[::1]``; any port) always.
- ``JOBQUEUE_DASHBOARD_ALLOWED_HOSTS``: more host names (no port: any port).
- ``JOBQUEUE_DASHBOARD_ALLOWED_ORIGINS``: exact origins (``https://ops.example.com``) accepted
  for actions only.

Without credentials every request must name a served host in ``Host``: a page of ``evil.example``
that its DNS points at 127.0.0.1 (DNS rebinding) reaches a loopback-only dashboard from a loopback
peer, but its requests say ``Host: evil.example``. An action's ``Origin`` (or ``Referer``) is
compared with these served hosts and origins, never with ``Host``, which the same page chooses.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

ALLOWED_HOSTS_VAR = "JOBQUEUE_DASHBOARD_ALLOWED_HOSTS"
ALLOWED_ORIGINS_VAR = "JOBQUEUE_DASHBOARD_ALLOWED_ORIGINS"
LOOPBACK_NAMES = "localhost, 127.0.0.1 (or any 127.x) and [::1]"
# Set by proxies, and read by proxy-header middleware (uvicorn's rewrites scope["client"] from
# X-Forwarded-For and keeps no copy of the socket peer): a request carrying any of them is not
# known to come from a loopback client, whatever scope["client"] says.
FORWARDED_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Origin(NamedTuple):
    scheme: str
    host: str  # lower case, IPv6 without brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS[self.scheme] == self.port
        return f"{self.scheme}://{host}" + ("" if default else f":{self.port}")


def is_loopback(host: str) -> bool:
    """Whether an address or host name (no port, no brackets) is this machine's loopback."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str | None:
    """The name in a ``Host`` header (lower case, no port or brackets); None when malformed."""
    value = header.strip().lower()
    if value.startswith("["):
        name, bracket, port = value[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit())):
            return None
        return name if _is_ip(name, 6) else None
    name, colon, port = value.partition(":")
    if colon and not port.isdigit():
        return None
    if not name or any(c in name for c in "@/\\?# \t"):
        return None
    return name


def parse_origin(value: str) -> Origin | None:
    """The origin of an ``Origin`` header or a ``Referer`` URL; None for ``null`` or anything else
    that is not an http(s) URL with a host."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.username is not None:
        return None
    return Origin(scheme, parts.hostname, port or _DEFAULT_PORTS[scheme])


@dataclass(frozen=True)
class Served:
    """The host names and origins the dashboard serves, beyond the loopback names."""

    hosts: frozenset[str] = frozenset()
    origins: frozenset[Origin] = frozenset()

    @classmethod
    def parse(cls, hosts: str | Iterable[str] = (), origins: str | Iterable[str] = ()) -> Served:
        """From lists or comma-separated strings (as in the environment); ValueError names the
        variable of a bad entry."""
        names = {_host_entry(entry) for entry in _entries(hosts)}
        parsed = set()
        for entry in _entries(origins):
            origin = parse_origin(entry)
            if origin is None or urlsplit(entry).path not in ("", "/") or urlsplit(entry).query:
                raise ValueError(f"{ALLOWED_ORIGINS_VAR}: {entry!r} is not an origin such as https://ops.example.com")
            parsed.add(origin)
        return cls(frozenset(names), frozenset(parsed))

    def serves_host(self, name: str) -> bool:
        return is_loopback(name) or name in self.hosts

    def host_problem(self, header: str | None, *, loopback_mode: bool) -> str | None:
        """Why a request naming this ``Host`` is refused, in one line; None when it is served."""
        name = host_name(header) if header is not None else None
        if name is not None and self.serves_host(name):
            return None
        shown = "no Host header" if header is None else f"Host {header!r}"
        if loopback_mode:
            return (
                f"refused: {shown} is not a loopback name, and without credentials the dashboard answers "
                f"only to {LOOPBACK_NAMES}; add the name to {ALLOWED_HOSTS_VAR} or set JOBQUEUE_DASHBOARD_TOKEN"
            )
        return f"refused: {shown} is neither a loopback name nor in {ALLOWED_HOSTS_VAR}; add it there"

    def origin_problem(self, origin: str | None, referer: str | None) -> str | None:
        """Why an action from this page is refused: its ``Origin`` (else its ``Referer``) is not
        served. None when served, or when neither header came (not a browser page: the CSRF token
        alone decides)."""
        source, value = ("Origin", origin) if origin is not None else ("Referer", referer)
        if value is None:
            return None
        parsed = parse_origin(value)
        if parsed is not None and (parsed in self.origins or self.serves_host(parsed.host)):
            return None
        shown = str(parsed) if parsed is not None else value
        return (
            f"cross-origin request refused: {source} {shown!r} is not a loopback origin nor in "
            f"{ALLOWED_HOSTS_VAR} or {ALLOWED_ORIGINS_VAR}; add it there if the dashboard is served at it"
        )


def _entries(value: str | Iterable[str]) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    return [item.strip() for item in items if item.strip()]


def _host_entry(entry: str) -> str:
    value = entry.lower()
    if _is_ip(value, 6):
        return value
    if value.startswith("[") and value.endswith("]") and _is_ip(value[1:-1], 6):
        return value[1:-1]
    name = host_name(value)
    if name is None or ":" in value:
        raise ValueError(f"{ALLOWED_HOSTS_VAR}: {entry!r} is not a host name (give names without a port)")
    return name


def _is_ip(value: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(value).version == version
    except ValueError:
        return False
