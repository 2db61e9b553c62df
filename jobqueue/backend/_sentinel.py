"""Redis Sentinel URLs: ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``.

The form of the ``redis-sentinel-url`` convention; ``rediss+sentinel://`` speaks TLS to the
sentinels and to the Redis servers alike. The user and password are the Redis servers'; the
sentinels' own credentials, when they have any, are the query options ``sentinel_username`` and
``sentinel_password``. The other query options are the TLS ones of ``rediss://`` URLs
(``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``).

A client made here asks the sentinels for the current primary each time it opens a connection
(redis-py's ``SentinelConnectionPool``), so after a failover its next connection goes to the new
primary; a connection still open to a demoted primary fails its next command (READONLY becomes a
connection error) and is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.sentinel
from redis.asyncio import Redis
from redis.asyncio.connection import ConnectionPool, SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff

SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
# Query options a Sentinel URL takes: the sentinels' credentials, and TLS like a rediss:// URL.
SENTINEL_OPTIONS = ("sentinel_username", "sentinel_password")
TLS_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs")
SECRET_OPTIONS = ("sentinel_password",)


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in SCHEMES


@dataclass(frozen=True)
class SentinelTarget:
    """What a Sentinel URL says: whom to ask, for which service, and how to talk to its servers."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_options: dict[str, str] = field(default_factory=dict)
    sentinel_username: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the connections to the primary (``Sentinel(**connection_kwargs)``)."""
        kwargs: dict[str, Any] = {"db": self.db, "username": self.username, "password": self.password}
        if self.tls:
            kwargs |= {"ssl": True, **self.tls_options}
        return kwargs

    def sentinel_kwargs(self, timeout: float) -> dict[str, Any]:
        """Keyword arguments of the connections to the sentinels.

        Each sentinel gets a share of ``timeout``, so that a sentinel that does not answer leaves
        time to ask the next one within one ``JOBQUEUE_REDIS_TIMEOUT``.
        """
        share = timeout / len(self.sentinels)
        kwargs: dict[str, Any] = {"socket_connect_timeout": share, "socket_timeout": share}
        if self.sentinel_username is not None:
            kwargs["username"] = self.sentinel_username
        if self.sentinel_password is not None:
            kwargs["password"] = self.sentinel_password
        if self.tls:
            kwargs |= {"ssl": True, **self.tls_options}
        return kwargs


def parse(url: str) -> SentinelTarget:
    """Read a Sentinel URL; ``ValueError`` (naming no password) when it is not one that works."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"a Sentinel URL starts with {' or '.join(s + '://' for s in SCHEMES)}")
    parts = urlsplit("sentinel://" + rest)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    sentinels = [_address(entry) for entry in hosts.split(",")]
    segments = [unquote(s) for s in parts.path.split("/")[1:]]
    if segments and segments[-1] == "":
        segments.pop()
    if not segments or not segments[0]:
        raise ValueError("a Sentinel URL names the service after the sentinels: .../<service_name>[/<db>]")
    if len(segments) > 2:
        raise ValueError("a Sentinel URL's path is /<service_name>[/<db>], nothing more")
    db = 0
    if len(segments) == 2:
        if not segments[1].isdigit():
            raise ValueError(f"the database in a Sentinel URL is a number, got {segments[1]!r}")
        db = int(segments[1])
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - set(SENTINEL_OPTIONS) - set(TLS_OPTIONS))
    if unknown:
        known = ", ".join(SENTINEL_OPTIONS + TLS_OPTIONS)
        raise ValueError(f"a Sentinel URL takes the query options {known}; not {', '.join(unknown)}")
    tls = scheme == "rediss+sentinel"
    tls_options = {k: v for k, v in options.items() if k in TLS_OPTIONS}
    if tls_options and not tls:
        raise ValueError(f"{', '.join(sorted(tls_options))} only apply to rediss+sentinel:// URLs")
    return SentinelTarget(
        sentinels=sentinels,
        service=segments[0],
        db=db,
        username=username,
        password=password,
        tls=tls,
        tls_options=tls_options,
        sentinel_username=options.get("sentinel_username"),
        sentinel_password=options.get("sentinel_password"),
    )


