"""Retry delays: a small pure function, easy to test."""

from __future__ import annotations

import random


def exponential_backoff(
    attempt: int, *, base: float, cap: float, jitter: float = 0.0, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    ``base * 2 ** (attempt - 1)``, at most ``cap``; with ``jitter`` (0-1) the delay is drawn
    uniformly from ``[delay * (1 - jitter), delay]`` so retries of many jobs spread out.
    """
    if attempt < 1:
        raise ValueError("attempt starts at 1")
    delay = min(cap, base * 2 ** (attempt - 1))
    if jitter:
        delay -= delay * jitter * (rng or random).random()
    return delay
