"""The Redis layer: connections, per-queue and Sentinel URLs, error mapping, replication, auto-pipelining."""
