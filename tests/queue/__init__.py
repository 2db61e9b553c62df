"""A queue: cancel, events, job snapshots, operations, pause, priority, promotion, retention, reruns."""
