"""jobqueue.embedded: a Valkey at a given address, with its data kept in a folder across restarts."""

import socket

import pytest
import redis

from jobqueue.embedded import port_is_free, redis_answers, start_embedded_valkey
from tests.support.waiting import free_port


def test_valkey_at_a_given_port_keeps_its_data_across_a_restart(tmp_path):
    port = free_port()
    data_dir = tmp_path / ".jobqueue"
    server = start_embedded_valkey("localhost", port, data_dir=data_dir, appendonly=True)
    try:
        client = redis.Redis.from_url(f"redis://localhost:{port}/2")
        client.set("jq:test:kept", "yes")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert not port_is_free("localhost", port)
    finally:
        server.stop()
    assert not redis_answers(f"redis://localhost:{port}")
    assert (data_dir / "appendonlydir").is_dir()
    server = start_embedded_valkey("localhost", port, data_dir=data_dir, appendonly=True)
    try:
        assert client.get("jq:test:kept") == b"yes"
    finally:
        client.close()
        server.stop()


def test_a_taken_port_is_refused_rather_than_moved():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert not port_is_free("127.0.0.1", port)
        with pytest.raises(OSError, match=f"port {port} on 127.0.0.1 is taken"):
            start_embedded_valkey("127.0.0.1", port)


def test_without_a_port_it_picks_a_free_one_in_a_temporary_folder():
    server = start_embedded_valkey()
    try:
        assert redis_answers(server.connection_url)
        assert redis.Redis.from_url(server.connection_url).config_get("appendonly") == {"appendonly": "no"}
    finally:
        server.stop()