def _address(entry: str) -> tuple[str, int]:
    entry = entry.strip()
    if not entry:
        raise ValueError("a Sentinel URL lists its sentinels as host:port[,host:port...]; one of them is empty")
    if entry.startswith("["):  # [::1]:26379
        host, _, port = entry[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
    if not host:
        raise ValueError(f"a sentinel in a Sentinel URL has no host: {entry!r}")
    if not port:
        return host, DEFAULT_SENTINEL_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"a sentinel's port is a number from 1 to 65535, got {port!r}")
    return host, int(port)


class FollowingConnection(SentinelManagedConnection):
    """A connection to the service's primary that asks the sentinels again on every attempt.

    redis-py's retries each connect to the address the sentinels gave first: with a worker's
    retry policy, about 20 s of retries against a primary that is dead, long after the sentinels
    named a new one. Here the one address gets one try; the retry (the pool's policy) starts over
    from the sentinels' answer.
    """

    async def connect_to(self, address: tuple[str, int]) -> None:
        retry, self.retry = self.retry, Retry(NoBackoff(), 0)
        try:
            await super().connect_to(address)
        finally:
            self.retry = retry


class FollowingSSLConnection(FollowingConnection, SSLConnection):
    pass


class OwnSentinelsPool(SentinelConnectionPool):
    """A primary's pool that closes the connections to its sentinels when it is closed itself
    (redis-py leaves them open): every pool made here has its own ``Sentinel``."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        if inuse_connections:  # a close, not the drop of idle connections after a failover
            for client in self.sentinel_manager.sentinels:
                await client.aclose()


def client(url: str, *, timeout: float, redis_class: type[Redis] = Redis, **kwargs: Any) -> Redis:
    """An asyncio client of the current primary of ``url``'s service.

    ``timeout`` bounds each question to the sentinels (shared among them) and each connect;
    ``kwargs`` go to the connections to the primary, like ``Redis.from_url``'s.
    """
    target = parse(url)
    manager = Sentinel(
        target.sentinels,
        sentinel_kwargs=target.sentinel_kwargs(timeout),
        **target.connection_kwargs(),
        socket_connect_timeout=timeout,
        connection_class=FollowingSSLConnection if target.tls else FollowingConnection,
        **kwargs,
    )
    return manager.master_for(target.service, redis_class=redis_class, connection_pool_class=OwnSentinelsPool)


def sync_client(url: str, *, timeout: float, **kwargs: Any) -> redis.Redis:
    """A blocking client for any Redis URL jobqueue takes: of the current primary for a Sentinel
    URL (a worker's start-up probe, ``jobqueue dev``); ``timeout`` bounds connects and reads,
    ``kwargs`` go to the client (``decode_responses``...). Close it with ``close_sync_client``."""
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout, **kwargs)
    target = parse(url)
    manager = redis.sentinel.Sentinel(
        target.sentinels,
        sentinel_kwargs=target.sentinel_kwargs(timeout),
        **target.connection_kwargs(),
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        **kwargs,
    )
    return manager.master_for(target.service)


def close_sync_client(client: redis.Redis) -> None:
    """Close a client of ``sync_client``, and its connections to the sentinels if it has any."""
    client.close()
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        sentinel.close()


def pool_like(pool: ConnectionPool, *, max_connections: int) -> ConnectionPool:
    """A new pool that connects as ``pool`` does, with at most ``max_connections``.

    A Sentinel pool gets sentinels of its own (closed with it), following the same service.
    """
    if not isinstance(pool, SentinelConnectionPool):
        kwargs = pool.connection_kwargs
        return type(pool)(connection_class=pool.connection_class, max_connections=max_connections, **kwargs)
    manager = pool.sentinel_manager
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    return OwnSentinelsPool(
        pool.service_name,
        Sentinel(
            _addresses(manager.sentinels),
            min_other_sentinels=manager.min_other_sentinels,
            sentinel_kwargs=manager.sentinel_kwargs,
            **manager.connection_kwargs,
        ),
        connection_class=pool.connection_class,
        max_connections=max_connections,
        is_master=pool.is_master,
        check_connection=pool.check_connection,
        **kwargs,
    )


def _addresses(sentinels: Iterable[Redis]) -> list[tuple[str, int]]:
    kwargs = [s.connection_pool.connection_kwargs for s in sentinels]
    return [(k["host"], k["port"]) for k in kwargs]
