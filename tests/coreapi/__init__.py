"""The Core API: the public surface, the enqueue helpers and their validation."""
