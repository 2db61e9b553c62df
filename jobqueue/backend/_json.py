"""The one JSON encoding of job data: compact, and the same on both sides (no pickle anywhere)."""

from __future__ import annotations

import json
from typing import Any


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def dumps_bytes(value: Any) -> bytes:
    return dumps(value).encode()


def loads(raw: bytes | str) -> Any:
    return json.loads(raw)
