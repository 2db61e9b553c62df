"""The documented path of the process's Redis clients, kept for existing imports; they live in
``jobqueue.backend.connection``."""

from jobqueue.backend.connection import check_queues_health, client_for_url, close_queues, get_redis

__all__ = ["check_queues_health", "client_for_url", "close_queues", "get_redis"]
