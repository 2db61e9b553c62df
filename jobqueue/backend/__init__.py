"""The Redis layer: the process's connection pools (one per Redis, Sentinel and per-queue URLs
included), the key names of a queue, the Lua scripts (one ``.lua`` file per transition, in
``_lua/``), the mapping of redis-py errors onto ``jobqueue.errors``, and the JSON that goes to Redis.

Everything above this package reaches Redis through it; it imports nothing above ``settings``.
"""
