"""The job functions, one per queue: ``handler(ctx, payload) -> result``."""
