"""Made-up but plausible chat answers for the fake OpenAI server behind ``jobqueue dev``.

The workers ask for two JSON schemas: ``product_enrichment`` (``workers.jobs.products``) and
``collection_titles`` (``workers.jobs.collections``). This responder reads the product or the
numbered groups from the prompt and answers in those shapes, deterministically; any other request
gets ``default_responder``'s schema-shaped filler.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from workers.testing.fake_openai import default_responder

_OCCASIONS = {
    "kitchen": ["housewarming", "birthday"],
    "home": ["housewarming", "anniversary"],
    "books": ["birthday", "christmas"],
    "garden": ["birthday", "mother's day"],
    "stationery": ["thank you", "birthday"],
    "wellbeing": ["get well", "birthday"],
    "toys": ["birthday", "christmas"],
    "drinks": ["celebration", "christmas"],
}
_RECIPIENTS = {
    "kitchen": ["partner", "friend"],
    "home": ["parent", "partner"],
    "books": ["friend", "colleague"],
    "garden": ["parent", "grandparent"],
    "stationery": ["colleague", "friend"],
    "wellbeing": ["friend", "partner"],
    "toys": ["child"],
    "drinks": ["friend", "parent"],
}
_GROUP_LINE = re.compile(r"^\d+\.\s+(.*)$")
_CATEGORY = re.compile(r"\(([^()]*)\)")


def catalogue_responder(request: dict[str, Any]) -> str:
    """The chat answer for ``request`` (an OpenAI chat completion request body)."""
    response_format = request.get("response_format") or {}
    name = (response_format.get("json_schema") or {}).get("name")
    user = next((m.get("content") or "" for m in reversed(request["messages"]) if m.get("role") == "user"), "")
    if name == "product_enrichment":
        return json.dumps(_enrichment(user))
    if name == "collection_titles":
        return json.dumps(_titles(user))
    return default_responder(request)


def _fields(prompt: str) -> dict[str, str]:
    fields = {}
    for line in prompt.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def _enrichment(prompt: str) -> dict[str, Any]:
    fields = _fields(prompt)
    name = fields.get("name") or "This gift"
    category = (fields.get("category") or "gift").lower()
    first_sentence = (fields.get("description") or "").split(". ")[0].rstrip(".")
    summary = f"{name}: {first_sentence}." if first_sentence else f"{name}, a thoughtful {category} gift."
    tags = [category, *(t.strip().lower() for t in fields.get("tags", "").split(",") if t.strip())]
    style = "premium" if int(fields.get("price_pence") or 0) >= 5000 else "everyday"
    return {
        "summary": summary[:600],
        "tags": list(dict.fromkeys(tags))[:12],
        "occasions": _OCCASIONS.get(category, ["birthday"]),
        "recipients": _RECIPIENTS.get(category, ["friend"]),
        "style": style,
    }


def _titles(prompt: str) -> dict[str, Any]:
    collections = []
    for line in prompt.splitlines():
        match = _GROUP_LINE.match(line.strip())
        if match is None:
            continue
        items = [item.strip() for item in match.group(1).split(";") if item.strip()]
        categories = Counter(m.group(1) for item in items for m in [_CATEGORY.search(item)] if m)
        top = categories.most_common(1)[0][0] if categories else "gift"
        title = f"{top.title()} favourites" if len(categories) <= 1 else f"{top.title()} and more"
        description = f"{len(items)} hand-picked {top} gifts, starting with {_CATEGORY.sub('', items[0]).strip()}."
        collections.append({"title": title[:80], "description": description[:300]})
    return {"collections": collections}
