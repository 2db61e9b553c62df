"""A queue as producers and operators see it: the ``Queue`` class (enqueue, counts, pause, clean,
retry, remove, drain), the handles an enqueue returns, the snapshots inspection returns, the
cancellation and result waits, and the stream of job events.
"""
