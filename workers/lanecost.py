"""What a provider call costs, by model and lane: a small price table in one place.

Prices are USD per million tokens at OpenAI's published standard rates; the batch lane pays
``BATCH_DISCOUNT`` of them (the Batch API is half price). A model missing from the table costs
``DEFAULT_PRICE``. Swap ``PRICES`` (or the whole ``cost_usd``) for the metrics' own price table
once there is one: callers only use ``cost_usd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Lane = Literal["sync", "batch"]


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million input and output tokens on the sync lane."""

    input_per_mtok: float
    output_per_mtok: float = 0.0


PRICES: Final[dict[str, Price]] = {
    "text-embedding-3-small": Price(0.02),
    "text-embedding-3-large": Price(0.13),
    "text-embedding-ada-002": Price(0.10),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
}
DEFAULT_PRICE: Final = Price(0.02, 0.0)
BATCH_DISCOUNT: Final = 0.5


def cost_usd(model: str, lane: Lane, input_tokens: int, output_tokens: int = 0) -> float:
    """The cost of ``input_tokens`` and ``output_tokens`` of ``model`` on ``lane``."""
    price = PRICES.get(model, DEFAULT_PRICE)
    cost = (input_tokens * price.input_per_mtok + output_tokens * price.output_per_mtok) / 1_000_000
    return cost * BATCH_DISCOUNT if lane == "batch" else cost
