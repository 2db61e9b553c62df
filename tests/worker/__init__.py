"""The worker: runs, hooks, progress, retries, ownership, crashes, options, metrics, scale."""
